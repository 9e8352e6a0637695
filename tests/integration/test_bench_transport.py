"""``memmesh bench transport`` as a user runs it, at a tiny size (3 processes a side, two rates of
one second): it proves the command, its figures and that it leaves no process behind; it asserts
no speed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

MEMMESH = [sys.executable, "-m", "memmesh"]


def _processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (every node, watcher and relay
    process the bench starts names its temporary directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_bench_transport_prints_named_figures_and_stops_every_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *MEMMESH,
            "bench",
            "transport",
            "--json",
            "--nodes",
            "3",
            "--rates",
            "200,1000",
            "--seconds-per-rate",
            "1",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)

    def positive(value: object, name: str) -> None:
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        assert math.isfinite(value), name
        assert value > 0, name

    assert figures["benchmark"] == "transport"
    assert figures["nodes"] == 3
    assert figures["rates"] == [200, 1000]
    for system in ("memmesh", "relay"):
        side = figures[system]
        for name in ("p50_ms_at_200", "p99_ms_at_200", "p50_ms_at_1000", "cpu_ms_per_update"):
            positive(side[name], f"{system}.{name}")
        assert side["p50_ms_at_200"] <= side["p99_ms_at_200"]
        assert side["max_rate"] in (0, 200, 1000)
        positive(side["deliveries_per_update_per_node"], f"{system}.deliveries")
        assert [s["rate"] for s in side["steps"]] == [200, 1000]
        for step in side["steps"]:
            assert step["offered"] == step["rate"]  # one second per rate
            assert step["issued_on_time"] <= step["offered"] - step["skipped"]
            issued_not_on_time = step["offered"] - step["skipped"] - step["issued_on_time"]
            assert issued_not_on_time <= step["late"] + step["failed"]
            assert 0 <= step["delivered"] <= 1
            positive(step["cpu_ms_per_update"], f"{system}.steps.cpu_ms_per_update")
            passed = (
                step["p99_ms"] is not None
                and step["p99_ms"] < figures["p99_budget_ms"]
                and step["issued_on_time"] >= 0.99 * step["offered"]
                and step["delivered"] >= 0.99
            )
            assert step["passed"] == passed
        passing = [s["rate"] for s in side["steps"] if s["passed"]]
        assert side["max_rate"] == max(passing, default=0)
    memmesh, relay = figures["memmesh"], figures["relay"]
    # Every update reached both receivers at these rates (what the bench waits for).
    assert memmesh["steps"][0]["delivered"] == 1.0
    assert relay["steps"][0]["delivered"] == 1.0
    if relay["max_rate"]:
        assert figures["rate_ratio"] == round(memmesh["max_rate"] / relay["max_rate"], 3)
    assert figures["batch_window_ms"] == memmesh["batch_window_ms"] >= 0
    assert figures["deliveries_per_update_per_node"] == memmesh["deliveries_per_update_per_node"]
    assert memmesh["deliveries_per_update_per_node"] >= 1.0
    # The relay's server echoes every update to its writer too: 3 clients for 2 receivers.
    assert 1.0 <= relay["deliveries_per_update_per_node"] <= 1.5
    assert len(memmesh["active_peers"]) == 3
    for step in memmesh["steps"]:  # every receiver commits what it receives, durably
        assert step["writer_commit_ms_mean"] > 0 and step["commit_ms_mean"] > 0
        assert 0 < step["commit_share"] < 1
    assert memmesh["commit_ms_mean_at_200"] == memmesh["steps"][0]["commit_ms_mean"]
    floor = memmesh["concurrent_commit_ms"]
    assert (floor["processes"], floor["rounds"]) == (2, 30)
    assert 0 < floor["p50"] <= floor["p50_of_slowest"]
    for goal in (
        "goal_rate_ratio",
        "goal_batch_window_ms",
        "goal_deliveries_per_update_per_node",
        "goal_memmesh_p50_ms_at_200",
    ):
        positive(figures[goal], goal)
        assert figures["goals_met"][goal.removeprefix("goal_")] in (True, False, None)
    assert figures["relay_transport"]
    positive(figures["duration_s"], "duration_s")

    assert _processes_naming(str(tmp_path)) == []  # nodes, watcher and relay processes are gone
    assert list(tmp_path.iterdir()) == []  # and so are their files
