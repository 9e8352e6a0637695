"""A fault-injecting loopback TCP proxy, for partitioning real node processes in tests.

:class:`FaultProxy` listens on ``127.0.0.1`` and forwards every accepted connection to one target
as raw bytes in both directions, so it carries any protocol (the nodes speak websockets). It runs
its own asyncio loop in a daemon thread; the control methods are called from the test's thread
and return only once the change has taken effect.

Modes (one for the whole proxy, applied to existing and new connections alike):

``passthrough`` (the default)
    Forward everything. Reads are at most 64 KiB and each chunk is written and drained before the
    next is read, so a slow reader slows the writer down (backpressure) instead of growing a buffer.
``blackhole``
    Accept connections (new ones are still dialled through to the target) and keep them open, but
    silently drop every byte read in either direction, and swallow end-of-stream too: a peer that
    closes its side is not reported to the other side, as in a real partition. Bytes dropped are
    lost for good: after :meth:`FaultProxy.passthrough` an existing connection forwards again, but
    its stream has a hole in it, so a framed protocol on it (a websocket) will see garbage.
``delay``
    Forward, holding every chunk (and end-of-stream) ``ms`` milliseconds in each direction, so a
    round trip gains ``2 * ms``. Order is kept. While delaying the reader does not wait for the
    writer; each direction queues at most ``max_delayed_chunks`` (1,024 by default) chunks, and a
    connection that would queue more is dropped (both sides closed), which bounds memory.
``cut``
    Close every open connection at once, and accept and immediately close new ones, until
    :meth:`FaultProxy.passthrough` or :meth:`FaultProxy.delay`. Closing is an abort (no flushing of
    pending writes): peers normally see a FIN (end of stream), or a reset if the kernel still held
    unread bytes.

``stats()`` counts ``connections_total`` (every connection the listener accepted, including those
closed at once in ``cut`` mode), ``connections_open``, ``bytes_up`` (forwarded from clients to the
target), ``bytes_down`` (forwarded from the target to clients) and ``bytes_dropped`` (bytes read but
never forwarded: blackholed, or still queued when a connection was cut, dropped or closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

__all__ = ["CHUNK_SIZE", "MAX_DELAYED_CHUNKS", "FaultProxy"]

CHUNK_SIZE = 64 * 1024
"""The largest read, and so the largest chunk, forwarded in one piece."""
MAX_DELAYED_CHUNKS = 1024
"""The default bound on chunks held per direction of a connection in ``delay`` mode."""

_LOOPBACK = "127.0.0.1"
_CONNECT_TIMEOUT = 5.0  # seconds to dial the target before giving up on a client
_CONTROL_TIMEOUT = 10.0  # seconds a control call waits for the proxy's loop
_STOP_TIMEOUT = 10.0  # seconds close() waits for the proxy's thread

Mode = Literal["passthrough", "blackhole", "delay", "cut"]
_T = TypeVar("_T")
_Item = tuple[float, bytes]  # (due time on the loop clock, chunk); b"" is end-of-stream


class _QueueOverflow(Exception):
    """A delaying direction was asked to hold more chunks than it may."""


@dataclass(eq=False)
class _Lane:
    """One direction of a connection: a reader, a bounded queue and a writer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up: bool
    queue: asyncio.Queue[_Item]
    holding: int = 0  # bytes taken off the queue but not yet written


@dataclass(eq=False)
class _Conn:
    client_reader: asyncio.StreamReader
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    lanes: list[_Lane] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]

    def abort(self) -> None:
        for writer in self.writers():
            writer.transport.abort()


async def _wait_closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class FaultProxy:
    """Forwards TCP connections from 127.0.0.1:<port> to <target_host>:<target_port>.

    Use as a context manager, or call :meth:`start` and :meth:`close`. Every control method is
    thread-safe and waits until its change has taken effect (after :meth:`cut` returns, every
    connection is closed). The control methods must not be called from the proxy's own thread.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_port: int = 0,
        max_delayed_chunks: int = MAX_DELAYED_CHUNKS,
    ) -> None:
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port out of range: {target_port}")
        if not 0 <= listen_port < 65536:
            raise ValueError(f"listen_port out of range: {listen_port}")
        if max_delayed_chunks < 1:
            raise ValueError(f"max_delayed_chunks must be positive: {max_delayed_chunks}")
        self._target_host = target_host
        self._target_port = target_port
        self._listen_port = listen_port
        self._max_delayed = max_delayed_chunks
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._started = False
        self._closed = False
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        # Everything below is touched only on the proxy's loop once it runs.
        self._mode: Mode = "passthrough"
        self._delay_s = 0.0
        self._conns: set[_Conn] = set()
        self._connections_total = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._bytes_dropped = 0

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind 127.0.0.1:<listen_port> and start forwarding in a daemon thread; return self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("FaultProxy is closed")
            if self._started:
                raise RuntimeError("FaultProxy already started")
            listener = socket.create_server((_LOOPBACK, self._listen_port))
            try:
                listener.setblocking(False)
                self._port = int(listener.getsockname()[1])
                thread = threading.Thread(
                    target=self._thread_main,
                    args=(listener,),
                    name=f"memmesh-faultproxy:{self._port}",
                    daemon=True,
                )
                thread.start()
            except BaseException:
                listener.close()
                raise
            self._started = True
            self._thread = thread
        if not self._ready.wait(_CONTROL_TIMEOUT) or self._loop is None:
            self.close()
            raise RuntimeError("FaultProxy failed to start")
        return self

    def close(self) -> None:
        """Close every connection and the listener, stop the loop and join the thread.

        Idempotent; also fine on a proxy never started.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("FaultProxy.close() called from the proxy's own thread")
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("FaultProxy thread did not stop")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------------- addressing

    @property
    def port(self) -> int:
        """The bound listen port."""
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    def url(self, path: str = "/v1/sync", scheme: str = "ws") -> str:
        """``{scheme}://127.0.0.1:{port}{path}``."""
        return f"{scheme}://{_LOOPBACK}:{self.port}{path}"

    # ----------------------------------------------------------------------------- control

    def mode(self) -> str:
        """The current mode: ``passthrough``, ``blackhole``, ``delay`` or ``cut``."""
        return self._mode

    def passthrough(self) -> None:
        """Forward everything (the default)."""
        self._switch("passthrough", 0.0)

    def blackhole(self) -> None:
        """Keep connections open (and accept new ones) but drop every byte in both directions."""
        self._switch("blackhole", 0.0)

    def delay(self, ms: int) -> None:
        """Forward, holding every chunk ``ms`` milliseconds in each direction (order kept)."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"delay must be a non-negative int of milliseconds: {ms!r}")
        self._switch("delay", ms / 1000.0)

    def cut(self) -> None:
        """Close every open connection now, and close new ones at once until passthrough/delay."""
        self._switch("cut", 0.0)

    def stats(self) -> dict[str, int]:
        """Counters: connections_total, connections_open, bytes_up, bytes_down, bytes_dropped."""
        if self._running():
            return self._on_loop(self._snapshot_async())
        return self._snapshot()

    # ----------------------------------------------------------------------------- thread side

    def _running(self) -> bool:
        with self._lock:
            if self._closed or self._loop is None:
                return False
        if threading.current_thread() is self._thread:
            raise RuntimeError("FaultProxy control methods must not run on the proxy's thread")
        return True

    def _on_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = self._loop
        assert loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed under us
            coro.close()
            raise
        return future.result(_CONTROL_TIMEOUT)

    def _switch(self, mode: Mode, delay_s: float) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("FaultProxy is closed")
        if self._running():
            self._on_loop(self._switch_async(mode, delay_s))
        else:  # not started: no connections to act on
            self._mode, self._delay_s = mode, delay_s

    def _snapshot(self) -> dict[str, int]:
        return {
            "connections_total": self._connections_total,
            "connections_open": len(self._conns),
            "bytes_up": self._bytes_up,
            "bytes_down": self._bytes_down,
            "bytes_dropped": self._bytes_dropped,
        }

    def _thread_main(self, listener: socket.socket) -> None:
        with asyncio.Runner() as runner:
            runner.run(self._main(listener))

    # ----------------------------------------------------------------------------- loop side

    async def _snapshot_async(self) -> dict[str, int]:
        return self._snapshot()

    async def _switch_async(self, mode: Mode, delay_s: float) -> None:
        self._mode, self._delay_s = mode, delay_s
        if mode == "cut":
            await self._kill_all()

    async def _main(self, listener: socket.socket) -> None:
        try:
            self._stopping = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            accept = asyncio.create_task(self._accept_loop(listener))
            self._ready.set()
            await self._stopping.wait()
            accept.cancel()
            await asyncio.wait([accept])
            await self._kill_all()
        finally:
            listener.close()
            self._ready.set()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError:  # e.g. out of file descriptors: back off rather than spin
                await asyncio.sleep(0.05)
                continue
            self._connections_total += 1
            if self._mode == "cut":
                sock.close()
                continue
            try:
                reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK_SIZE)
            except OSError:
                sock.close()
                continue
            conn = _Conn(reader, writer)
            self._conns.add(conn)
            conn.task = asyncio.create_task(self._serve(conn))
            conn.task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            task.get_loop().call_exception_handler(
                {"message": "FaultProxy connection failed", "exception": exc, "task": task}
            )

    async def _kill_all(self) -> None:
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
        tasks = [conn.task for conn in conns if conn.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        for conn in conns:  # a task cancelled before it ran released nothing
            await self._release(conn, graceful=False)

    def _is_cut(self) -> bool:
        # A method, not an inline test: the mode may change across an await, which mypy's
        # narrowing of ``self._mode`` would not allow for.
        return self._mode == "cut"

    async def _serve(self, conn: _Conn) -> None:
        graceful = False
        try:
            if self._is_cut():
                return
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(self._target_host, self._target_port, limit=CHUNK_SIZE),
                    _CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError):
                return
            conn.upstream = upstream
            if self._is_cut():  # cut while we were dialling
                return
            conn.lanes = [
                _Lane(conn.client_reader, upstream, True, asyncio.Queue(self._max_delayed)),
                _Lane(up_reader, conn.client, False, asyncio.Queue(self._max_delayed)),
            ]
            tasks: list[asyncio.Task[None]] = []
            for lane in conn.lanes:
                tasks.append(asyncio.create_task(self._pump_in(lane)))
                tasks.append(asyncio.create_task(self._pump_out(lane)))
            try:
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                graceful = not pending and all(task.exception() is None for task in done)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self._release(conn, graceful=graceful)

    async def _release(self, conn: _Conn, *, graceful: bool) -> None:
        """Close both sides of a connection and count what it still held; idempotent."""
        writers = conn.writers()
        for writer in writers:
            if graceful:  # both directions ended cleanly and every write was drained
                writer.close()
            else:
                writer.transport.abort()
        for writer in writers:
            # Shielded: cancelling a task cancels the future it awaits, and the close waiter is
            # one future per stream, shared by the handler and _kill_all; a cancelled handler
            # must not leave it cancelled for the other.
            await asyncio.shield(_wait_closed(writer))
        for lane in conn.lanes:
            self._bytes_dropped += lane.holding
            lane.holding = 0
            while not lane.queue.empty():
                self._bytes_dropped += len(lane.queue.get_nowait()[1])
                lane.queue.task_done()
        self._conns.discard(conn)

    async def _pump_in(self, lane: _Lane) -> None:
        """Read one direction into its queue, applying the mode as each chunk arrives."""
        loop = asyncio.get_running_loop()
        while True:
            data = await lane.reader.read(CHUNK_SIZE)
            mode = self._mode
            if mode == "blackhole":
                self._bytes_dropped += len(data)
                if not data:  # end-of-stream is swallowed too; the writer waits for ever
                    return
                continue
            if mode == "delay":
                if lane.queue.full():
                    self._bytes_dropped += len(data)
                    raise _QueueOverflow
                lane.queue.put_nowait((loop.time() + self._delay_s, data))
            else:
                await lane.queue.put((0.0, data))
                if data:
                    await lane.queue.join()  # backpressure: written and drained before next read
            if not data:
                return

    async def _pump_out(self, lane: _Lane) -> None:
        """Write one direction from its queue, in order, each chunk no earlier than it is due."""
        loop = asyncio.get_running_loop()
        writer = lane.writer
        while True:
            due, data = await lane.queue.get()
            try:
                lane.holding = len(data)
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                lane.holding = 0
                if self._mode == "blackhole":
                    self._bytes_dropped += len(data)
                    continue  # an end-of-stream is swallowed: wait for ever
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                if lane.up:
                    self._bytes_up += len(data)
                else:
                    self._bytes_down += len(data)
                await writer.drain()
            finally:
                lane.queue.task_done()
