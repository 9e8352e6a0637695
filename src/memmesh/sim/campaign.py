"""Many seeds in parallel processes, each with its options drawn from the seed.

Each worker process runs whole seeds and sends back a small summary; the parent orders the
results by seed, so the summary is the same whatever the number of processes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .options import swarm_options
from .run import run_sim, summary

__all__ = ["byzantine_totals", "run_campaign", "run_seed"]


def run_seed(seed: int, byzantine: Sequence[str] = ()) -> dict[str, Any]:
    """One seed of a campaign (picklable: runs in a worker process), with one Byzantine node
    of each kind in ``byzantine`` beside the seed's honest nodes."""
    options = swarm_options(seed, byzantine=tuple(byzantine)) if byzantine else swarm_options(seed)
    return summary(run_sim(options))


def run_campaign(
    seeds: Iterable[int],
    *,
    jobs: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    byzantine: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run ``seeds`` over ``jobs`` processes (default: one per CPU); results sorted by seed.
    ``byzantine``: kinds of Byzantine node to add to every seed's swarm."""
    seeds = list(seeds)
    one = functools.partial(run_seed, byzantine=tuple(byzantine))
    jobs = max(1, jobs or os.cpu_count() or 1)
    results: list[dict[str, Any]] = []
    if jobs == 1:
        for seed in seeds:
            results.append(one(seed))
            if on_result is not None:
                on_result(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            chunk = max(1, min(16, len(seeds) // (jobs * 8)))
            for result in pool.map(one, seeds, chunksize=chunk):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return sorted(results, key=lambda r: int(r["seed"]))


def byzantine_totals(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per Byzantine kind, the seeds' rejections and exclusions by reason, summed."""
    totals: dict[str, dict[str, Any]] = {}
    for result in results:
        for kind, entry in (result.get("byzantine") or {}).items():
            total = totals.setdefault(
                kind, {"seeds": 0, "rejected": {}, "excluded": {}, "held_live": 0}
            )
            total["seeds"] += 1
            total["held_live"] += entry.get("held_live", 0)
            for field in ("rejected", "excluded"):
                for reason, count in entry.get(field, {}).items():
                    total[field][reason] = total[field].get(reason, 0) + count
    for total in totals.values():
        for field in ("rejected", "excluded"):
            total[field] = dict(sorted(total[field].items()))
    return dict(sorted(totals.items()))
