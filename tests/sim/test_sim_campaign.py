"""Swarm campaigns: each seed draws its own faults (3-9 nodes, loss 0-30 %, duplication 0-50 %,
reordering, partitions and heals, clogged links, crashes some of which strike inside a commit,
disk read and write faults, joins and leaves, clock skew up to +-5 min) and every seed must
keep every property: nothing invalid integrated, no seq reused, no acknowledged write lost,
and convergence (same frontier and claims digest on every live node) within 20 anti-entropy
rounds of the final heal.

``MEMMESH_TEST_SCALE`` grows the default campaign; the soak campaign runs
``MEMMESH_SIM_SEEDS`` (default 10,000) other seeds. A failure names the seed and the command
that reproduces it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from memmesh.sim import swarm_options
from memmesh.sim.campaign import run_campaign
from memmesh.testing import scaled

JOBS = min(2, os.cpu_count() or 1)
SOAK_FIRST_SEED = 1_000_000


def _assert_all_hold(results: list[dict[str, Any]]) -> None:
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n".join(
        f"seed {r['seed']} ({r['failure_kind']}): {(r['failure'] or '').splitlines()[0]}\n"
        f"  reproduce: {r['command']}"
        for r in failed
    )
    for result in results:
        rounds = result["converge_rounds"]
        assert rounds is not None and rounds <= 20, result


def test_a_campaign_of_seeds_keeps_every_property() -> None:
    first = int(os.environ.get("MEMMESH_SIM_FIRST_SEED", "0"))
    results = run_campaign(range(first, first + scaled(100)), jobs=JOBS)
    assert [r["seed"] for r in results] == list(range(first, first + scaled(100)))
    _assert_all_hold(results)
    assert sum(r["updates"] for r in results) >= scaled(100) * 10


@pytest.mark.soak
def test_soak_campaign() -> None:
    count = int(os.environ.get("MEMMESH_SIM_SEEDS", "10000"))
    results = run_campaign(range(SOAK_FIRST_SEED, SOAK_FIRST_SEED + count), jobs=JOBS)
    _assert_all_hold(results)


def test_seeds_draw_faults_in_the_stated_ranges() -> None:
    drawn = [swarm_options(seed) for seed in range(300)]
    assert {o.nodes for o in drawn} == set(range(3, 10))
    assert all(0 <= o.loss <= 0.3 and 0 <= o.duplicate <= 0.5 for o in drawn)
    assert all(o.clock_skew_ms_max <= 300_000 for o in drawn)
    assert max(o.loss for o in drawn) > 0.25 and max(o.duplicate for o in drawn) > 0.45
    assert max(o.clock_skew_ms_max for o in drawn) > 250_000
    for name in ("partitions", "crashes", "clogs", "joins", "leaves", "write_fault", "read_fault"):
        values = [getattr(o, name) for o in drawn]
        assert 0 < sum(1 for v in values if v) < len(values), name  # switched on and off
    assert swarm_options(7) == swarm_options(7)
    assert swarm_options(7) != swarm_options(8)
