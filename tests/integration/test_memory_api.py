"""The memory API on real node processes: conflicts made apart, seen alike, settled by policy.

Two nodes start isolated (``swarm up --no-peers``), each writes a different value for one
subject, then ``POST /v1/peers`` connects them. Both list the same conflict with the same
candidates; under ``lww`` both read the same value with the same explanation; under ``manual`` no
value wins until a resolver's ``resolution`` claim arrives, then both agree. A write that saw the
previous value is an update, never a conflict.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh.claims import make_claim
from memmesh.client import MeshClient
from memmesh.crypto import SigningKey, read_key_file, write_key_file
from memmesh.runtime.swarm import swarm_down, swarm_up

NS = "accounts.acme"


def call(base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def status_of(
    base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    try:
        return 200, call(base, path, method, body)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else done.stdout


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory, no_peers=True)["nodes"]
    yield nodes, directory
    swarm_down(directory, grace_s=5)


def _conflicts(api: str) -> list[dict[str, Any]]:
    return call(api, "/v1/conflicts")["conflicts"]  # type: ignore[no-any-return]


def _make_conflict(nodes: list[dict[str, Any]]) -> tuple[str, str]:
    a, b = (n["api"] for n in nodes)
    first = call(a, "/v1/store/items", "PUT", {"namespace": NS, "key": "renewal", "value": "yes"})
    second = call(b, "/v1/store/items", "PUT", {"namespace": NS, "key": "renewal", "value": "no"})
    call(a, "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
    wait_until(lambda: all(len(_conflicts(api)) == 1 for api in (a, b)), 15, "both see it")
    return first["claim_id"], second["claim_id"]


def test_a_conflict_made_apart_is_listed_alike_and_lww_settles_it_alike(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    nodes, _ = pair
    a, b = (n["api"] for n in nodes)
    first, second = _make_conflict(nodes)
    seen = [_conflicts(api)[0] for api in (a, b)]
    assert seen[0]["id"] == seen[1]["id"]
    assert {c["claim_id"] for c in seen[0]["candidates"]} == {first, second}
    assert seen[0]["candidates"] == seen[1]["candidates"]
    assert seen[0]["decision"] == seen[1]["decision"]
    assert seen[0]["decision"]["rule"] == "lww"
    reads = [call(api, f"/v1/store/items?namespace={NS}&key=renewal") for api in (a, b)]
    assert reads[0]["value"] == reads[1]["value"] == "no"  # written second: the later HLC
    assert reads[0]["state"] == "resolved"
    assert reads[0]["conflict"]["decision"]["explanation"]["why"]
    for read in reads:  # provenance: author, verified signature, timestamp
        claim = read["claim"]
        assert claim["agent"] and claim["signature"] == "verified" and claim["hlc"][0] > 0
        assert len(read["receipt"]["id"]) == 64 and read["receipt"]["claims"] == sorted(
            [first, second]
        )

    # An update that saw both is an update: the conflict is gone, not a new one.
    call(a, "/v1/store/items", "PUT", {"namespace": NS, "key": "renewal", "value": "maybe"})
    wait_until(
        lambda: all(
            call(api, f"/v1/store/items?namespace={NS}&key=renewal")["value"] == "maybe"
            for api in (a, b)
        ),
        10,
        "the update everywhere",
    )
    assert _conflicts(a) == _conflicts(b) == []
    history = call(b, f"/v1/store/items/history?namespace={NS}&key=renewal")["entries"]
    assert [e["status"] for e in history].count("superseded") == 2
    assert [e["status"] for e in history].count("live") == 1


def test_under_manual_nothing_wins_until_a_resolver_settles_it(
    pair: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    nodes, directory = pair
    a, b = (n["api"] for n in nodes)
    admin_key = str(directory / "admin.key")
    cli("policy", "set", "accounts.**", "--rule", "manual", "--admin-key", admin_key, "--api", a)
    resolver = SigningKey.generate()
    resolver_file = tmp_path / "resolver.key"
    write_key_file(resolver_file, resolver)
    cli("members", "add", resolver.public_key.hex(), "--role", "resolver",
        "--admin-key", admin_key, "--api", a)  # fmt: skip
    first, second = _make_conflict(nodes)
    for api in (a, b):
        (conflict,) = _conflicts(api)
        assert conflict["decision"]["status"] == "escalated"
        assert conflict["open"] is True
        item = call(api, f"/v1/store/items?namespace={NS}&key=renewal")
        assert item["value"] is None and item["state"] == "conflict"

    # A plain writer (the node's agent) may not resolve.
    status, body = status_of(a, f"/v1/conflicts/{conflict['id']}/resolve", "POST",
                             {"winner": first})  # fmt: skip
    assert (status, body["error"]) == (403, "role_not_allowed")

    # The resolver signs its resolution itself and writes it through node b.
    mesh = bytes.fromhex(call(b, "/v1/state")["mesh"])
    claim = make_claim(
        read_key_file(resolver_file),
        mesh_id=mesh,
        aseq=1,
        hlc=(time.time_ns() // 1_000_000, 0),
        namespace=NS.split("."),
        key="renewal",
        type="resolution",
        value={"winner": first},
        supersedes=[bytes.fromhex(first), bytes.fromhex(second)],
    )
    created = call(b, "/v1/claims", "POST", {"claim": claim.raw.hex()})
    assert created["claim_ids"] == [claim.id.hex()]
    wait_until(
        lambda: all(
            call(api, f"/v1/store/items?namespace={NS}&key=renewal")["value"] == "yes"
            for api in (a, b)
        ),
        10,
        "both agree on the resolver's choice",
    )
    for api in (a, b):
        assert _conflicts(api) == []
        (record,) = call(api, "/v1/conflicts?status=all")["conflicts"]
        assert record["settled_by"] == "write" and record["resolved_ms"] >= record["detected_ms"]


def test_bad_requests_get_a_reason_and_change_nothing(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    nodes, _ = pair
    a = nodes[0]["api"]
    before = call(a, "/v1/state")["claims_digest"]
    cases = [
        ("PUT", {"namespace": "_mesh.x", "key": "k", "value": 1}, 422, "reserved_namespace"),
        ("PUT", {"namespace": NS, "key": "k", "value": 1, "type": "invoice"}, 422, "unknown_type"),
        ("PUT", {"namespace": NS, "key": "k", "value": 1, "confidence": 10_001}, 422, None),
        ("PUT", {"namespace": NS, "key": "", "value": 1}, 400, "bad_request"),
        ("PUT", {"namespace": NS, "key": "k", "value": 1.5}, 422, None),
        ("PUT", {"namespace": NS, "key": "k", "value": 1, "based_on": ["zz"]}, 400, "bad_request"),
        ("DELETE", {"namespace": NS, "key": "absent"}, 404, "not_found"),
    ]
    for method, body, status, reason in cases:
        got, answer = status_of(a, "/v1/store/items", method, body)
        assert got == status, (body, answer)
        if reason is not None:
            assert answer["error"] == reason, answer
        assert answer["detail"]
    assert call(a, "/v1/state")["claims_digest"] == before
    status, _ = status_of(a, "/v1/conflicts/" + "00" * 32)
    assert status == 404
    spec = call(a, "/v1/openapi.json")
    assert spec["openapi"].startswith("3.1") and "/v1/store/items/search" in spec["paths"]


def test_search_namespaces_delete_and_receipts(pair: tuple[list[dict[str, Any]], Path]) -> None:
    nodes, _ = pair
    a = nodes[0]["api"]
    for key, tier, seats in (("acme", "gold", 50), ("globex", "silver", 5), ("initech", "gold", 9)):
        call(a, "/v1/store/items", "PUT",
             {"namespace": "crm.accounts", "key": key, "value": {"tier": tier, "seats": seats},
              "source": "crm-export"})  # fmt: skip
    call(a, "/v1/store/items", "PUT", {"namespace": "crm.notes", "key": "n1", "value": "hi"})
    wanted = {"tier": "gold", "seats": {"$gte": 10}}
    found = call(a, "/v1/store/items/search", "POST", {"namespace_prefix": "crm", "filter": wanted})
    assert [i["key"] for i in found["items"]] == ["acme"]
    assert found["items"][0]["claim"]["source"] == "crm-export"
    page = call(a, "/v1/store/items/search", "POST",
                {"namespace_prefix": ["crm", "accounts"], "limit": 1, "offset": 1})  # fmt: skip
    assert [i["key"] for i in page["items"]] == ["globex"]
    listed = call(a, "/v1/store/items?namespace=crm")["items"]  # nothing sits at crm itself
    assert listed == []
    listed = call(a, "/v1/store/items?namespace=crm.accounts")["items"]
    assert [(i["namespace"], i["key"]) for i in listed] == [
        (["crm", "accounts"], "acme"), (["crm", "accounts"], "globex"),
        (["crm", "accounts"], "initech"),
    ]  # fmt: skip
    spaces = call(a, "/v1/store/namespaces", "POST", {"prefix": "crm"})["namespaces"]
    assert spaces == [["crm", "accounts"], ["crm", "notes"]]
    assert call(a, "/v1/store/namespaces", "POST", {"max_depth": 1})["namespaces"] == [["crm"]]

    deleted = call(a, "/v1/store/items", "DELETE", {"namespace": "crm.notes", "key": "n1"})
    assert deleted["claim_id"]
    gone = call(a, "/v1/store/items?namespace=crm.notes&key=n1")
    assert (gone["state"], gone["value"]) == ("deleted", None)

    receipt = call(a, "/v1/store/items?namespace=crm.accounts&key=acme")["receipt"]
    recorded = call(a, "/v1/receipts", "POST", {"receipt": receipt, "replicate": True})
    assert recorded["claim_id"]
    receipt_value = {k: receipt[k] for k in ("frontier", "claims", "reader")}
    again = call(a, "/v1/receipts", "POST", {"receipt": receipt_value})
    assert again == {"id": receipt["id"], "recorded": "local"}
    decision = call(a, "/v1/store/items", "PUT",
                    {"namespace": "crm.decisions", "key": "acme-upsell", "value": "offer seats",
                     "type": "decision", "based_on": [receipt["id"]]})  # fmt: skip
    read = call(a, "/v1/store/items?namespace=crm.decisions&key=acme-upsell")
    assert read["claim"]["based_on"] == [receipt["id"]] and decision["seq"] >= 1
    # The agent's last claim seq, for a tool signing elsewhere: the decision was its last.
    agent = nodes[0]["agent"]
    assert call(a, f"/v1/agents/{agent}")["last_aseq"] == read["claim"]["aseq"] > 1
    assert call(a, f"/v1/agents/{'ab' * 32}")["last_aseq"] == 0
    metrics = urllib.request.urlopen(a + "/metrics", timeout=10).read().decode()
    assert "memmesh_reads_total" in metrics


def _metric(api: str, series: str) -> float:
    """One series of /metrics, named with its labels as Prometheus prints them."""
    text = urllib.request.urlopen(api + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} not in /metrics")


POISONED = 'memmesh_read_incidents_total{kind="poisoned"}'
STALE = 'memmesh_read_incidents_total{kind="stale"}'


def test_a_read_of_a_claim_later_excluded_counts_as_poisoned(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    nodes, directory = pair
    a, b = (n["api"] for n in nodes)
    call(a, "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
    admin_key = str(directory / "admin.key")
    writer = SigningKey.generate()
    cli("members", "add", writer.public_key.hex(), "--role", "writer",
        "--admin-key", admin_key, "--api", a)  # fmt: skip
    mesh = bytes.fromhex(call(a, "/v1/state")["mesh"])
    claim = make_claim(writer, mesh_id=mesh, aseq=1, hlc=(time.time_ns() // 10**6, 0),
                       namespace=["ops"], key="status", type="fact", value="green")  # fmt: skip
    call(a, "/v1/claims", "POST", {"claim": claim.raw.hex()})
    path = "/v1/store/items?namespace=ops&key=status"
    wait_until(lambda: status_of(b, path)[0] == 200, 10, "the claim on b")
    assert call(b, path)["claim_id"] == claim.id.hex()
    assert _metric(b, POISONED) == 0
    # The writer turns out to be compromised: revoked from its first claim on.
    cli("members", "revoke", writer.public_key.hex(), "--agent-seq", "0",
        "--admin-key", admin_key, "--api", a)  # fmt: skip
    wait_until(lambda: status_of(b, path)[0] == 404, 10, "the claim excluded on b")
    assert _metric(b, POISONED) == 2  # the wait's last read and the check both returned it
    history = call(b, "/v1/store/items/history?namespace=ops&key=status")["entries"]
    assert [(e["status"], e["excluded"]) for e in history] == [("excluded", "revoked")]


def test_reads_behind_a_lost_peer_count_as_stale(tmp_path: Path) -> None:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory, extra_config={"stale_read_after_ms": 3000})["nodes"]
    try:
        a, b = (n["api"] for n in nodes)
        # Until b has ended an anti-entropy round in sync, its reads are stale by rule (it
        # cannot know what it lacks): the first read is made only after that round.
        wait_until(lambda: any(p["in_sync"] for p in call(b, "/v1/state")["peers"]), 10,
                   "a round in sync on b")  # fmt: skip
        call(a, "/v1/store/items", "PUT", {"namespace": "ops", "key": "k", "value": 1})
        wait_until(lambda: status_of(b, "/v1/store/items?namespace=ops&key=k")[0] == 200, 10,
                   "the write on b")  # fmt: skip
        time.sleep(1.5)  # a sync round has ended in sync since
        call(b, "/v1/store/items?namespace=ops&key=k")
        assert (_metric(b, STALE), _metric(b, "memmesh_reads_total")) == (0, 2)
        os.kill(nodes[0]["pid"], signal.SIGTERM)
        time.sleep(3.5)
        call(b, "/v1/store/items?namespace=ops&key=k")
        assert (_metric(b, STALE), _metric(b, "memmesh_reads_total")) == (1, 3)
    finally:
        swarm_down(directory, grace_s=5)


def test_a_registered_type_is_checked_on_write(
    pair: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    nodes, directory = pair
    a = nodes[0]["api"]
    schema = tmp_path / "invoice.json"
    schema.write_text(json.dumps({"type": "object", "required": ["amount"],
                                  "properties": {"amount": {"type": "integer"}}}))  # fmt: skip
    cli("types", "register", "invoice", "--schema", str(schema),
        "--admin-key", str(directory / "admin.key"), "--api", a)  # fmt: skip
    ok = {"namespace": "billing", "key": "i1", "value": {"amount": 5}, "type": "invoice"}
    assert status_of(a, "/v1/store/items", "PUT", ok)[0] == 200
    bad = {**ok, "key": "i2", "value": {"amount": "five"}}
    status, answer = status_of(a, "/v1/store/items", "PUT", bad)
    assert (status, answer["error"]) == (422, "schema_violation")
    assert "amount" in answer["detail"]
    refused = subprocess.run(
        [sys.executable, "-m", "memmesh", "types", "register", "fact", "--schema", str(schema),
         "--admin-key", str(directory / "admin.key"), "--api", a],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "built in" in refused.stderr


def test_a_deleted_subject_is_gone_from_namespaces_and_cannot_be_deleted_twice(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    nodes, _ = pair
    api = nodes[0]["api"]
    call(api, "/v1/store/items", "PUT", {"namespace": "tmp.a", "key": "k", "value": 1})
    call(api, "/v1/store/items", "PUT", {"namespace": "tmp.b", "key": "k", "value": 2})
    listed = call(api, "/v1/store/namespaces", "POST", {"prefix": ["tmp"]})["namespaces"]
    assert listed == [["tmp", "a"], ["tmp", "b"]]
    call(api, "/v1/store/items", "DELETE", {"namespace": "tmp.a", "key": "k"})
    listed = call(api, "/v1/store/namespaces", "POST", {"prefix": ["tmp"]})["namespaces"]
    assert listed == [["tmp", "b"]]
    again = status_of(api, "/v1/store/items", "DELETE", {"namespace": "tmp.a", "key": "k"})
    assert again[0] == 404 and again[1]["error"] == "not_found"
    history = call(api, "/v1/store/items/history?namespace=tmp.a&key=k")["entries"]
    assert [e["type"] for e in history].count("retraction") == 1  # no second tombstone


def test_an_agent_past_its_write_quota_gets_429_and_nothing_is_written(tmp_path: Path) -> None:
    directory = tmp_path / "swarm"
    quota = {"agent_writes_per_s_max": 2, "agent_write_burst": 3}
    nodes = swarm_up(1, directory, extra_config=quota)["nodes"]
    try:
        (a,) = (n["api"] for n in nodes)
        for i in range(3):  # the burst
            call(a, "/v1/store/items", "PUT", {"namespace": "q", "key": f"k{i}", "value": i})
        request = urllib.request.Request(
            a + "/v1/store/items",
            data=json.dumps({"namespace": "q", "key": "over", "value": 1}).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=15)
        assert refused.value.code == 429
        assert json.loads(refused.value.read())["error"] == "rate_limited"
        assert refused.value.headers["Retry-After"] == "1"
        assert status_of(a, "/v1/store/items?namespace=q&key=over")[0] == 404
        assert _metric(a, "memmesh_writes_rate_limited_total") == 1
        time.sleep(0.6)  # a token more at 2 a second
        call(a, "/v1/store/items", "PUT", {"namespace": "q", "key": "over", "value": 1})
        assert status_of(a, "/v1/store/items?namespace=q&key=over")[0] == 200
        log = (Path(nodes[0]["data_dir"]) / "node.log").read_text()
        assert "write quota exceeded" in log
    finally:
        swarm_down(directory, grace_s=5)


def test_a_search_reads_a_bounded_part_of_the_prefix_per_request(tmp_path: Path) -> None:
    """With ``search_scan_subjects_max`` 4, a filter matching 3 of 20 subjects takes several
    requests: each page reads at most 4 subjects and ends early (even empty) with a cursor;
    following the cursors finds the 3 matches in order, and the client follows them itself."""
    directory = tmp_path / "swarm"
    nodes = swarm_up(1, directory, extra_config={"search_scan_subjects_max": 4})["nodes"]
    try:
        api = nodes[0]["api"]
        for i in range(20):
            tier = "gold" if i in (3, 11, 17) else "silver"
            item = {"namespace": "crm.accounts", "key": f"a{i:02d}", "value": {"tier": tier}}
            call(api, "/v1/store/items", "PUT", item)
        body: dict[str, Any] = {"namespace_prefix": "crm", "filter": {"tier": "gold"}, "limit": 10}
        keys: list[str] = []
        pages = 0
        while True:
            answer = call(api, "/v1/store/items/search", "POST", body)
            pages += 1
            keys += [item["key"] for item in answer["items"]]
            assert answer["receipt"]["id"]  # every page is a read with its receipt
            if answer["next"] is None:
                break
            assert len(answer["items"]) < 10  # short: the page stopped at its budget
            body = {**{k: body[k] for k in ("namespace_prefix", "filter")}, "limit": 10,
                    "cursor": answer["next"]}  # fmt: skip
        assert keys == ["a03", "a11", "a17"]
        assert pages == 5  # 20 subjects, 4 a page
        # A cursor carries the offset left: skip the first match, across pages.
        skipped = MeshClient(api).search(["crm"], filter={"tier": "gold"}, limit=10, offset=1)
        assert [item.key for item in skipped] == ["a11", "a17"]
        assert [i.key for i in MeshClient(api).search(["crm"], limit=3)] == ["a00", "a01", "a02"]

        # A whole namespace is read 4 keys at a time too, each page going on after the last.
        listed, query = [], "/v1/store/items?namespace=crm.accounts"
        while True:
            answer = call(api, query)
            listed += [item["key"] for item in answer["items"]]
            if answer["next"] is None:
                break
            assert len(answer["items"]) == 4
            query = f"/v1/store/items?namespace=crm.accounts&after={answer['next']['after']}"
        assert listed == [f"a{i:02d}" for i in range(20)]

        first = call(api, "/v1/store/items/search", "POST", {"namespace_prefix": "crm", "limit": 2})
        cursor = first["next"]
        assert cursor == {"after": {"namespace": ["crm", "accounts"], "key": "a01"}, "offset": 0}
        for bad, why in (
            ({"namespace_prefix": "crm", "cursor": cursor, "offset": 0}, "one or the other"),
            ({"namespace_prefix": "crm", "cursor": {"after": "a01"}}, "sent back as it came"),
            ({"namespace_prefix": "crm", "cursor": {**cursor, "x": 1}}, "sent back as it came"),
            ({"namespace_prefix": "ops", "cursor": cursor}, "not under this search"),
            ({"namespace_prefix": "crm", "cursor": {**cursor, "offset": -1}}, "offset is"),
        ):
            status, answer = status_of(api, "/v1/store/items/search", "POST", bad)
            assert status == 400 and why in answer["detail"], (bad, answer)
    finally:
        swarm_down(directory, grace_s=5)


def _pages_of_two(api: str, path: str, field: str) -> list[dict[str, Any]]:
    """Every page of a listing that pages by ``limit`` and ``after`` (its last item's id),
    two items a page."""
    found: list[dict[str, Any]] = []
    query = f"{path}&limit=2"
    while True:
        answer = call(api, query)
        assert len(answer[field]) <= 2
        found += answer[field]
        if answer["next"] is None:
            return found
        last = answer[field][-1]
        assert answer["next"] == last.get("id", last.get("claim_id"))
        query = f"{path}&limit=2&after={answer['next']}"


def test_conflicts_come_in_pages_that_go_on_from_the_last(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    """Five conflicts made apart: pages of two, each after the last one given, list the same
    conflicts in the same order as one page; the client collects every page."""
    nodes, _ = pair
    a, b = nodes[0]["api"], nodes[1]["api"]
    for i in range(5):
        for api, value in ((a, "a"), (b, "b")):
            call(
                api,
                "/v1/store/items",
                "PUT",
                {"namespace": "split", "key": f"c{i}", "value": value},
            )
    call(a, "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
    wait_until(lambda: len(_conflicts(a)) == 5, 30, "five conflicts on A")
    for status in ("current", "all"):
        whole = call(a, f"/v1/conflicts?status={status}")
        assert len(whole["conflicts"]) == 5 and whole["next"] is None
        paged = _pages_of_two(a, f"/v1/conflicts?status={status}", "conflicts")
        assert [c["id"] for c in paged] == [c["id"] for c in whole["conflicts"]]
    assert [c["key"] for c in MeshClient(a).conflicts()] == [f"c{i}" for i in range(5)]
    mcp_server = pytest.importorskip("memmesh.mcp_server")
    tools = mcp_server.MeshTools(a)
    for status in ("current", "all"):
        whole = call(a, f"/v1/conflicts?status={status}")["conflicts"]
        assert _tool_pages(tools.list_conflicts, "conflicts", status=status) == whole
    for bad in ("limit=0", "limit=1001", "limit=x", "after=zz"):
        assert status_of(a, f"/v1/conflicts?{bad}")[0] == 400, bad
    assert status_of(a, f"/v1/conflicts?after={'00' * 32}")[0] == 404


def _tool_pages(tool: Callable[..., Awaitable[Any]], field: str, **arguments: Any) -> list[Any]:
    """Every page an MCP tool gives two at a time, following its ``next``."""
    found: list[Any] = []
    cursor = None
    while True:
        answer = asyncio.run(tool(**arguments, limit=2, cursor=cursor))
        assert len(answer[field]) <= 2
        found += answer[field]
        if answer["next"] is None:
            return found
        cursor = answer["next"]


def test_namespaces_come_in_pages_that_go_on_from_the_cursor(
    pair: tuple[list[dict[str, Any]], Path],
) -> None:
    """Five namespaces: pages of two, each from the last page's ``next``, list what one page
    lists; the client fills its limit from as many pages as it takes, and so does the MCP
    tool's caller."""
    nodes, _ = pair
    a = nodes[0]["api"]
    for i in range(5):
        call(a, "/v1/store/items", "PUT", {"namespace": f"p.n{i}.x", "key": "k", "value": i})
    call(a, "/v1/store/items", "PUT", {"namespace": "q", "key": "k", "value": 0})
    whole = call(a, "/v1/store/namespaces", "POST", {"prefix": "p"})
    assert whole["next"] is None
    assert whole["namespaces"] == [["p", f"n{i}", "x"] for i in range(5)]
    paged, body = [], {"prefix": "p", "max_depth": 2, "limit": 2}
    while True:
        answer = call(a, "/v1/store/namespaces", "POST", body)
        assert len(answer["namespaces"]) <= 2
        paged += answer["namespaces"]
        if answer["next"] is None:
            break
        body = {"prefix": "p", "max_depth": 2, "limit": 2, "cursor": answer["next"]}
    assert paged == [["p", f"n{i}"] for i in range(5)]
    client = MeshClient(a)
    assert client.list_namespaces(prefix="p", limit=3, offset=1) == [
        ("p", f"n{i}", "x") for i in (1, 2, 3)
    ]
    mcp_server = pytest.importorskip("memmesh.mcp_server")
    tools = mcp_server.MeshTools(a)
    listed = _tool_pages(tools.list_namespaces, "namespaces", prefix="p", max_depth=1)
    assert listed == [["p"]]
    cursor = {"start": ["p", "n3", "x"], "offset": 0}
    rest = call(a, "/v1/store/namespaces", "POST", {"prefix": "p", "cursor": cursor})
    assert rest == {"namespaces": [["p", "n3", "x"], ["p", "n4", "x"]], "next": None}
    for bad in (
        {"cursor": cursor, "offset": 1},  # a cursor carries its own offset
        {"cursor": {"start": ["q"]}, "prefix": "p"},  # not under the prefix
        {"cursor": {"after": ["p"]}},
        {"cursor": "p.n3"},
    ):
        assert status_of(a, "/v1/store/namespaces", "POST", bad)[0] == 400, bad


def test_a_subjects_history_comes_in_pages(pair: tuple[list[dict[str, Any]], Path]) -> None:
    """Five versions of one subject: pages of two, each after the last claim given, list
    the history one page lists, in the same order; the client collects every page."""
    nodes, _ = pair
    a = nodes[0]["api"]
    for version in range(5):
        call(a, "/v1/store/items", "PUT", {"namespace": "h", "key": "k", "value": version})
    base = "/v1/store/items/history?namespace=h&key=k"
    whole = call(a, base)
    assert len(whole["entries"]) == 5 and whole["next"] is None
    paged = _pages_of_two(a, base, "entries")
    assert paged == whole["entries"]
    assert [e["value"] for e in paged] == [0, 1, 2, 3, 4]
    assert MeshClient(a).history("h", "k") == whole["entries"]
    assert MeshClient(a).history("h", "nothing") == []
    mcp_server = pytest.importorskip("memmesh.mcp_server")
    tools = mcp_server.MeshTools(a)
    assert _tool_pages(tools.get_memory_history, "entries", namespace="h", key="k") == paged
    nothing = asyncio.run(tools.get_memory_history(namespace="h", key="nothing"))
    assert nothing["entries"] == [] and nothing["next"] is None
    with pytest.raises(mcp_server.ToolError, match="not_found"):  # a cursor it never gave
        asyncio.run(tools.get_memory_history(namespace="h", key="k", cursor="00" * 32))
    assert status_of(a, base + "&after=zz")[0] == 400
    assert status_of(a, base + "&limit=0")[0] == 400
    assert status_of(a, f"{base}&after={'00' * 32}")[0] == 404
