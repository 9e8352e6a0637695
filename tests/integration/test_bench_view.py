"""``memmesh bench view`` at a small size, through the CLI: every figure is measured, finite and
consistent, and nothing is left behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path


def test_the_view_bench_measures_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", "bench", "view", "--claims", "6000",
         "--conflict-rounds", "4", "--dir", str(tmp_path), "--json"],
        check=False, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for name in ("put_per_s", "get_p50_us", "get_p99_us", "search_p50_ms", "rss_mb",
                 "doc_rss_mb", "rss_vs_doc"):  # fmt: skip
        value = figures[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert figures["claims"] == 6000
    # Garbage collection as a node runs it: one freeze past 5,000 claims; the baseline (the
    # same puts with only the start-up freeze) measured in the same run.
    assert figures["gc_freezes"] == 1
    assert figures["gc_full_collections"] >= 1  # the freeze's own collection, at least
    for name in ("gc_pause_ms_max", "gc_pause_ms_max_start_freeze_only",
                 "put_per_s_start_freeze_only"):  # fmt: skip
        assert math.isfinite(figures[name]) and figures[name] > 0, name
    ratio = figures["gc_pause_ms_max"] / figures["gc_pause_ms_max_start_freeze_only"]
    assert abs(figures["gc_pause_vs_start_freeze_only"] - ratio) < 0.01
    assert figures["get_p50_us"] <= figures["get_p99_us"]
    assert abs(figures["rss_vs_doc"] - figures["rss_mb"] / figures["doc_rss_mb"]) < 0.01
    assert figures["rss_anon_mb"] + figures["rss_file_mb"] <= figures["rss_mb"] + 1
    rounds = figures["conflict_rounds"]
    assert rounds == 4 and 0 <= figures["rounds_not_concurrent"] < rounds
    assert figures["conflict_visible_p50_ms"] > 0
    assert list(tmp_path.iterdir()) == []  # the store, the items file and the swarm are gone


def test_the_rss_children_do_not_carry_the_node_runtime() -> None:
    """Both RSS children run this module as a script: importing the runtime (aiohttp, the
    node) at its top would grow both measured processes by some 20 MB and flatter
    ``rss_vs_doc``; it is imported inside the functions that need it."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, memmesh.bench.view; "
         "print(sorted(m for m in ('aiohttp', 'memmesh.runtime') if m in sys.modules))"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
