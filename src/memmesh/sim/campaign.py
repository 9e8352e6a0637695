"""Many seeds in parallel processes, each with its options drawn from the seed.

Each worker process runs whole seeds and sends back a small summary; the parent orders the
results by seed, so the summary is the same whatever the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .options import swarm_options
from .run import run_sim, summary

__all__ = ["run_campaign", "run_seed"]


def run_seed(seed: int) -> dict[str, Any]:
    """One seed of a campaign (picklable: runs in a worker process)."""
    return summary(run_sim(swarm_options(seed)))


def run_campaign(
    seeds: Iterable[int],
    *,
    jobs: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``seeds`` over ``jobs`` processes (default: one per CPU); results sorted by seed."""
    seeds = list(seeds)
    jobs = max(1, jobs or os.cpu_count() or 1)
    results: list[dict[str, Any]] = []
    if jobs == 1:
        for seed in seeds:
            results.append(run_seed(seed))
            if on_result is not None:
                on_result(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            chunk = max(1, min(16, len(seeds) // (jobs * 8)))
            for result in pool.map(run_seed, seeds, chunksize=chunk):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return sorted(results, key=lambda r: int(r["seed"]))
