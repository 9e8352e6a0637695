"""The per-peer receive rate of ``memmesh.runtime.transport.Connection``, on a real websocket
on loopback: a peer that sends faster than ``receive_bytes_per_s`` is read no faster (its
frames wait in TCP), and every frame still arrives, in order."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from memmesh.runtime.transport import Connection, TransportLimits

FRAME = 10_000
FRAMES = 60


async def _receive_all(rate: int) -> tuple[float, list[bytes], float]:
    """Send FRAMES frames of FRAME bytes as fast as aiohttp takes them; the seconds until the
    server's connection handed the last one over, the frames, and its pause total."""
    limits = TransportLimits(
        frame_bytes_max=FRAME,
        heartbeat_interval_ms=5_000,
        receive_timeout_ms=10_000,
        send_queue_frames_max=16,
        receive_bytes_per_s=rate,
    )
    got: list[bytes] = []
    done = asyncio.Event()
    conns: list[Connection] = []

    def on_frame(_: str, data: bytes) -> None:
        got.append(data)
        if len(got) == FRAMES:
            done.set()

    async def accept(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * FRAME)
        await ws.prepare(request)
        conn = Connection("in", ws, limits, on_frame, lambda *_: None)
        conns.append(conn)
        await conn.run()
        return ws

    app = web.Application()
    app.router.add_get("/ws", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws,
        ):
            start = time.monotonic()
            for i in range(FRAMES):
                await ws.send_bytes(bytes([i]) * FRAME)
            await asyncio.wait_for(done.wait(), 30)
            took = time.monotonic() - start
            await ws.close()
    finally:
        await runner.cleanup()
    return took, got, conns[0].paused_s


def test_a_peer_sending_past_its_receive_rate_is_read_at_that_rate() -> None:
    rate = 200_000  # bytes a second: 600,000 bytes less a burst of 20,000 take 2.9 s at least
    took, got, paused = asyncio.run(_receive_all(rate))
    assert got == [bytes([i]) * FRAME for i in range(FRAMES)]
    floor = (FRAMES * FRAME - 2 * FRAME) / rate
    # Paced: the last frame cannot be handed over before the rate allows (a lower bound, which
    # no slow machine can break), and the reader waited about that long.
    assert took >= floor * 0.95, took
    assert paused >= floor * 0.9, paused


def test_without_a_rate_nothing_waits() -> None:
    _, got, paused = asyncio.run(_receive_all(0))
    assert len(got) == FRAMES and paused == 0.0
