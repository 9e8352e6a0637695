"""Event-loop stalls on a real node process: a steady trickle of writes never waits for the
commit window, while writes that pile up share commits and envelopes; and start-up's objects, then
what the node integrates, are left out of garbage collection.

``commit_batch_window_ms`` is there to gather what arrives under load into one commit. A client
writing one claim at a time, each after the last was acknowledged, is not load: every commit
carries one write and is over before the next arrives. Waiting the window there would only add
its length to every write, and to every hop of every update.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from memmesh.runtime.swarm import swarm_down, swarm_up

from .test_memory_api import call

WINDOW_MS = 50
"""Far longer than a loopback round trip, so the old rule (wait whenever the last commit ended
less than a window ago) would have made every write of the trickle wait."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    directory = tmp_path / "swarm"
    (one,) = swarm_up(
        1, directory, no_peers=True, extra_config={"commit_batch_window_ms": WINDOW_MS}
    )["nodes"]
    try:
        yield str(one["api"])
    finally:
        swarm_down(directory, grace_s=5)


def _put(api: str, key: str) -> dict[str, Any]:
    body = {"namespace": "window", "key": key, "value": key}
    return call(api, "/v1/store/items", "PUT", body)  # type: ignore[no-any-return]


def test_a_trickle_of_writes_never_waits_and_a_burst_shares_commits(node: str) -> None:
    before = call(node, "/v1/state")
    for i in range(30):  # one at a time: each acknowledged before the next is sent
        _put(node, f"t{i}")
    after = call(node, "/v1/state")
    assert after["windowed_flushes"] == before["windowed_flushes"]
    assert after["envelopes"] - before["envelopes"] == 30  # one envelope per write

    with ThreadPoolExecutor(max_workers=32) as pool:  # 200 writes, 32 in flight at a time
        claims = list(pool.map(lambda i: _put(node, f"b{i}"), range(200)))
    burst = call(node, "/v1/state")
    assert len({c["claim_id"] for c in claims}) == 200
    assert burst["windowed_flushes"] > after["windowed_flushes"]
    assert burst["envelopes"] - after["envelopes"] < 200  # writes shared envelopes


def _raw_metrics(api: str) -> str:
    with urllib.request.urlopen(api + "/metrics", timeout=15) as response:
        return str(response.read().decode())


def test_what_the_node_integrates_is_frozen_as_it_grows(tmp_path: Path) -> None:
    """Past start-up, every full collection walked everything integrated since: 0.5 s at
    100,000 claims, on the loop. Every ``gc_freeze_every_claims`` claims the node collects what
    is not frozen and freezes it; every collection's pause is in ``/metrics``."""
    directory = tmp_path / "swarm"
    (one,) = swarm_up(1, directory, no_peers=True, extra_config={"gc_freeze_every_claims": 40})[
        "nodes"
    ]
    api = str(one["api"])
    try:
        before = call(api, "/v1/state")
        assert before["gc"]["freezes"] == 0
        with ThreadPoolExecutor(max_workers=8) as pool:  # a flush carries at most 8 claims
            list(pool.map(lambda i: _put(api, f"g{i}"), range(160)))
        after = call(api, "/v1/state")
        # A freeze at the first flush 40 or more claims after the last: by 47, 94, 141.
        assert after["gc"]["freezes"] >= 3
        assert after["gc"]["freezes_put_off"] == 0
        assert after["gc_frozen_objects"] > before["gc_frozen_objects"]
        assert after["gc"]["full_collections"] >= after["gc"]["freezes"]
        text = _raw_metrics(api)
        full = re.search(
            r'^memmesh_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.MULTILINE
        )
        assert full is not None and float(full.group(1)) >= after["gc"]["freezes"]
        freezes = re.search(r"^memmesh_gc_freezes_total (\S+)$", text, re.MULTILINE)
        assert freezes is not None and float(freezes.group(1)) >= after["gc"]["freezes"]
    finally:
        swarm_down(directory, grace_s=5)


def test_what_start_up_built_is_left_out_of_garbage_collection(node: str) -> None:
    """A full collection over a node's whole heap stalled its event loop for 99 ms under load;
    the node freezes what start-up built (modules, the application, the replayed index)."""
    assert call(node, "/v1/state")["gc_frozen_objects"] > 10_000


def test_a_burst_of_large_writes_is_acknowledged_whole(node: str) -> None:
    """64 writes of 50 KB, 32 in flight: together far more than one envelope carries (1 MiB).
    Each fits alone, so each is acknowledged; packed by count alone they once went into one
    envelope of 3 MB, which the envelope limit refused, and 61 of the 64 failed with 503."""
    before = call(node, "/v1/state")

    def put(i: int) -> dict[str, Any]:
        body = {"namespace": "large", "key": f"l{i}", "value": "x" * 50_000}
        return call(node, "/v1/store/items", "PUT", body)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=32) as pool:
        claims = list(pool.map(put, range(64)))
    after = call(node, "/v1/state")
    assert len({c["claim_id"] for c in claims}) == 64
    assert after["envelopes"] - before["envelopes"] >= 4  # 3.2 MB: at least four envelopes
    assert call(node, "/v1/store/items?namespace=large&key=l63")["value"] == "x" * 50_000
