"""``MeshClient``, ``AsyncMeshClient`` and the memory CLI against real node processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh.client import AsyncMeshClient, MeshClient, MeshError
from memmesh.crypto import SigningKey, write_key_file
from memmesh.runtime.swarm import swarm_down, swarm_up


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory)["nodes"]
    yield nodes, directory
    swarm_down(directory, grace_s=5)


def _agent(
    tmp_path: Path, directory: Path, api: str, role: str, name: str
) -> tuple[SigningKey, Path]:
    key = SigningKey.generate()
    path = tmp_path / f"{name}.key"
    write_key_file(path, key)
    cli("members", "add", key.public_key.hex(), "--role", role,
        "--admin-key", str(directory / "admin.key"), "--api", api)  # fmt: skip
    return key, path


def test_the_blocking_client_round_trip(mesh: tuple[list[dict[str, Any]], Path]) -> None:
    nodes, _ = mesh
    client = MeshClient(nodes[0]["api"])
    first = client.put(("crm", "accounts"), "acme", {"tier": "gold", "seats": 40}, source="crm")
    second = client.put("crm.accounts", "acme", {"tier": "gold", "seats": 45})
    item = client.get("crm.accounts", "acme")
    assert item is not None and item.value == {"tier": "gold", "seats": 45}
    assert item.state == "ok" and item.claim is not None
    assert item.claim["claim_id"] == second.claim_id and item.receipt is not None
    assert [e["status"] for e in client.history("crm.accounts", "acme")] == ["superseded", "live"]
    assert client.history("crm.accounts", "absent") == []
    client.put("crm.notes", "n1", "call back")
    assert [i.key for i in client.search("crm", filter={"seats": {"$gt": 10}})] == ["acme"]
    assert client.list_namespaces(prefix="crm") == [("crm", "accounts"), ("crm", "notes")]
    client.delete("crm.notes", "n1")
    gone = client.get("crm.notes", "n1")
    assert gone is not None and gone.state == "deleted"
    assert client.get("crm.notes", "never") is None
    with pytest.raises(MeshError) as refused:
        client.put("_mesh.x", "k", 1)
    assert (refused.value.status, refused.value.code) == (422, "reserved_namespace")
    decision = client.record_decision(
        "crm.decisions", "acme", "renew at 45 seats", receipts=[item.receipt]
    )
    other = MeshClient(nodes[1]["api"])
    wait_until(lambda: other.get("crm.decisions", "acme") is not None, 10, "the decision")
    shown = other.get("crm.decisions", "acme")
    assert shown is not None and shown.claim is not None
    assert shown.claim["claim_id"] == decision.claim_id
    assert shown.claim["based_on"] == [item.receipt["id"]]
    assert first.seq < second.seq


def test_an_agent_key_signs_client_side(
    mesh: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    nodes, directory = mesh
    agent, _ = _agent(tmp_path, directory, nodes[0]["api"], "writer", "agent")
    client = MeshClient(nodes[1]["api"], agent_key=agent)
    wait_until(lambda: _is_member(nodes[1]["api"], agent), 10, "the admit on node1")
    client.put("ops", "status", "green")
    client.put("ops", "status", "amber")  # supersedes what it read first: an update
    item = client.get("ops", "status")
    assert item is not None and item.value == "amber" and item.state == "ok"
    assert item.claim is not None and item.claim["agent"] == agent.public_key.hex()
    assert item.claim["aseq"] == 2
    client.delete("ops", "status")
    assert client.get("ops", "status").state == "deleted"  # type: ignore[union-attr]


def _is_member(api: str, agent: SigningKey) -> bool:
    with urllib.request.urlopen(api + "/v1/members", timeout=10) as response:
        members = json.loads(response.read())["members"]
    return any(m["key"] == agent.public_key.hex() for m in members)


def test_the_async_client_and_a_resolver(
    mesh: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    nodes, directory = mesh
    resolver, _ = _agent(tmp_path, directory, nodes[0]["api"], "resolver", "resolver")
    cli("policy", "set", "deal.**", "--rule", "manual",
        "--admin-key", str(directory / "admin.key"), "--api", nodes[0]["api"])  # fmt: skip

    async def scenario() -> None:
        async with AsyncMeshClient(nodes[0]["api"]) as a, AsyncMeshClient(nodes[1]["api"]) as b:
            await a.put("deal.acme", "price", 100)
            await asyncio.sleep(0.5)
            # Both write without having seen the other's second write: a conflict.
            await asyncio.gather(a.put("deal.acme", "price", 110), b.put("deal.acme", "price", 95))
            for _ in range(200):
                if len(await a.conflicts()) == 1 and len(await b.conflicts()) == 1:
                    break
                await asyncio.sleep(0.05)
            (conflict,) = await a.conflicts()
            assert conflict["decision"]["status"] == "escalated"
            winner = conflict["candidates"][0]["claim_id"]
            async with AsyncMeshClient(nodes[1]["api"], agent_key=resolver) as r:
                await r.resolve_conflict(conflict["id"], winner)
            for _ in range(200):
                item = await a.get("deal.acme", "price")
                if item is not None and item.state == "ok":
                    break
                await asyncio.sleep(0.05)
            assert item is not None and item.claim is not None
            assert item.claim["claim_id"] == winner
            assert [i.key for i in await a.search("deal")] == ["price"]
            assert await a.list_namespaces(max_depth=1) == [("deal",)]

    asyncio.run(scenario())


def test_the_memory_cli(mesh: tuple[list[dict[str, Any]], Path]) -> None:
    nodes, _ = mesh
    api = nodes[0]["api"]
    put = json.loads(cli("put", "crm.accounts", "acme", '{"tier": "gold"}', "--source", "crm",
                         "--api", api, "--json").stdout)  # fmt: skip
    assert len(put["claim_id"]) == 64
    got = json.loads(cli("get", "crm.accounts", "acme", "--api", api, "--json").stdout)
    assert got["value"] == {"tier": "gold"} and got["claim"]["source"] == "crm"
    assert "gold" in cli("get", "crm.accounts", "acme", "--api", api).stdout
    found = json.loads(cli("search", "crm", "--filter", '{"tier": "gold"}', "--api", api,
                           "--json").stdout)  # fmt: skip
    assert [i["key"] for i in found["items"]] == ["acme"]
    history = json.loads(cli("history", "crm.accounts", "acme", "--api", api, "--json").stdout)
    assert [e["status"] for e in history["entries"]] == ["live"]
    assert json.loads(cli("conflicts", "--api", api, "--json").stdout) == {"conflicts": []}
    missing = cli("get", "crm.accounts", "absent", "--api", api, ok=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    refused = cli("put", "_mesh.x", "k", "1", "--api", api, ok=False)
    assert refused.returncode == 1 and "reserved_namespace" in refused.stderr
