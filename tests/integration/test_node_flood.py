"""A flooding member, on real node processes: an honest agent's updates keep propagating.

Four nodes on loopback, each dialling the ones before it. An honest agent writes to node0 at
``HONEST_PER_S``; its propagation to the other nodes (from the write's acknowledgement until
every other node serves the item) is measured first alone, then while a member floods node1
with valid claims at ten times that rate. The honest p99 under the flood must stay within twice
its unflooded value measured in the same run (issue 9, [soak])."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from memmesh.runtime.swarm import swarm_down, swarm_up

from .test_memory_api import call

HONEST_PER_S = 20
FLOOD_FACTOR = 10
SECONDS = 15.0


def _has(api: str, key: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/v1/store/items?namespace=h&key={key}", timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


def _phase(apis: list[str], seconds: float, tag: str) -> list[float]:
    """Honest writes at ``HONEST_PER_S`` to node0; each one's time until all others serve it."""
    delays: list[float] = []
    step = 1 / HONEST_PER_S
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        key = f"{tag}{i}"
        call(apis[0], "/v1/store/items", "PUT", {"namespace": "h", "key": key, "value": i})
        acked = time.monotonic()
        waiting = list(apis[1:])
        while waiting:
            waiting = [api for api in waiting if not _has(api, key)]
            if waiting:
                time.sleep(0.005)
            if time.monotonic() - acked > 30:
                raise AssertionError(f"{key} never reached {waiting}")
        delays.append(time.monotonic() - acked)
        i += 1
        time.sleep(max(0.0, start + i * step - time.monotonic()))
    return delays


def _flood(api: str, stop: threading.Event, sent: list[int]) -> None:
    rate = HONEST_PER_S * FLOOD_FACTOR
    start, i = time.monotonic(), 0
    while not stop.is_set():
        call(api, "/v1/store/items", "PUT", {"namespace": "flood", "key": f"f{i}", "value": i})
        i += 1
        sent[0] = i
        time.sleep(max(0.0, start + i / rate - time.monotonic()))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.soak
@pytest.mark.xfail(
    strict=True,
    reason="open (issue 9): one shared push tree, pruned by the flood's duplicates, leaves holes "
    "the honest source's updates wait ihave_wait_ms (300 ms) to fill; needs per-source trees",
)
def test_a_tenfold_flood_from_one_member_leaves_honest_p99_within_twice(tmp_path: Path) -> None:
    directory = tmp_path / "swarm"
    nodes = swarm_up(4, directory)["nodes"]
    apis = [n["api"] for n in nodes]
    try:
        _phase(apis, 2.0, "warm")
        calm = _phase(apis, SECONDS, "calm")
        stop, sent = threading.Event(), [0]
        flooder = threading.Thread(target=_flood, args=(apis[1], stop, sent), daemon=True)
        flooder.start()
        try:
            flooded = _phase(apis, SECONDS, "flood")
        finally:
            stop.set()
            flooder.join(timeout=30)
        figures: dict[str, Any] = {
            "honest_per_s": HONEST_PER_S,
            "flood_per_s_offered": HONEST_PER_S * FLOOD_FACTOR,
            "flood_sent": sent[0],
            "calm_p50_ms": round(statistics.median(calm) * 1e3, 2),
            "calm_p99_ms": round(_p99(calm) * 1e3, 2),
            "flooded_p50_ms": round(statistics.median(flooded) * 1e3, 2),
            "flooded_p99_ms": round(_p99(flooded) * 1e3, 2),
            "updates_per_phase": [len(calm), len(flooded)],
        }
        print(json.dumps(figures))
        assert sent[0] >= HONEST_PER_S * FLOOD_FACTOR * SECONDS * 0.5, figures  # it did flood
        assert _p99(flooded) <= 2 * _p99(calm), figures
    finally:
        swarm_down(directory, grace_s=10)
