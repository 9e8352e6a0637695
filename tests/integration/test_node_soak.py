"""[soak] A node under a peer that never reads and 1,000 idle connections for 60 s: its RSS
grows by less than 20 MB and the honest nodes keep converging."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from memmesh.crypto import read_key_file
from memmesh.runtime.swarm import swarm_down, swarm_up
from memmesh.testing import PeerScript

pytestmark = pytest.mark.soak

IDLE_CONNECTIONS = 1000
DURATION_S = float(os.environ.get("MEMMESH_SOAK_SECONDS", "60"))


def _call(base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_idle_connections_and_a_peer_that_never_reads(tmp_path: Path) -> None:
    swarm = swarm_up(4, tmp_path / "swarm")
    nodes = swarm["nodes"]
    target, writer = nodes[0], nodes[1]
    try:
        # Node 3's key, its process stopped, plays the member that never reads.
        os.kill(nodes[3]["pid"], signal.SIGTERM)
        time.sleep(0.5)
        key = read_key_file(Path(nodes[3]["data_dir"]) / "node.key")
        mesh = bytes.fromhex(_call(target["api"], "/v1/state")["mesh"])
        honest = [n["api"] for n in nodes[:3]]
        result = asyncio.run(_attack(target, writer, honest, PeerScript(key, mesh)))
    finally:
        swarm_down(tmp_path / "swarm")
    growth_mb = (result["rss_end"] - result["rss_start"]) / 2**20
    print(
        f"\nRSS {result['rss_start'] / 2**20:.1f} -> {result['rss_end'] / 2**20:.1f} MiB "
        f"({growth_mb:+.1f}); idle connections opened {result['opened']}; writes "
        f"{result['writes']}; send queue overflows {result['overflows']}"
    )
    assert growth_mb < 20
    assert result["converged"]
    # The peer that never read (nor answered pings) was cut off, by its full send queue or by
    # the heartbeat, whichever came first.
    assert not result["silent_peer_active"]


async def _attack(
    target: dict[str, Any], writer: dict[str, Any], honest: list[str], script: PeerScript
) -> dict[str, Any]:
    stop = asyncio.Event()
    opened = 0
    writes = 0

    async def idle(session: aiohttp.ClientSession) -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                async with session.ws_connect(target["gossip"], autoping=True) as ws:
                    opened += 1
                    async for _ in ws:  # never say hello; reconnect when dropped
                        if stop.is_set():
                            break
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)

    async def never_reads(session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(target["gossip"], autoping=False) as ws:
            first = await ws.receive(timeout=5)
            await ws.send_bytes(script.hello)
            await ws.send_bytes(script.auth(first.data))
            await stop.wait()  # read nothing more: the node's pushes pile up for us

    async def write_load(session: aiohttp.ClientSession) -> None:
        nonlocal writes
        # A steady trickle (10 writes/s on each of two nodes): the data it adds is small next to
        # the 20 MB bound, so the bound measures buffering, not the store growing.
        while not stop.is_set():
            for node in (target, writer):
                body = {"namespace": "soak", "key": f"k{writes}", "value": writes}
                async with session.put(node["api"] + "/v1/store/items", json=body) as response:
                    if response.status == 201:
                        writes += 1
            await asyncio.sleep(0.1)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(never_reads(session))]
        tasks += [asyncio.create_task(idle(session)) for _ in range(IDLE_CONNECTIONS)]
        tasks.append(asyncio.create_task(write_load(session)))
        await asyncio.sleep(30)  # warm-up: idle connections opened, dropped, reopened
        rss_start = _rss_bytes(target["pid"])
        await asyncio.sleep(DURATION_S)
        rss_end = _rss_bytes(target["pid"])
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    converged = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not converged:
        states = [await asyncio.to_thread(_call, api, "/v1/state") for api in honest]
        converged = len({(json.dumps(s["frontier"]), s["claims_digest"]) for s in states}) == 1
        await asyncio.sleep(0.2)
    metrics = await asyncio.to_thread(_metrics, target["api"])
    peers = (await asyncio.to_thread(_call, target["api"], "/v1/state"))["peers"]
    silent = script.key.public_key.hex()
    return {
        "silent_peer_active": any(p["node"] == silent and p["state"] == "active" for p in peers),
        "rss_start": rss_start,
        "rss_end": rss_end,
        "opened": opened,
        "writes": writes,
        "converged": converged,
        "overflows": metrics,
    }


def _metrics(api: str) -> int:
    with urllib.request.urlopen(api + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("memmesh_send_queue_overflows_total"):
            return int(float(line.split()[1]))
    return 0
