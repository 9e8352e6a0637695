"""A node under connection abuse, on loopback: idle websocket connections that never say
``Hello``, past ``inbound_connections_max``, and TCP clients that send an upgrade request and
never read. The excess is refused with 503 before any websocket exists, the idle ones are
dropped at the handshake deadline, the node keeps serving writes and reads, and its resident
memory grows by less than 50 MB. ``make soak`` holds 1,000 such connections for 60 s."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from memmesh.runtime.swarm import swarm_down, swarm_up
from memmesh.testing import scaled

from .test_memory_api import call

CAP = 64


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _idle(url: str, outcome: dict[str, int], until: float) -> None:
    """Connect and say nothing; connect again when dropped, until ``until``."""
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            try:
                async with session.ws_connect(url, heartbeat=None, autoping=True) as ws:
                    outcome["accepted"] += 1
                    async for message in ws:  # the node's Hello, then its Bye at the deadline
                        if message.type is aiohttp.WSMsgType.BINARY:
                            outcome["frames"] += 1
                    outcome["dropped"] += 1
            except aiohttp.WSServerHandshakeError as exc:
                outcome[f"refused_{exc.status}"] += 1
                await asyncio.sleep(0.2)
            except (aiohttp.ClientError, OSError):
                outcome["errors"] += 1
                await asyncio.sleep(0.2)


_WRITER = """
import json, sys, time, urllib.request
api, seconds = sys.argv[1], float(sys.argv[2])
until, latencies = time.monotonic() + seconds, []
while time.monotonic() < until:
    body = json.dumps({"namespace": "a", "key": f"k{len(latencies)}", "value": 1}).encode()
    request = urllib.request.Request(api + "/v1/store/items", data=body, method="PUT")
    request.add_header("Content-Type", "application/json")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    latencies.append(time.monotonic() - started)
    time.sleep(0.25)
print(json.dumps(latencies))
"""
"""The writing agent: a write every 0.25 s for the campaign, each timed; the times as JSON."""


def _never_reading(host: str, port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            b"GET /v1/sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        socks.append(s)  # and never read
    return socks


def test_idle_and_non_reading_connections_cost_little_and_block_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "swarm"
    config: dict[str, Any] = {"handshake_timeout_ms": 1000, "inbound_connections_max": CAP}
    node = swarm_up(1, directory, extra_config=config)["nodes"][0]
    api, gossip = node["api"], node["gossip"]
    host, port = gossip.split("//")[1].split("/")[0].split(":")
    try:
        call(api, "/v1/store/items", "PUT", {"namespace": "a", "key": "warm", "value": 0})
        before = _rss_mb(node["pid"])
        seconds = 60.0 if scaled(1) > 1 else 4.0
        connections = 1000 if scaled(1) > 1 else 150
        outcome: dict[str, int] = dict.fromkeys(
            ("accepted", "dropped", "frames", "refused_503", "errors"), 0
        )
        socks = _never_reading(host, int(port), 100 if scaled(1) > 1 else 10)

        # An agent keeps writing meanwhile, from its own process: timed there, a write shows
        # what the node takes, not how busy this process is running the idle connections.
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, api, str(seconds)], stdout=subprocess.PIPE, text=True
        )

        async def campaign() -> None:
            until = time.monotonic() + seconds
            idle = [asyncio.create_task(_idle(gossip, outcome, until)) for _ in range(connections)]
            await asyncio.gather(*idle)

        asyncio.run(campaign())
        out, _ = writer.communicate(timeout=seconds + 60)
        assert writer.returncode == 0
        latencies: list[float] = json.loads(out)
        after = _rss_mb(node["pid"])
        for s in socks:
            s.close()
        with urllib.request.urlopen(api + "/readyz") as response:
            assert response.status == 200
        metrics = urllib.request.urlopen(api + "/metrics").read().decode()
        refused = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("memmesh_inbound_refused_total")
        )
        block = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("memmesh_loop_block_seconds_max")
        )
        print(json.dumps({**outcome, "rss_before_mb": before, "rss_after_mb": after,
                          "writes": len(latencies), "write_s_max": max(latencies),
                          "refused_metric": refused,
                          "loop_block_s_max": block}))  # fmt: skip
        assert outcome["accepted"] > 0 and outcome["refused_503"] > 0
        assert refused >= outcome["refused_503"]
        assert outcome["dropped"] >= outcome["accepted"] - connections  # deadline drops them
        assert len(latencies) >= seconds  # writes go on: about four a second
        assert max(latencies) < 2.0
        assert after - before < 50, (before, after)
    finally:
        swarm_down(directory, grace_s=10)
