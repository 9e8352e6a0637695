"""``/metrics`` after a scripted scenario on two real nodes: every count is the one the scenario
implies, exactly.

Both nodes are configured with a peer that never answers, so they count their reads stale until
they have synced with someone. Apart, A and B each write (with and without provenance), both
write one lww subject and one ``manual`` subject; A reads once (stale). Connected, both see two
conflicts, lww settles one; A reads B's claim (in sync: not stale), settles the other by an
update, and writes three decisions (citing the receipt of its read, citing nothing, citing a
plain claim). B writes once more, A reads it, and the admin revokes B's node from just before
that write: its envelope is excluded and the read that returned it was poisoned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memmesh.runtime.swarm import swarm_down, swarm_up

from .test_memory_api import call, wait_until

UNREACHABLE = "ws://127.0.0.1:9/v1/sync"  # the discard port: nothing listens on loopback


def metrics(api: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(api + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def one(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def memmesh(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory, no_peers=True, extra_config={"peers": [UNREACHABLE]})["nodes"]
    try:
        yield nodes, directory
    finally:
        swarm_down(directory, grace_s=5)


def _put(api: str, namespace: str, key: str, value: object, **fields: Any) -> str:
    body = {"namespace": namespace, "key": key, "value": value, **fields}
    return str(call(api, "/v1/store/items", "PUT", body)["claim_id"])


def _state(api: str) -> dict[str, Any]:
    return call(api, "/v1/state")  # type: ignore[no-any-return]


def _in_sync(a: str, b: str) -> bool:
    left, right = _state(a), _state(b)
    return (
        left["frontier"] == right["frontier"]
        and all(p["in_sync"] for p in left["peers"] if p["state"] == "active")
        and left["active_peers"] == 1
    )


def test_every_signal_counts_exactly_what_happened(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    nodes, directory = pair
    a, b = nodes[0]["api"], nodes[1]["api"]
    admin = str(directory / "admin.key")
    memmesh("policy", "set", "m.**", "--rule", "manual", "--admin-key", admin, "--api", a)

    # Apart.
    k1 = _put(a, "deals", "k1", {"v": 1})
    _put(a, "deals", "k2", {"v": 2}, source="crm")
    _put(a, "deals", "c1", "a")
    _put(a, "m", "x", "a")
    _put(b, "deals", "c1", "b")
    _put(b, "m", "x", "b")
    _put(b, "deals", "late", "x")
    first = call(a, "/v1/store/items?namespace=deals&key=k1")  # stale: never synced
    receipt = first["receipt"]["id"]

    # Together.
    call(a, "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
    wait_until(lambda: _in_sync(a, b) and _in_sync(b, a), 30, "the two in sync")
    conflicts = call(a, "/v1/conflicts")["conflicts"]
    assert len(conflicts) == 2
    midway = metrics(a)
    assert one(midway, "memmesh_conflicts_open") == 1  # the manual one
    assert one(midway, "memmesh_conflicts_resolved_total") == 1  # lww, at detection
    assert one(midway, "memmesh_peers", state="active") == 1
    call(a, "/v1/store/items?namespace=deals&key=late")  # in sync: not stale
    _put(a, "m", "x", "final")  # saw both candidates: an update that settles the conflict
    _put(a, "deals", "d1", "renew", type="decision", based_on=[receipt])
    _put(a, "deals", "d2", "wait", type="decision")
    _put(a, "deals", "d3", "drop", type="decision", based_on=[k1])  # a claim, not a receipt

    # An exclusion after a read.
    b_seq = next(f["seq"] for f in _state(b)["frontier"] if f["author"] == nodes[1]["pubkey"])
    _put(b, "deals", "after", "y")
    wait_until(lambda: _in_sync(a, b), 30, "A holds B's last write")
    after = call(a, "/v1/store/items?namespace=deals&key=after")
    assert after["value"] == "y"
    memmesh("members", "revoke", nodes[1]["pubkey"], "--node-seq", str(b_seq),
            "--admin-key", admin, "--api", a)  # fmt: skip
    wait_until(
        lambda: one(metrics(a), "memmesh_envelopes_excluded_total", reason="revoked") == 1,
        20,
        "B's last envelope excluded on A",
    )

    found = metrics(a)
    expected = {
        "memmesh_entries_total": 12,  # 8 by A, 4 by B; policy and revoke claims are _mesh
        "memmesh_entries_with_provenance_total": 3,  # k2 (source), d1 and d3 (based_on)
        "memmesh_conflicts_detected_total": 2,
        "memmesh_conflicts_resolved_total": 2,
        "memmesh_conflicts_open": 0,
        "memmesh_conflict_resolution_seconds_count": 2,
        "memmesh_decisions_total": 3,
        "memmesh_decisions_traceable_total": 1,  # only d1 cites a receipt
        "memmesh_reads_total": 3,
        "memmesh_propagation_seconds_count": 4,  # B's four envelopes
    }
    assert {name: one(found, name) for name in expected} == expected
    # A session loses nothing short of closing, so no confirmation finds a push lost.
    assert {("memmesh_lost_pushes_total", ()), ("memmesh_stray_pushes_total", ())} <= set(found)
    assert one(found, "memmesh_lost_pushes_total") == 0
    assert one(found, "memmesh_read_incidents_total", kind="stale") == 1
    assert one(found, "memmesh_read_incidents_total", kind="poisoned") == 1
    assert one(found, "memmesh_envelopes_excluded_total", reason="revoked") == 1
    assert not [k for k in found if k[0] == "memmesh_envelopes_rejected_total"]
    assert one(found, "memmesh_build_info", version=_version()) == 1
    assert one(found, "memmesh_conflict_resolution_seconds_sum") >= 0
    buckets = [v for (n, _), v in found.items() if n == "memmesh_propagation_seconds_bucket"]
    assert max(buckets) == 4  # the +Inf bucket holds them all
    # Every durable commit is timed: A's own 8 writes at least, each an fsync'd transaction.
    commits = one(found, "memmesh_commit_seconds_count")
    assert commits >= 8 and one(found, "memmesh_commit_seconds_sum") > 0
    buckets = [v for (n, _), v in found.items() if n == "memmesh_commit_seconds_bucket"]
    assert max(buckets) == commits

    # `memmesh status` shows the same four signals.
    signals = json.loads(memmesh("status", "--api", a, "--json"))["signals"]
    assert signals["entries"] == 12 and signals["provenance_share"] == 0.25
    assert (signals["conflicts_detected"], signals["conflicts_open"]) == (2, 0)
    assert (signals["decisions"], signals["decisions_traceable"]) == (3, 1)
    assert (signals["reads"], signals["stale_reads"], signals["poisoned_reads"]) == (3, 1, 1)
    shown = memmesh("status", "--api", a)
    assert "provenance 25.0% of 12 entries" in shown and "1 poisoned" in shown, shown

    # Gossip counted on both ends: nothing arrives that was not sent. B is read first, so
    # everything it counts as received, A had counted as sent (B may still be redialling).
    other = metrics(b)
    later = metrics(a)
    kinds = {dict(labels)["kind"] for (n, labels) in later if n == "memmesh_gossip_messages_total"}
    assert {"Hello", "Auth", "Frontier", "Envelopes"} <= kinds
    for kind in kinds:
        sent = one(later, "memmesh_gossip_messages_total", kind=kind, direction="out")
        got = one(other, "memmesh_gossip_messages_total", kind=kind, direction="in")
        assert got <= sent, kind
        # Any frame can be lost with a duplicate session closed before the peer reads it (the
        # two nodes dial each other at once); these kinds go on the session that stays too.
        if kind in ("Hello", "Auth", "Frontier", "Envelopes"):
            assert got > 0, kind
        assert one(later, "memmesh_gossip_bytes_total", kind=kind, direction="out") >= sent


def _version() -> str:
    from memmesh import __version__

    return __version__
