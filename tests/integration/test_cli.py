"""The ``memmesh`` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MEMMESH = [sys.executable, "-m", "memmesh"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEMMESH, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_demo_tells_the_story_and_its_attestation_verifies_afterwards(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = run("demo", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    for step in (
        "neither knows",
        "with the same decision",
        "every agent now reads 2026-12-31",
        "recorded for every replica",
        "co-signed",
        "the swarm is down",
        "memmesh verify: valid",
        "demo complete",
    ):
        assert step in done.stdout, step
    for artefact in ("attestation.json", "bundle.bin", "decision.proof", "signals.json",
                     "README.txt"):  # fmt: skip
        assert (out / artefact).exists(), artefact
    signals = json.loads((out / "signals.json").read_text())
    assert set(signals) == {"intake", "analysis", "escalation", "contract"}
    assert all(s["conflicts_detected"] == 1 and s["conflicts_open"] == 0 for s in signals.values())
    # Verified again here, in another process, with no node running.
    again = run("verify", str(out / "attestation.json"), "--bundle", str(out / "bundle.bin"))
    assert again.returncode == 0 and again.stdout.startswith("valid"), again.stdout
    assert not list((out / "swarm").glob("swarm.json"))  # the swarm is down


def test_keys_generate_and_pubkey(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    made = run("keys", "generate", str(key), "--json")
    assert made.returncode == 0, made.stderr
    generated = json.loads(made.stdout)
    assert key.stat().st_mode & 0o777 == 0o600
    shown = run("keys", "pubkey", str(key), "--json")
    assert json.loads(shown.stdout)["public_key"] == generated["public_key"]
    again = run("keys", "generate", str(key))
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr


def test_loose_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    assert run("keys", "generate", str(key)).returncode == 0
    key.chmod(0o644)
    shown = run("keys", "pubkey", str(key))
    assert shown.returncode == 1
    assert "chmod 600" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_bench_store_prints_named_figures(tmp_path: Path) -> None:
    # Runs the benchmark at a tiny size to prove the command works; it asserts no speed.
    done = run(
        "bench",
        "store",
        "--json",
        "--commits",
        "20",
        "--groups",
        "2",
        "--rounds",
        "1",
        "--dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for name in (
        "raw_lmdb_commits_per_s",
        "durable_commits_per_s",
        "group_commit_envelopes_per_s",
        "store_vs_raw_lmdb",
    ):
        assert figures[name] > 0, name
    ratio = figures["durable_commits_per_s"] / figures["raw_lmdb_commits_per_s"]
    assert abs(figures["store_vs_raw_lmdb"] - ratio) < 0.01
    assert list(tmp_path.iterdir()) == []  # cleans up after itself


def test_bench_core_prints_named_figures(tmp_path: Path) -> None:
    # A tiny run proves the command and its figures exist; it asserts no speed.
    done = run(
        "bench",
        "core",
        "--json",
        "--envelopes",
        "128",
        "--local-claims",
        "128",
        "--latency-samples",
        "20",
        "--dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for name in (
        "verify_per_s",
        "ingest_envelopes_per_s",
        "ingest_vs_verify",
        "pycrdt_apply_per_s",
        "local_writes_per_s",
        "local_write_p50_ms",
        "local_write_p99_ms",
    ):
        assert figures[name] > 0, name
    rounds = figures["ingest_vs_verify_rounds"]  # each a verify batch, then an ingest slice
    assert len(rounds) == 5 and all(r > 0 for r in rounds)
    assert figures["ingest_vs_verify"] == sorted(rounds)[2]  # their median
    assert figures["local_write_p50_ms"] <= figures["local_write_p99_ms"]
    commits = figures["commit_ms"]
    assert set(commits) == {"ingest", "local", "back_to_back"}
    for figure in commits.values():  # every run committed, and commits took part of its time
        assert figure["p50"] > 0 and 0 < figure["share"] <= 1
