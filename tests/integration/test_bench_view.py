"""``memmesh bench view`` at a small size: every figure is measured, finite and consistent."""

from __future__ import annotations

import math
from pathlib import Path

from memmesh.bench.view import run_view_bench


def test_the_view_bench_measures_every_figure(tmp_path: Path) -> None:
    figures = run_view_bench(
        claims=3000, get_samples=200, search_samples=5, conflict_rounds=4, directory=tmp_path
    )
    for name in ("put_per_s", "get_p50_us", "get_p99_us", "search_p50_ms", "rss_mb",
                 "doc_rss_mb", "rss_vs_doc"):  # fmt: skip
        value = figures[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert figures["get_p50_us"] <= figures["get_p99_us"]
    assert abs(figures["rss_vs_doc"] - figures["rss_mb"] / figures["doc_rss_mb"]) < 0.01
    rounds = figures["conflict_rounds"]
    assert rounds == 4 and 0 <= figures["rounds_not_concurrent"] < rounds
    assert figures["conflict_visible_p50_ms"] > 0
    assert list(tmp_path.iterdir()) == []  # the store, the items file and the swarm are gone
