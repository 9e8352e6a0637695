"""One seed, one trace: the rolling trace hash is the same in two processes with different
``PYTHONHASHSEED`` values, and it tells apart runs that differ in anything."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import replace

from memmesh.sim import run_sim, swarm_options

SEED = 38
"""Partitions, clogs, crashes inside commits, two joins and a leave, 4 nodes, skewed clocks."""

_SCRIPT = (
    "from memmesh.sim import run_sim, swarm_options\n"
    f"run = run_sim(swarm_options({SEED}))\n"
    "print(run.trace_hash, run.events, run.ok)\n"
)


def _trace_in_subprocess(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_seed_exercises_what_could_vary() -> None:
    options = swarm_options(SEED)
    assert options.partitions and options.crashes and options.joins and options.leaves
    assert options.clock_skew_ms_max and options.duplicate


def test_same_seed_same_trace_whatever_the_hash_seed() -> None:
    first = _trace_in_subprocess("0")
    second = _trace_in_subprocess("4242")
    assert first == second
    trace_hash, events, ok = first.split()
    assert ok == "True" and int(events) > 1000
    assert run_sim(swarm_options(SEED)).trace_hash == trace_hash  # and in this process


def test_the_trace_tells_runs_apart() -> None:
    base = run_sim(swarm_options(SEED)).trace_hash
    assert run_sim(swarm_options(SEED + 1)).trace_hash != base
    # The same seed with one rate changed: the same schedule, different frames lost.
    changed = replace(swarm_options(SEED), loss=0.05)
    assert run_sim(changed).trace_hash != base


def test_a_run_collects_cyclic_garbage_less_often_and_then_as_before() -> None:
    """The thresholds change for the run only (the trace hash above does not depend on it)."""
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    run_sim(swarm_options(SEED), progress=lambda _done, _phase: during.append(gc.get_threshold()))
    assert during and set(during) == {(50_000, 20, 100)}
    assert gc.get_threshold() == before
