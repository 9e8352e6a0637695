"""Websocket connections for gossip: one reader and one writer task each, a bounded send queue.

The transport moves whole frames between a peer and the node; it knows nothing of the protocol.
Limits are explicit: the frame size (aiohttp closes a connection whose frame is larger, code
1009), a heartbeat (ping every interval; no pong in half an interval closes the connection), a
receive timeout (nothing at all, not even a pong, for that long closes it), the send queue
(a peer that cannot keep up is disconnected, never buffered without bound), and a receive rate
per peer (``receive_bytes_per_s``): past it (and a burst of two frames) the reader waits before
taking the next frame, so a peer that sends faster is slowed by TCP's own flow control, and
one peer cannot take the node's whole attention. Compression is off.

A refusal is sent as a close frame with code 4000 and the ``Reason`` value as its text, so the
dialler learns it is final; the core already said why in a ``Bye``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ..quota import Quota

__all__ = ["REFUSAL_CLOSE_CODE", "Connection", "TransportLimits"]

REFUSAL_CLOSE_CODE = 4000
_CLOSE = object()
_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    frame_bytes_max: int
    heartbeat_interval_ms: int
    receive_timeout_ms: int
    send_queue_frames_max: int
    receive_bytes_per_s: int = 0
    """Bytes a second taken from one peer, beyond a burst of two frames (0: no pacing)."""


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class Connection:
    """One open websocket to a peer, named by ``handle`` in the core."""

    def __init__(
        self,
        handle: str,
        ws: WebSocket,
        limits: TransportLimits,
        on_frame: Callable[[str, bytes], None],
        on_closed: Callable[[str, str | None], None],
    ) -> None:
        self.handle = handle
        self.ws = ws
        self.limits = limits
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._queue: asyncio.Queue[bytes | object] = asyncio.Queue(limits.send_queue_frames_max)
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.overflowed = False
        self._pace = Quota(limits.receive_bytes_per_s, 2 * limits.frame_bytes_max, keys_max=1)
        self.paused_s = 0.0
        """Time this connection's reader waited for its receive rate."""
        self._close_reason: str | None = None
        self._closing: asyncio.Task[None] | None = None

    @staticmethod
    def inbound_handle(remote: str | None) -> str:
        return f"in:{remote or '?'}#{next(_numbers)}"

    def send(self, data: bytes) -> bool:
        """Queue a frame; False (and the connection is closing) when the queue is full."""
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()
            return False
        return True

    def close(self, reason: str | None = None) -> None:
        """Close after the frames already queued (a ``Bye`` among them) are written; at once
        when the queue has no room left (a peer that does not read)."""
        self._close_reason = reason
        try:
            self._queue.put_nowait(_CLOSE)
        except asyncio.QueueFull:
            if self._closing is None:
                self._closing = asyncio.get_running_loop().create_task(self._close_now(reason))

    async def run(self) -> None:
        """Read and write until either side closes; then tell the node (``on_closed``)."""
        reason: str | None = None
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(self._write())
            try:
                reason = await self._read()
            finally:
                writer.cancel()
        await self._close_now(self._close_reason)
        self._on_closed(self.handle, reason)

    async def _read(self) -> str | None:
        """Frames to the node until the connection ends; the peer's refusal reason, if any."""
        timeout = self.limits.receive_timeout_ms / 1000
        while True:
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                return None
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.frames_in += 1
                self.bytes_in += len(msg.data)
                self._on_frame(self.handle, msg.data)
                wait = self._pace.charge(b"", len(msg.data), time.monotonic())
                if wait > 0:
                    self.paused_s += wait
                    await asyncio.sleep(wait)
            elif msg.type is aiohttp.WSMsgType.CLOSE and msg.data == REFUSAL_CLOSE_CODE:
                return msg.extra if isinstance(msg.extra, str) else None
            else:  # closed, closing, an error, or a text frame (not part of the protocol)
                return None

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                await self._close_now(self._close_reason)
                return
            assert isinstance(item, bytes)
            try:
                await self.ws.send_bytes(item)
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                await self._close_now(None)
                return
            self.frames_out += 1
            self.bytes_out += len(item)

    async def _close_now(self, reason: str | None) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError, aiohttp.ClientError):
            if reason:
                await self.ws.close(code=REFUSAL_CLOSE_CODE, message=reason.encode()[:120])
            else:
                await self.ws.close()
