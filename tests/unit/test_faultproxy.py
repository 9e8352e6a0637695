"""The fault-injecting loopback proxy: forwarding, blackhole, delay, cut, stats and shutdown."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from aiohttp import web

from memmesh.faultproxy import FaultProxy

IO_TIMEOUT = 3.0  # generous: the machine may be busy; only expected-silence reads are short
SILENCE = 0.3  # how long a read must stay empty to count as "dropped"


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    block_on_close = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="echo-server")
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo_port) as p:
        yield p


def _connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return _recv_exactly(sock, len(data))


def _assert_silent(sock: socket.socket) -> None:
    """Nothing arrives, and the connection is not closed either."""
    sock.settimeout(SILENCE)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(IO_TIMEOUT)


def _assert_closed(sock: socket.socket, within: float = 1.0) -> None:
    """The peer closed: EOF or a reset arrives within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


def _wait_for(predicate: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_passthrough_echoes(proxy: FaultProxy) -> None:
    assert proxy.mode() == "passthrough"
    with _connect(proxy) as sock:
        assert _echo(sock, b"hello") == b"hello"
        assert _echo(sock, b"again") == b"again"
        stats = proxy.stats()
    assert stats["connections_total"] == 1
    assert stats["connections_open"] == 1
    assert stats["bytes_up"] == stats["bytes_down"] == 10
    assert stats["bytes_dropped"] == 0


def test_port_and_url(echo_port: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo_port)
    with pytest.raises(RuntimeError):
        _ = proxy.port
    with proxy:
        assert proxy.port > 0
        assert proxy.url() == f"ws://127.0.0.1:{proxy.port}/v1/sync"
        assert proxy.url("/ws", scheme="http") == f"http://127.0.0.1:{proxy.port}/ws"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 0)
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 1, max_delayed_chunks=0)
    proxy = FaultProxy("127.0.0.1", 1)
    with pytest.raises(ValueError):
        proxy.delay(-1)
    proxy.close()


def test_large_transfer_is_chunked_and_counted(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 2048  # 512 KiB: several 64 KiB chunks, exercises backpressure
    with _connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = _recv_exactly(sock, len(payload))
        sender.join(IO_TIMEOUT)
    assert got == payload
    stats = proxy.stats()
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload)


def test_half_close_is_forwarded(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        # The echo server sees EOF, echoes what it had and closes; we see both.
        assert _recv_exactly(sock, 10) == b"last words"
        assert sock.recv(1) == b""
    _wait_for(lambda: proxy.stats()["connections_open"] == 0)


def test_blackhole_drops_bytes_but_keeps_connections_open(proxy: FaultProxy) -> None:
    with _connect(proxy) as old:
        assert _echo(old, b"before") == b"before"
        proxy.blackhole()
        assert proxy.mode() == "blackhole"
        old.sendall(b"lost")
        _assert_silent(old)
        with _connect(proxy) as new:  # new connections are accepted, and silent too
            new.sendall(b"also lost")
            _assert_silent(new)
            stats = proxy.stats()
            assert stats["connections_open"] == 2
            assert stats["bytes_dropped"] == len(b"lost") + len(b"also lost")
        proxy.passthrough()
        with _connect(proxy) as fresh:
            assert _echo(fresh, b"after") == b"after"


def test_blackhole_swallows_end_of_stream(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with _connect(proxy):
        _wait_for(lambda: proxy.stats()["connections_open"] == 1)
    time.sleep(0.1)
    assert proxy.stats()["connections_open"] == 1  # the target was never told


def test_delay_adds_latency_and_keeps_order(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"warm") == b"warm"
        proxy.delay(200)
        assert proxy.mode() == "delay"
        start = time.monotonic()
        assert _echo(sock, b"ping") == b"ping"
        assert time.monotonic() - start >= 0.39  # 200 ms each way
        # Separate chunks with distinct due times still arrive in order.
        parts = [f"<{i:03d}>".encode() for i in range(10)]
        for part in parts:
            sock.sendall(part)
            time.sleep(0.005)
        assert _recv_exactly(sock, sum(map(len, parts))) == b"".join(parts)
        proxy.passthrough()
        start = time.monotonic()
        assert _echo(sock, b"fast") == b"fast"
        assert time.monotonic() - start < 0.39


def test_delay_queue_overflow_drops_the_connection(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port, max_delayed_chunks=2) as proxy, _connect(proxy) as sock:
        proxy.delay(2000)
        start = time.monotonic()
        for _ in range(5):
            sock.sendall(b"x")
            time.sleep(0.02)  # separate reads, so separate chunks
        _assert_closed(sock, within=1.5)
        assert time.monotonic() - start < 1.9  # dropped, not delivered late
        _wait_for(lambda: proxy.stats()["connections_open"] == 0)


def test_cut_closes_open_connections_and_new_ones(proxy: FaultProxy) -> None:
    with _connect(proxy) as a, _connect(proxy) as b:
        assert _echo(a, b"a") == b"a"
        assert _echo(b, b"b") == b"b"
        proxy.cut()
        assert proxy.mode() == "cut"
        assert proxy.stats()["connections_open"] == 0  # closed by the time cut() returns
        _assert_closed(a)
        _assert_closed(b)
    with _connect(proxy) as refused:
        _assert_closed(refused)
    proxy.passthrough()
    with _connect(proxy) as sock:
        assert _echo(sock, b"healed") == b"healed"
    assert proxy.stats()["connections_total"] == 4


def test_cut_during_delay_counts_queued_bytes_as_dropped(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"warm") == b"warm"  # both directions are being pumped
        proxy.delay(5000)
        sock.sendall(b"held")
        time.sleep(0.2)  # let the proxy read it into the delay queue
        proxy.cut()
        _assert_closed(sock)
    assert proxy.stats()["bytes_dropped"] == 4


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = int(probe.getsockname()[1])
    with FaultProxy("127.0.0.1", dead_port) as proxy, _connect(proxy) as sock:
        _assert_closed(sock)
        _wait_for(lambda: proxy.stats()["connections_open"] == 0)


def test_close_is_idempotent_and_leaves_no_thread(echo_port: int) -> None:
    before = set(threading.enumerate())
    proxy = FaultProxy("127.0.0.1", echo_port).start()
    with _connect(proxy) as sock:
        assert _echo(sock, b"x") == b"x"
        proxy.close()
        _assert_closed(sock)
    proxy.close()
    stats = proxy.stats()  # still readable after close
    assert stats["connections_open"] == 0
    assert stats["bytes_up"] == 1
    with pytest.raises(RuntimeError):
        proxy.blackhole()
    with pytest.raises(RuntimeError):
        proxy.start()
    leftover = [
        t
        for t in set(threading.enumerate()) - before
        if "process_request_thread" not in t.name  # the echo server's own handlers
    ]
    assert leftover == []
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", proxy.port))
    FaultProxy("127.0.0.1", echo_port).close()  # never started: fine too


def test_carries_a_websocket_round_trip() -> None:
    async def echo_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def main() -> dict[str, int]:
        app = web.Application()
        app.router.add_get("/ws", echo_ws)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = int(runner.addresses[0][1])
            with FaultProxy("127.0.0.1", port) as proxy:
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(proxy.url("/ws")) as ws,
                ):
                    await ws.send_str("hello mesh")
                    reply = await ws.receive(timeout=IO_TIMEOUT)
                    assert reply.type is aiohttp.WSMsgType.TEXT
                    assert reply.data == "hello mesh"
                    blob = bytes(range(256)) * 400
                    await ws.send_bytes(blob)
                    reply = await ws.receive(timeout=IO_TIMEOUT)
                    assert reply.data == blob
                return proxy.stats()
        finally:
            await runner.cleanup()

    stats = asyncio.run(main())
    assert stats["connections_total"] == 1
    assert stats["bytes_up"] > 102_400
    assert stats["bytes_down"] > 102_400


def test_listen_port_in_use_fails_at_start(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as first:
        second = FaultProxy("127.0.0.1", echo_port, listen_port=first.port)
        with pytest.raises(OSError):
            second.start()
        second.close()
