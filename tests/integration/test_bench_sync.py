"""``memmesh bench sync`` as a user runs it, at a tiny size: it proves the command, its figures
and its convergence check; it asserts no speed."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from memmesh.bench.sync import SyncBenchFailed, _check_same
from memmesh.core import Flush, LocalWrite, MeshCore
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

MEMMESH = [sys.executable, "-m", "memmesh"]


def test_bench_sync_prints_named_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *MEMMESH,
            "bench",
            "sync",
            "--json",
            "--claims",
            "2000",
            "--wire-claims",
            "256",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)

    def positive(value: object, name: str) -> None:
        assert isinstance(value, int | float), name
        assert math.isfinite(value), name
        assert value > 0, name

    for name in (
        "wire_bytes_per_claim",
        "wire_bytes_per_claim_push_only",
        "yjs_update_bytes_per_claim",
        "overhead_vs_yjs",
        "overhead_vs_yjs_push_only",
        "goal_overhead_vs_yjs",
        "envelope_bytes_per_claim",
    ):
        assert set(figures[name]) == {"1", "64"}, name
        for size, value in figures[name].items():
            positive(value, f"{name}[{size}]")
    for name in (
        "catchup_claims_per_s",
        "catchup_seconds",
        "catchup_envelopes",
        "catchup_frames",
        "catchup_bytes",
        "verify_per_s",
        "catchup_vs_verify",
        "claim_bytes",
        "duration_s",
    ):
        positive(figures[name], name)

    overhead = figures["overhead_vs_yjs"]
    assert overhead["64"] < overhead["1"]
    for size in ("1", "64"):
        ratio = figures["wire_bytes_per_claim"][size] / figures["yjs_update_bytes_per_claim"][size]
        assert abs(overhead[size] - ratio) < 0.01
        assert (
            figures["wire_bytes_per_claim"][size] >= figures["wire_bytes_per_claim_push_only"][size]
        )
        assert figures["wire_envelopes"][size] == -(-256 // int(size))
    # The bench fails (exit status 1) when the replica does not match the source; this says
    # the check ran, and the replica received every envelope of the source's log.
    assert figures["catchup_converged"] is True
    assert figures["claims"] == 2000
    assert figures["catchup_envelopes"] >= -(-2000 // figures["catchup_claims_per_envelope"])
    rate = figures["catchup_claims_per_s"] / figures["verify_per_s"]
    assert abs(figures["catchup_vs_verify"] - rate) < 0.01
    assert list(tmp_path.iterdir()) == []  # cleans up after itself


def test_bench_sync_fails_loudly_when_a_replica_lags() -> None:
    mesh = MeshFixture("bench-sync-check", nodes=2, writers=1)
    source, replica = (
        MeshCore(mesh.nodes[i], mesh.genesis, MemoryStore(), random.Random(i)) for i in range(2)
    )
    source.handle(LocalWrite(1, [mesh.claim(mesh.writers[0], "k", 1)]), 0)
    source.handle(Flush(), 0)
    with pytest.raises(SyncBenchFailed, match="frontier"):
        _check_same(source, replica, 1, "check")
    _check_same(source, source, 1, "check")
