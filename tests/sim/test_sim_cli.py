"""``memmesh sim`` and ``memmesh bench convergence`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from memmesh.cli_sim import sim_run
from memmesh.sim import SimOptions, run_sim
from memmesh.sim.disk import SimDisk
from memmesh.store import MemoryDisk

MEMMESH = [sys.executable, "-m", "memmesh"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEMMESH, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sim_run_prints_a_json_report() -> None:
    done = run("sim", "run", "--nodes", "4", "--updates", "20", "--seed", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar with --json
    report = json.loads(done.stdout)
    assert report["ok"] and report["converged"]
    assert report["seed"] == 2 and report["command"] == (
        "memmesh sim run --nodes 4 --updates 20 --seed 2"
    )
    for key in ("rounds_p50", "rounds_p99", "deliveries_per_update_per_node", "bytes_per_update"):
        assert report[key] > 0, key
    assert len(report["trace_hash"]) == 64
    assert report["options"]["loss"] == 0.0
    assert report["flooding"]["deliveries_per_update_per_node"] > 0
    assert report["updates"] == report["writes"]["acked"] == 20


def test_sim_run_writes_the_report_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    done = run("sim", "run", "--nodes", "4", "--updates", "10", "--seed", "5", "--loss", "0.1",
               "--partitions", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "memmesh sim run --nodes 4 --updates 10 --seed 5 --loss 0.1 --partitions" in done.stderr
    assert "rounds_p99" in done.stdout
    assert json.loads((out / "report.json").read_text())["options"]["partitions"] == 3
    for name in ("converge.png", "cost.png", "backlog.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name


def test_a_failed_run_prints_how_to_reproduce_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = SimDisk.open

    def forgetful_open(self: SimDisk) -> object:
        if self.memory.envelopes:
            self.memory = MemoryDisk()
        return original(self)

    monkeypatch.setattr(SimDisk, "open", forgetful_open)
    with pytest.raises(typer.Exit) as exit_info:
        sim_run(nodes=3, updates=40, seed=3, crashes=3, flood_updates=0, as_json=True)
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "lost acknowledged" in err
    assert "reproduce: memmesh sim run --nodes 3 --updates 40 --seed 3 --crashes 3" in err


def test_sim_campaign_summarises_its_seeds() -> None:
    done = run("sim", "campaign", "--seeds", "4", "--first", "3", "--jobs", "2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["seeds"] == 4 and summary["first_seed"] == 3
    assert summary["failures"] == 0 and summary["failed"] == []
    assert summary["seeds_per_s"] > 0


def test_bench_convergence_measures_both_protocols() -> None:
    done = run("bench", "convergence", "--nodes", "8", "--updates", "20", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["nodes"] == 8 and result["updates"] == 20
    assert result["sim_events_per_wall_s"] > 0
    assert result["goal_rounds_p99"] == 6
    flooding = result["flooding"]
    assert "same network model" in flooding["note"]
    assert flooding["updates_simulated"] == 20 and flooding["coverage"] == 1.0
    assert flooding["deliveries_per_update_per_node"] >= 1.0


def test_writes_begin_after_the_warmup_and_the_command_says_so() -> None:
    """``--warmup`` holds the writes back while the overlay and the push tree form (1 s by
    default, so the figures are of a formed mesh); 0 writes from the first instant, as
    campaigns do. It must end before the fault phase does."""
    warm = run_sim(SimOptions(seed=3, nodes=4, updates=30, duration_ms=3_000, warmup_ms=2_000))
    cold = run_sim(SimOptions(seed=3, nodes=4, updates=30, duration_ms=3_000, warmup_ms=0))
    warm_times = [s.written_us for s in warm.metrics.spread.values()]
    cold_times = [s.written_us for s in cold.metrics.spread.values()]
    assert len(warm_times) == len(cold_times) == 30
    assert min(warm_times) >= 2_000_000 and min(cold_times) < 1_000_000
    assert warm.options.command().endswith("--seed 3 --duration 3.0 --warmup 2.0")
    assert SimOptions(seed=3).warmup_ms == 1_000 and "--warmup" not in SimOptions(3).command()
    with pytest.raises(ValueError, match="warmup_ms"):
        SimOptions(seed=3, duration_ms=3_000, warmup_ms=3_000)
    done = run("sim", "run", "--nodes", "3", "--duration", "2", "--warmup", "2", "--json")
    assert done.returncode == 2 and "warmup_ms" in done.stderr
