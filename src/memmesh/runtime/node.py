"""The node daemon: one ``MeshCore`` driven by asyncio, with websockets and an LMDB store.

This is the runtime edge of DESIGN §2, the only layer that does I/O. It feeds the core every
input (frames, connections, timers, local writes) with the wall clock in milliseconds and carries
out its effects in order: ``Send`` into the connection's bounded queue, ``Dial`` as a task,
``Disconnect`` as a close frame carrying the reason, ``Persist`` by feeding ``Flush`` after a short
batch window (one durable commit covers what arrived meanwhile), ``Notify`` into logs, counters
and the futures of waiting local writes. Everything runs on one event loop, inside one
``TaskGroup``; how long each call into the core held the loop is measured
(``loop_block_ms_max``), and ``Flush`` is bounded by ``flush_envelopes_max`` so it stays short.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import random
import signal
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..claims import Claim, make_claim
from ..collector import fewer_collections
from ..config import NodeSettings
from ..core import (
    Advertise,
    CancelWrite,
    Dial,
    Disconnect,
    Effect,
    Flush,
    Input,
    Integrated,
    LocalWrite,
    MeshCore,
    Notice,
    Notify,
    PeerConnected,
    PeerGone,
    PeerKnown,
    Persist,
    Received,
    RejectedEnvelope,
    Send,
    SessionState,
    Throttled,
    Timer,
    WriteAcked,
    WriteFailed,
)
from ..core.messages import CHAIN_LINK_BYTES_MAX, CHAIN_LINKS_MAX
from ..crypto import SigningKey, read_key_file
from ..errors import CorruptRecord, LocalError, Reason, Rejected
from ..hlc import hlc_unpack
from ..membership import Genesis, decode_genesis
from ..memory import Receipt, View, frontier_hash
from ..quota import Quota
from ..store import LmdbStore
from ..store.scrub import ScrubReport, quarantine_store, scrub_before_open
from ..wire import Reader, Writer
from .attestations import AttestationService, Held
from .heap import HeapKeeper, freeze_heap
from .signals import COMMIT_BUCKETS_S, PROPAGATION_BUCKETS_S, Histogram, Traceability
from .transport import Connection, TransportLimits

__all__ = ["NodeRuntime", "NodeStats", "WriteRefused", "read_admit_chain", "write_admit_chain"]

SYNC_PATH = "/v1/sync"
_CLOSE_TIMEOUT_S = 2.0
"""How long a closing websocket (or the server at shutdown) waits for the peer's side."""
_FLAG_LOG_INTERVAL_S = 10.0
"""A member flagged (past its push budget) is logged at most once per this interval."""


@dataclass(slots=True)
class _Throttled:
    """Members flagged past their push budget (``author_pushes_per_s``), by author node key;
    only members are counted, so both maps are bounded by the membership."""

    dropped: dict[bytes, int] = field(default_factory=dict)
    """Pushed envelopes dropped here, so far."""
    logged: dict[bytes, float] = field(default_factory=dict)
    """When each was last logged (monotonic seconds)."""


class WriteRefused(LocalError):
    """A local write was not committed: ``reason`` says why (not a member, storage, timeout)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def write_admit_chain(path: Path, chain: Sequence[bytes]) -> None:
    """The admit chain file: ``count u32 | (length u32 | admit claim bytes) * count``."""
    w = Writer()
    w.u32(len(chain))
    for raw in chain:
        w.u32(len(raw))
        w.raw(raw)
    path.write_bytes(w.getvalue())


def read_admit_chain(path: Path) -> list[bytes]:
    """Read an admit chain file; ``Rejected`` with a reason code if it is malformed or larger
    than a handshake could carry (``CHAIN_LINKS_MAX`` claims of ``CHAIN_LINK_BYTES_MAX``)."""
    bytes_max = 4 + CHAIN_LINKS_MAX * (4 + CHAIN_LINK_BYTES_MAX)
    with path.open("rb") as f:
        data = f.read(bytes_max + 1)
    if len(data) > bytes_max:
        raise Rejected(Reason.TOO_LARGE, f"{path}: an admit chain is at most {bytes_max} bytes")
    r = Reader(data, "admit chain")
    count = r.u32("count")
    if count > CHAIN_LINKS_MAX:
        raise Rejected(
            Reason.COUNT_EXCEEDS_LIMIT, f"{count} admit claims, at most {CHAIN_LINKS_MAX}"
        )
    chain = [r.raw(r.u32("length"), "admit claim") for _ in range(count)]
    r.expect_end()
    return chain


@dataclass(slots=True)
class ReadCounters:
    """Reads served and their incidents (DESIGN §5): stale when served behind a peer, poisoned
    when a claim returned is later excluded (counted once per read that returned it)."""

    total: int = 0
    stale: int = 0
    poisoned: int = 0
    returned: dict[bytes, int] = field(default_factory=dict)
    """Reads per claim id returned, the oldest dropped past ``remembered_max``."""
    remembered_max: int = 100_000

    def remember(self, claim_ids: Sequence[bytes]) -> None:
        for claim_id in claim_ids:
            self.returned[claim_id] = self.returned.pop(claim_id, 0) + 1
        while len(self.returned) > self.remembered_max:
            del self.returned[next(iter(self.returned))]


@dataclass(slots=True)
class NodeStats:
    loop_block_ms_max: float = 0.0
    """The longest single call into the core, in milliseconds (the event loop was held)."""
    core_calls: int = 0
    flushes: int = 0
    windowed_flushes: int = 0
    """Flushes that waited ``commit_batch_window_ms`` for more to arrive (the node was busy)."""
    send_queue_overflows: int = 0
    receive_paused_s: float = 0.0
    """Time the readers of closed connections waited for their peer's receive rate."""
    dial_failures: int = 0
    envelopes_rejected: int = 0
    inbound_refused: int = 0
    """Inbound connections answered 503: ``inbound_connections_max`` were open."""


class NodeRuntime:
    """One node: ``await NodeRuntime(settings).run()`` until ``stop()`` (or SIGTERM/SIGINT)."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.node_key: SigningKey = read_key_file(settings.node_key_path)
        self.agent_key: SigningKey = read_key_file(settings.agent_key_path)
        self.genesis: Genesis = decode_genesis(settings.genesis_path.read_bytes())
        chain_file = settings.admit_chain_path
        chain = read_admit_chain(chain_file) if chain_file.exists() else []
        # Every durable commit since start (the store's, timed: ``memmesh_commit_seconds``).
        self.commit_seconds = Histogram(COMMIT_BUCKETS_S)
        self.scrub: ScrubReport | None = None
        quarantined = self._open_scrubbed(settings, chain)
        self.stats = NodeStats()
        self.quota = Quota(settings.agent_writes_per_s_max, settings.agent_write_burst)
        self.throttled = _Throttled()
        self.view = View.build(self.core.admission, _now_ms())
        self.trace = Traceability()
        self.trace.integrated(c for r in self.core.admission.records.values() for c in r.claims)
        for _, receipt_id in self.store.iter_meta("receipt/"):
            self.trace.record(receipt_id)
        self.attestations = AttestationService(
            self.core.admission, self.view, self.store, self.node_key, on_new=self.trace.attest
        )
        self.propagation = Histogram(PROPAGATION_BUCKETS_S)
        self.heap = HeapKeeper(
            freeze_every_claims=settings.gc_freeze_every_claims,
            inbound_max=settings.gc_freeze_inbound_max,
        )
        self.reads = ReadCounters()
        self._frontier_hash: tuple[int, bytes] | None = None
        self.conns: dict[str, Connection] = {}
        self.transport = TransportLimits(
            frame_bytes_max=settings.frame_bytes_max,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            receive_timeout_ms=settings.receive_timeout_ms,
            send_queue_frames_max=settings.send_queue_frames_max,
            receive_bytes_per_s=settings.peer_receive_bytes_per_s,
        )
        self.gossip_url: str | None = None
        self.api_url: str | None = None
        self._inbound = 0
        """Inbound gossip connections open now (handshaking or active)."""
        self._writes: dict[int, asyncio.Future[WriteAcked]] = {}
        self._tokens = 0
        self._last_aseq: dict[bytes, int] = {}
        """Agent key -> the highest claim seq of it this replica holds, kept as envelopes are
        integrated (an admin tool asks ``/v1/agents/{key}`` before signing elsewhere)."""
        for record in self.core.admission.records.values():
            self._note_aseqs(record.claims)
        self._agent_seq = self.last_agent_seq(self.agent_key.public_key)
        self._rearm = asyncio.Event()
        self._armed_ms: int | None = None
        """The deadline the timer task sleeps until (None: none, it sleeps an hour)."""
        self._flush_wanted = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._client: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []
        self.log = _logger(settings, self.node_key.public_key.hex()[:16])
        if self.scrub is not None and not self.scrub.clean:
            self.log(
                "store damage quarantined",
                records=self.scrub.records,
                damaged={db: len(keys) for db, keys in self.scrub.damaged.items()},
                cut=self.scrub.cut,
                structural=self.scrub.structural,
                quarantine=str(quarantined),
            )

    def _open_scrubbed(self, settings: NodeSettings, chain: list[bytes]) -> Path | None:
        """Open the store and the core (``self.store``, ``self.core``), scrubbing the store
        first when ``scrub_on_start`` says so; where damaged records were set aside, if any."""
        data_dir = Path(settings.data_dir)
        quarantined: Path | None = None
        if settings.scrub_on_start:  # before the store is opened: damage must not reach it
            self.scrub, quarantined = scrub_before_open(data_dir / "store", data_dir / "quarantine")
        try:
            self.store, self.core = self._open(settings, chain)
        except (AssertionError, CorruptRecord) as exc:
            if not settings.scrub_on_start:
                raise
            # The scrub passed but the store still does not replay: damage it could not see.
            # Set the whole store aside and start empty; sync fetches everything again.
            why = f"the store did not replay after the scrub: {type(exc).__name__}: {exc}"
            quarantined = quarantine_store(data_dir / "store", data_dir / "quarantine", why)
            self.scrub = ScrubReport(structural=why)
            self.store, self.core = self._open(settings, chain)
        return quarantined

    def _open(self, settings: NodeSettings, chain: list[bytes]) -> tuple[LmdbStore, MeshCore]:
        """The store and the core over it (the store is closed again if the core fails)."""
        store = LmdbStore(
            Path(settings.data_dir) / "store",
            map_size_max_bytes=settings.lmdb_map_size_bytes_max,
            on_commit=self.commit_seconds.observe,
        )
        try:
            # Replaying the store makes every record at once and no cyclic garbage: 10,000
            # envelopes opened in 1.30 s instead of 1.43 (0.15 s of it full collections).
            with fewer_collections():
                core = MeshCore(
                    self.node_key,
                    self.genesis,
                    store,
                    random.Random(os.urandom(16)),
                    limits=settings.sync_limits(),
                    admission_limits=settings.admission_limits(),
                    admit_chain=chain,
                    start_isolated=settings.start_isolated,
                )
        except BaseException:
            store.close()
            raise
        return store, core

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._client = aiohttp.ClientSession()
                await self._serve()
                freeze_heap()
                self.heap.install(self.view.counts.entries)
                if self.gossip_url is not None:
                    self._feed(Advertise((self.gossip_url,)))
                group.create_task(self._timer_loop(), name="timers")
                group.create_task(self._flush_loop(), name="flush")
                for url in self.settings.peers:
                    self._feed(PeerKnown(url))
                self._ready.set()
                self.log("node started", gossip=self.gossip_url, api=self.api_url)
                await self._stopping.wait()
                await self._drain()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            self.heap.uninstall()
            for runner in self._runners:
                await runner.cleanup()
            if self._client is not None:
                await self._client.close()
            self.store.close()
            self.log("node stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def ready(self) -> None:
        await self._ready.wait()

    async def _drain(self) -> None:
        """Commit what is staged, then close every connection."""
        for _ in range(1000):
            if not self._feed(Flush()):
                break
        for conn in list(self.conns.values()):
            conn.close("shutdown")
        await asyncio.sleep(0)

    async def _serve(self) -> None:
        from .api import build_api  # noqa: PLC0415 - the API imports this module

        settings = self.settings
        gossip = web.Application()
        gossip.router.add_get(SYNC_PATH, self._accept)
        ssl_context = self._server_ssl()
        self.gossip_url = await self._start(
            gossip, settings.gossip_host, settings.gossip_port, ssl_context, "ws"
        )
        self.api_url = await self._start(
            build_api(self), settings.api_host, settings.api_port, None, "http"
        )

    async def _start(
        self,
        app: web.Application,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        scheme: str,
    ) -> str:
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_CLOSE_TIMEOUT_S
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        server = site._server
        assert server is not None and isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()[1]
        secure = "s" if ssl_context is not None else ""
        suffix = SYNC_PATH if scheme == "ws" else ""
        return f"{scheme}{secure}://{host}:{bound}{suffix}"

    def _server_ssl(self) -> ssl.SSLContext | None:
        cert, key = self.settings.tls_cert_file, self.settings.tls_key_file
        if cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def _client_ssl(self, url: str) -> ssl.SSLContext | bool:
        if not url.startswith("wss://"):
            return False
        context = ssl.create_default_context()
        if self.settings.tls_ca_file is not None:
            context.load_verify_locations(self.settings.tls_ca_file)
        return context

    # -- the core -----------------------------------------------------------------------------

    def _feed(self, event: Input) -> bool:
        """Hand one input to the core and carry out its effects; True if it asked to persist."""
        started = time.perf_counter()
        effects = self.core.handle(event, _now_ms())
        held = (time.perf_counter() - started) * 1000
        self.stats.core_calls += 1
        self.stats.loop_block_ms_max = max(self.stats.loop_block_ms_max, held)
        return self._carry(effects)

    def _carry(self, effects: list[Effect]) -> bool:
        persist = False
        for effect in effects:
            if isinstance(effect, Send):
                conn = self.conns.get(effect.peer)
                if conn is not None and not conn.send(effect.data):
                    self.stats.send_queue_overflows += 1
                    self.log("peer cannot keep up: disconnected", peer=effect.peer)
            elif isinstance(effect, Persist):
                persist = True
                self._flush_wanted.set()
            elif isinstance(effect, Notify):
                self._notice(effect.notice)
            elif isinstance(effect, Dial):
                if not self._stopping.is_set():  # no new connections while draining
                    assert self._group is not None
                    self._group.create_task(self._dial(effect.peer))
            elif isinstance(effect, Disconnect):
                conn = self.conns.get(effect.peer)
                if conn is not None:
                    conn.close(effect.reason.value)
        # Wake the timer task only when the core's next deadline comes before the one it
        # sleeps until: most inputs leave it where it was, and waking it for each (a task
        # switch and a new timeout) cost about a tenth of a receiver's CPU per envelope. A
        # deadline that moved later just fires early once, as an idle Timer.
        deadline = self.core.next_deadline()
        armed = self._armed_ms
        if deadline is not None and (armed is None or deadline < armed):
            self._rearm.set()
        return persist

    def _notice(self, notice: Notice) -> None:
        if isinstance(notice, WriteAcked):
            future = self._writes.pop(notice.token, None)
            if future is not None and not future.done():
                future.set_result(notice)
        elif isinstance(notice, WriteFailed):
            future_f = self._writes.pop(notice.token, None)
            if future_f is not None and not future_f.done():
                future_f.set_exception(WriteRefused(notice.error, notice.detail))
        elif isinstance(notice, Integrated):
            now = _now_ms()
            records = self.core.admission.records
            for env_id in notice.envelope_ids:
                record = records[env_id]
                self.trace.integrated(record.claims)
                self._note_aseqs(record.claims)
                if notice.peer:  # from a peer: how long since its author committed it
                    physical, _ = hlc_unpack(record.envelope.hlc)
                    self.propagation.observe(max(0, now - physical) / 1000)
            self.view.apply(notice.envelope_ids, now)
            for claim_id in self.view.newly_excluded:
                self.reads.poisoned += self.reads.returned.pop(claim_id, 0)
            self.view.newly_excluded.clear()
        elif isinstance(notice, Throttled):
            self._flag_throttled(notice)
        elif isinstance(notice, RejectedEnvelope):
            self.stats.envelopes_rejected += 1  # by reason: the admission counters
            self.log(
                "envelope rejected",
                peer=notice.peer,
                envelope=notice.envelope_id.hex() if notice.envelope_id else None,
                reason=notice.reason.value,
                detail=notice.detail,
            )

    def _flag_throttled(self, notice: Throttled) -> None:
        """Count a member's pushes dropped past its budget; log it once per interval."""
        author, throttled = notice.author, self.throttled
        throttled.dropped[author] = throttled.dropped.get(author, 0) + notice.dropped
        now = time.monotonic()
        if throttled.logged.get(author, -math.inf) + _FLAG_LOG_INTERVAL_S <= now:
            throttled.logged[author] = now
            self.log(
                "member past its push budget",
                author=author.hex()[:16],
                peer=notice.peer,
                dropped_total=throttled.dropped[author],
            )

    async def _timer_loop(self) -> None:
        while True:
            deadline = self._armed_ms = self.core.next_deadline()
            delay = 3600.0 if deadline is None else max(0.0, (deadline - _now_ms()) / 1000)
            self._rearm.clear()
            try:
                async with asyncio.timeout(delay):  # not wait_for: its inner task can outlive
                    await self._rearm.wait()  # a cancellation in 3.11
            except TimeoutError:
                self._feed(Timer())

    async def _flush_loop(self) -> None:
        """Commit what the core staged. Under load (:meth:`MeshCore.flush_waits`), wait
        ``commit_batch_window_ms`` first so what is arriving joins the commit; otherwise commit
        at once, so a lone update pays no window at any hop."""
        loop = asyncio.get_running_loop()
        window = self.settings.commit_batch_window_ms / 1000
        last_end, last_batch = -window, 0
        while True:
            await self._flush_wanted.wait()
            if self.core.flush_waits(loop.time() - last_end, window, last_batch):
                self.stats.windowed_flushes += 1
                await asyncio.sleep(window)
            self._flush_wanted.clear()
            self.stats.flushes += 1
            last_batch = self.core.staged
            self._feed(Flush())
            self.heap.settle(self.view.counts.entries, self._inbound)
            last_end = loop.time()
            await asyncio.sleep(0)

    # -- connections --------------------------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        if self._inbound >= self.settings.inbound_connections_max:
            # Before any websocket exists: idle or hostile connections cost a refusal each,
            # not a socket held until the handshake deadline.
            self.stats.inbound_refused += 1
            return web.Response(status=503, text="too many inbound connections\n")
        self._inbound += 1
        try:
            return await self._accept_ws(request)
        finally:
            self._inbound -= 1

    async def _accept_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.transport.frame_bytes_max,
            compress=False,
            heartbeat=self.transport.heartbeat_interval_ms / 1000,
            autoping=True,
            timeout=_CLOSE_TIMEOUT_S,
        )
        await ws.prepare(request)
        handle = Connection.inbound_handle(request.remote)
        await self._run_connection(handle, ws, outbound=False)
        return ws

    async def _dial(self, url: str) -> None:
        assert self._client is not None
        if urlsplit(url).scheme not in ("ws", "wss"):  # a learned address names another scheme
            self.log("dial refused", peer=url, error="not a ws:// or wss:// URL")
            self._feed(PeerGone(url))
            return
        try:
            ws = await self._client.ws_connect(
                url,
                max_msg_size=self.transport.frame_bytes_max,
                compress=0,
                heartbeat=self.transport.heartbeat_interval_ms / 1000,
                autoping=True,
                ssl=self._client_ssl(url),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT_S),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats.dial_failures += 1
            self.log("dial failed", peer=url, error=type(exc).__name__)
            self._feed(PeerGone(url))
            return
        await self._run_connection(url, ws, outbound=True)

    async def _run_connection(
        self,
        handle: str,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        *,
        outbound: bool,
    ) -> None:
        conn = Connection(handle, ws, self.transport, self._on_frame, self._on_closed)
        self.conns[handle] = conn
        self._feed(PeerConnected(handle, outbound=outbound, nonce=os.urandom(32)))
        await conn.run()

    def _on_frame(self, handle: str, data: bytes) -> None:
        self._feed(Received(handle, data))

    def _on_closed(self, handle: str, reason: str | None) -> None:
        conn = self.conns.pop(handle, None)
        if conn is not None:
            self.stats.receive_paused_s += conn.paused_s
        self._feed(PeerGone(handle, reason))

    # -- what the API calls -------------------------------------------------------------------

    def add_peer(self, url: str) -> None:
        self._feed(PeerKnown(url))

    def remove_peer(self, url: str) -> None:
        self._feed(PeerKnown(url, forget=True))
        conn = self.conns.get(url)
        if conn is not None:
            conn.close("shutdown")

    async def write(self, claims: Sequence[Claim], timeout_s: float = 10.0) -> WriteAcked:
        """Commit claims in this node's log; return once durable and integrated."""
        self._tokens += 1
        token = self._tokens
        future: asyncio.Future[WriteAcked] = asyncio.get_running_loop().create_future()
        self._writes[token] = future
        self._feed(LocalWrite(token, claims))
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            waiting = self.core.writes_waiting
            self._writes.pop(token, None)
            self._feed(CancelWrite(token))  # not committed, and now never will be
            why = "waiting for peers to show this node's own log (DESIGN §4 rule 6)"
            raise WriteRefused("Timeout", why if waiting else "no acknowledgement") from None

    def claim(
        self,
        namespace: Sequence[str],
        key: str,
        value: object,
        *,
        type: str = "fact",
        **fields: Any,
    ) -> Claim:
        """A claim by this node's agent key, with the next agent seq. ``fields`` are the
        optional claim fields (``source``, ``valid_at``, ``based_on``, ``supersedes``...)."""
        physical, logical = hlc_unpack(self.core.clock.tick(_now_ms()))
        claim = make_claim(
            self.agent_key,
            mesh_id=self.genesis.mesh_id,
            aseq=self._agent_seq + 1,
            hlc=(physical, logical),
            namespace=namespace,
            key=key,
            type=type,
            value=value,
            **fields,
        )
        self._agent_seq += 1  # only once the claim is made: a refused one uses no seq
        return claim

    def read(
        self,
        claim_ids: Sequence[bytes],
        reader: bytes | None = None,
        *,
        frontier: bytes | None = None,
    ) -> Receipt:
        """Count a read and return its receipt (``reader``: this node's agent by default). A
        read is stale when a peer is known to be ahead, or when peers are known and no
        anti-entropy round ended in sync within ``stale_read_after_ms`` (DESIGN §5).

        ``frontier`` is the frontier hash of a point-in-time read (``as_of``): such a read is
        about that past state by choice, so it is never counted stale."""
        now = _now_ms()
        self.reads.total += 1
        if frontier is not None:
            self.reads.remember(claim_ids)
            receipt = Receipt.of(frontier, claim_ids, reader or self.agent_key.public_key)
            self.trace.issue(receipt.id)
            return receipt
        last = self.core.last_in_sync_ms
        has_peers = bool(self.core.sessions) or bool(self.settings.peers)
        too_old = has_peers and (last is None or now - last > self.settings.stale_read_after_ms)
        if self.core.behind() or too_old:
            self.reads.stale += 1
        self.reads.remember(claim_ids)
        receipt = Receipt.of(self.frontier_hash(), claim_ids, reader or self.agent_key.public_key)
        self.trace.issue(receipt.id)
        return receipt

    def attest(self) -> Held:
        """Attest to everything this node holds now (durable before it returns)."""
        return self.attestations.create(self.core.clock.tick(_now_ms()))

    def frontier_hash(self) -> bytes:
        count = len(self.core.admission.records)
        if self._frontier_hash is None or self._frontier_hash[0] != count:
            self._frontier_hash = (count, frontier_hash(self.core.frontier()))
        return self._frontier_hash[1]

    def last_agent_seq(self, agent: bytes) -> int:
        """The highest claim seq of ``agent`` this replica holds (0 if none)."""
        return self._last_aseq.get(agent, 0)

    def _note_aseqs(self, claims: Iterable[Claim]) -> None:
        last = self._last_aseq
        for claim in claims:
            if claim.aseq > last.get(claim.agent, 0):
                last[claim.agent] = claim.aseq

    def signals(self) -> dict[str, Any]:
        """The four operating signals (DESIGN §9), as ``memmesh status`` shows them; the same
        counts as ``/metrics``."""
        counts, reads, settled = self.view.counts, self.reads, self.view.settle_times
        traceable = self.trace.traceable
        incidents = reads.stale + reads.poisoned
        return {
            "entries": counts.entries,
            "entries_with_provenance": counts.with_provenance,
            "provenance_share": _share(counts.with_provenance, counts.entries),
            "conflicts_detected": len(self.view.conflicts),
            "conflicts_resolved": len(settled),
            "conflicts_open": self.open_conflicts(),
            "resolution_ms_p50": settled.median(),
            "decisions": counts.decisions,
            "decisions_traceable": traceable,
            "traceable_share": _share(traceable, counts.decisions),
            "reads": reads.total,
            "stale_reads": reads.stale,
            "poisoned_reads": reads.poisoned,
            "incidents_per_read": _share(incidents, reads.total),
        }

    def open_conflicts(self) -> int:
        """Current conflicts no policy settles."""
        return self.view.unsettled_conflicts()

    def state(self) -> dict[str, Any]:
        admission = self.core.admission
        tree = self.core.tree
        peers = [
            {
                "handle": s.peer,
                "node": s.node.hex() if s.node else None,
                "state": s.state.value,
                "outbound": s.outbound,
                "in_sync": s.in_sync,
                "frames_in": self.conns[s.peer].frames_in if s.peer in self.conns else 0,
                "frames_out": self.conns[s.peer].frames_out if s.peer in self.conns else 0,
            }
            for s in sorted(self.core.sessions.values(), key=lambda s: s.peer)
        ]
        return {
            "node": self.core.node.hex(),
            "agent": self.agent_key.public_key.hex(),
            "mesh": self.genesis.mesh_id.hex(),
            "epoch": self.core.epoch,
            "gossip": self.gossip_url,
            "api": self.api_url,
            "frontier": [
                {"author": log.author.hex(), "epoch": log.epoch, "seq": h.seq, "head": h.id.hex()}
                for log, h in self.core.frontier()
            ],
            "claims_digest": self.core.claims_digest().hex(),
            "envelopes": len(admission.records),
            "live_claims": len(admission.live_claims()),
            "peers": peers,
            "active_peers": sum(
                s.state is SessionState.ACTIVE for s in self.core.sessions.values()
            ),
            "tree": {
                "root": tree.root.hex() if tree.root is not None else None,
                "seq": tree.seq,
                "distance": tree.distance(),
                "parent": tree.parent,
                "children": sorted(tree.children),
            },
            "buffered": admission.buffered,
            "may_write": self.core.may_write(),
            "writes_waiting": self.core.writes_waiting,
            "evidence": len(admission.evidence),
            "throttled": {a.hex(): n for a, n in sorted(self.throttled.dropped.items())},
            "rejected": {str(k): v for k, v in sorted(admission.rejected.items())},
            "loop_block_ms_max": round(self.stats.loop_block_ms_max, 3),
            "flushes": self.stats.flushes,
            "windowed_flushes": self.stats.windowed_flushes,
            "gc_frozen_objects": gc.get_freeze_count(),
            "gc": self.heap.state(),
            "signals": self.signals(),
            "attestations": len(self.attestations.own),
            "passive_view": [
                {"node": node.hex(), "addresses": record.addresses, "issued": record.issued}
                for node, record in sorted(self.core.view.records.items())
            ],
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Stopped(Exception):
    """Ends the node's task group once it has drained."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _logger(settings: NodeSettings, node: str) -> Any:
    from .logs import make_logger  # noqa: PLC0415

    return make_logger(settings, node)
