"""The simulated nodes: real ``MeshCore`` objects over simulated disks, clocks and network.

The cluster feeds each core its inputs at the node's own clock time and carries out the effects
in order, exactly as the runtime does: ``Send`` onto the connection, ``Dial`` and
``Disconnect`` through the network, ``Persist`` as a ``Flush`` after the commit window, and the
core's next deadline as a ``Timer`` event. It crashes, restarts, adds and removes nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..claims import Claim
from ..core import (
    Advertise,
    Dial,
    Disconnect,
    Effect,
    EvidenceFound,
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
    PeerRefused,
    Persist,
    Received,
    RejectedEnvelope,
    Send,
    SessionState,
    SyncLimits,
    Throttled,
    Timer,
    WriteAcked,
    WriteFailed,
)
from ..crypto import SigningKey
from ..errors import StorageError
from ..store import MemoryDisk
from .checker import Checker
from .clock import NodeClock
from .disk import SimCrash, SimDisk
from .loop import EventLoop, Trace
from .mesh import SimMesh
from .metrics import Metrics
from .network import Frame, Network
from .options import SimOptions
from .seed import rng_for

__all__ = ["Cluster", "SimNode"]

WriteListener = Callable[[int, "WriteAcked | WriteFailed | None"], None]


@dataclass(slots=True, eq=False)
class SimNode:
    index: int
    key: SigningKey
    disk: SimDisk
    clock: NodeClock
    known: list[str]
    """The addresses this node is given (``PeerKnown``) at every start."""
    admit_chain: list[bytes] = field(default_factory=list)
    byzantine: str | None = None
    """The kind of a Byzantine node (``memmesh.sim.byzantine``); None for an honest one."""
    core: MeshCore | None = None
    incarnation: int = 0
    starts: int = 0
    start_failures: int = 0
    crashes: int = 0
    leaving: bool = False
    left: bool = False
    timer_us: int | None = None
    flush_due: bool = False
    last_flush_us: int = -(1 << 62)
    last_batch: int = 0
    """Items staged when the last flush began (the runtime's rule for the commit window)."""
    hop_of: dict[bytes, int] = field(default_factory=dict)
    """The hop at which this node holds each envelope (kept across restarts, like its disk)."""
    copy_hop: dict[bytes, int] = field(default_factory=dict)
    """The lowest hop of the copies received of envelopes not yet integrated."""

    @property
    def address(self) -> str:
        return f"sim://n{self.index}"


@dataclass(slots=True)
class ClusterStats:
    timer_stalls: int = 0
    """Timers after which the core still had a deadline due (moved 1 ms on)."""
    refusals: dict[str, int] = field(default_factory=dict)
    crashes_in_commit: int = 0
    throttled: dict[int, int] = field(default_factory=dict)
    """Pushed envelopes each node dropped past an author's push budget."""


class Cluster:
    def __init__(
        self,
        options: SimOptions,
        *,
        loop: EventLoop,
        trace: Trace,
        checker: Checker,
        metrics: Metrics,
        mesh: SimMesh,
    ) -> None:
        self.options, self.loop, self.trace = options, loop, trace
        self.checker, self.metrics, self.mesh = checker, metrics, mesh
        self.limits = SyncLimits(
            anti_entropy_interval_ms=options.anti_entropy_interval_ms,
            dial_backoff_max_ms=options.dial_backoff_max_ms,
            author_pushes_per_s=options.author_pushes_per_s,
            author_push_burst=options.author_push_burst,
        )
        self.network = Network(options, loop, trace, self, rng_for(options.seed, "network"))
        self.nodes: list[SimNode] = []
        self._by_address: dict[str, int] = {}
        self._clock_rng = rng_for(options.seed, "clock")
        self._pending: dict[int, tuple[int, int, WriteListener | None]] = {}
        """Write token -> (node, incarnation, listener)."""
        self._tokens = 0
        self._in_timer = False
        self.stats = ClusterStats()
        self.on_integrated: Callable[[int, tuple[bytes, ...]], None] | None = None
        self.on_ack: Callable[[WriteAcked], None] | None = None

    # -- nodes --------------------------------------------------------------------------------

    def add_node(
        self,
        key: SigningKey,
        known: list[str],
        admit_chain: list[bytes],
        byzantine: str | None = None,
    ) -> SimNode:
        index = self.network.add_node()
        options = self.options
        skew = drift = 0
        if options.clock_skew_ms_max:
            skew = self._clock_rng.randint(-options.clock_skew_ms_max, options.clock_skew_ms_max)
        if options.clock_drift_ppm_max:
            drift = self._clock_rng.randint(
                -options.clock_drift_ppm_max, options.clock_drift_ppm_max
            )
        disk = SimDisk(
            rng_for(options.seed, f"disk/{index}"),
            write_fault=options.write_fault,
            read_fault=options.read_fault,
            on_commit=lambda envs: self.checker.on_commit(
                index, self.nodes[index].key.public_key, envs, self.loop.now_us
            ),
        )
        node = SimNode(
            index, key, disk, NodeClock(skew, drift), list(known), list(admit_chain), byzantine
        )
        self.nodes.append(node)
        self._by_address[node.address] = index
        return node

    def preload(self, node: SimNode, template: MemoryDisk) -> None:
        """Give a node that never ran a copy of ``template`` (the bootstrap admits)."""
        assert node.starts == 0
        memory = node.disk.memory
        memory.envelopes.update(template.envelopes)
        for log, ids in template.logs.items():
            memory.logs[log] = list(ids)

    def start(self, node: SimNode) -> bool:
        """Start a process over the node's disk; False if a read fault stopped it."""
        assert node.core is None and not node.left
        node.incarnation += 1
        node.timer_us, node.flush_due = None, False
        store = node.disk.open()
        rng = rng_for(self.options.seed, f"core/{node.index}/{node.incarnation}")
        try:
            core = MeshCore(
                node.key,
                self.mesh.genesis,
                store,
                rng,
                limits=self.limits,
                admit_chain=node.admit_chain,
                start_isolated=False,
            )
        except StorageError as exc:
            node.start_failures += 1
            self.trace.add("start-failed", node.index, type(exc).__name__)
            return False
        self.trace.add("start", node.index, node.incarnation)
        node.core = core
        if node.starts:
            self.checker.after_restart(
                node.index, node.disk.memory.envelopes, core.admission.records, self.loop.now_us
            )
        node.starts += 1
        # Its own dialable address, signed into the peer records it passes on in shuffles.
        self.feed(node, Advertise((node.address,)))
        for address in node.known:
            self.feed(node, PeerKnown(address))
        self._arm(node)
        return True

    def crash(self, node: SimNode, why: str) -> None:
        """The process dies: what was staged is lost, the disk stays."""
        if node.core is not None:
            node.crashes += 1
            self._stop(node, why)

    def _stop(self, node: SimNode, why: str) -> None:
        core = node.core
        assert core is not None
        self.trace.add("stop", node.index, why)
        node.core = None
        node.timer_us, node.flush_due = None, False
        node.copy_hop.clear()
        core.admission.store.close()
        self.network.crash(node.index)
        for token in sorted(self._pending):
            owner, _, listener = self._pending[token]
            if owner == node.index:
                del self._pending[token]
                self.metrics.writes_lost_in_crash += 1
                if listener is not None:
                    listener(token, None)

    def leave(self, node: SimNode) -> None:
        """A drained node shuts down for good; the nodes given its address forget it."""
        self.trace.add("leave", node.index)
        core = node.core
        if core is not None:
            for handle in sorted(self.network.conns[node.index]):
                self.network.close(node.index, handle, "shutdown")
            self._stop(node, "left")
        node.left = True
        for other in self.nodes:
            if node.address in other.known:
                other.known.remove(node.address)
                if other.core is not None:
                    self.feed(other, PeerKnown(node.address, forget=True))

    def node_of(self, index: int) -> SimNode:
        return self.nodes[index]

    def session_graph(self) -> list[tuple[int, int]]:
        """The undirected graph of active sessions between up nodes, sorted."""
        index = {n.key.public_key: n.index for n in self.nodes}
        edges: set[tuple[int, int]] = set()
        for node in self.nodes:
            if node.core is None:
                continue
            for session in node.core.sessions.values():
                other = index.get(session.node) if session.node is not None else None
                if other is not None and session.state is SessionState.ACTIVE:
                    edges.add((min(node.index, other), max(node.index, other)))
        return sorted(edges)

    # -- the network's host interface ---------------------------------------------------------

    def incarnation(self, node: int) -> int | None:
        sim = self.nodes[node]
        return sim.incarnation if sim.core is not None else None

    def node_at(self, address: str) -> int | None:
        return self._by_address.get(address)

    def on_connected(self, node: int, handle: str, outbound: bool) -> None:
        self.feed(self.nodes[node], PeerConnected(handle, outbound))

    def on_frame(self, node: int, handle: str, frame: Frame) -> None:
        sim = self.nodes[node]
        core = sim.core
        assert core is not None
        if frame.items and self.checker.byz_expect and sim.byzantine is None:
            self.checker.on_delivered(env_id for env_id, _ in frame.items)
        if frame.items:
            held = core.admission.records
            metrics = self.metrics
            copies = sim.copy_hop
            for env_id, hop in frame.items:
                metrics.copies_delivered += 1
                if env_id in held:
                    metrics.copies_already_held += 1
                else:
                    if env_id not in copies:
                        if frame.pushed:
                            metrics.first_copies_pushed += 1
                        else:
                            metrics.first_copies_fetched += 1
                    if hop < copies.get(env_id, hop + 1):
                        copies[env_id] = hop
        self.feed(sim, Received(handle, frame.data))

    def on_gone(self, node: int, handle: str, reason: str | None) -> None:
        self.feed(self.nodes[node], PeerGone(handle, reason))

    # -- writes -------------------------------------------------------------------------------

    def write(self, node: SimNode, claims: list[Claim], listener: WriteListener | None) -> int:
        self._tokens += 1
        token = self._tokens
        self._pending[token] = (node.index, node.incarnation, listener)
        self.trace.add("write", node.index, token, *(c.id for c in claims))
        self.feed(node, LocalWrite(token, claims))
        return token

    def local_ms(self, node: int) -> int:
        return self.nodes[node].clock.local_ms(self.loop.now_us)

    # -- feeding the cores --------------------------------------------------------------------

    def feed(self, node: SimNode, event: Input) -> None:
        core = node.core
        assert core is not None
        self.trace.add("in", node.index, type(event).__name__)
        try:
            effects = core.handle(event, node.clock.local_ms(self.loop.now_us))
        except SimCrash as crash:
            self.stats.crashes_in_commit += 1
            self.crash(node, str(crash))
            return
        self._carry(node, effects)
        if node.core is core:
            self._arm(node)

    def _carry(self, node: SimNode, effects: list[Effect]) -> None:
        network = self.network
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                assert isinstance(effect, Send)
                if effect.kind == "Envelopes":
                    hop_of = node.hop_of
                    items = tuple((i, hop_of.get(i, 0) + 1) for i in effect.envelope_ids)
                    network.send(
                        node.index, effect.peer, effect.data, effect.kind, items,
                        pushed=effect.pushed,
                    )  # fmt: skip
                else:
                    network.send(node.index, effect.peer, effect.data, effect.kind, ())
            elif kind is Persist:
                if not node.flush_due:
                    # As the runtime does: an idle node commits at once, a busy one (its last
                    # commit less than a window ago, and it or what is staged now more than
                    # one item) waits the window so arrivals join it.
                    node.flush_due = True
                    window_us = self.options.flush_delay_ms * 1000
                    busy = node.core is not None and node.core.flush_waits(
                        self.loop.now_us - node.last_flush_us, window_us, node.last_batch
                    )
                    delay_us = window_us if busy else 0
                    self.loop.after(delay_us, self._on_flush, (node, node.incarnation))
            elif kind is Notify:
                assert isinstance(effect, Notify)
                self._notice(node, effect.notice)
            elif kind is Dial:
                assert isinstance(effect, Dial)
                network.dial(node.index, effect.peer)
            elif kind is Disconnect:
                assert isinstance(effect, Disconnect)
                network.close(node.index, effect.peer, effect.reason.value)

    def _notice(self, node: SimNode, notice: Notice) -> None:
        now = self.loop.now_us
        kind = type(notice)
        if node.byzantine is not None and kind is not PeerRefused:
            self._byzantine_notice(node, notice)
            return
        if kind is Integrated:
            assert isinstance(notice, Integrated)
            self._integrated(node, notice)
        elif kind is WriteAcked:
            assert isinstance(notice, WriteAcked)
            self.trace.add("acked", node.index, notice.token, notice.envelope_id, notice.seq)
            self.checker.on_ack(node.index, notice, node.disk.holds(notice.envelope_id), now)
            self.metrics.writes_acked += 1
            self.metrics.on_written(node.index, notice.envelope_id, now)
            if self.on_ack is not None:
                self.on_ack(notice)
            pending = self._pending.pop(notice.token, None)
            if pending is not None and pending[2] is not None:
                pending[2](notice.token, notice)
        elif kind is WriteFailed:
            assert isinstance(notice, WriteFailed)
            self.trace.add("failed", node.index, notice.token, notice.error)
            failed = self.metrics.writes_failed
            failed[notice.error] = failed.get(notice.error, 0) + 1
            pending = self._pending.pop(notice.token, None)
            if pending is not None and pending[2] is not None:
                pending[2](notice.token, notice)
        elif kind is RejectedEnvelope:
            assert isinstance(notice, RejectedEnvelope)
            self._rejected(node, notice)
        elif kind is EvidenceFound:
            assert isinstance(notice, EvidenceFound)
            self._evidence(node, notice)
        elif kind is Throttled:
            assert isinstance(notice, Throttled)
            self.trace.add("throttled", node.index, notice.author, notice.dropped)
            self.stats.throttled[node.index] = (
                self.stats.throttled.get(node.index, 0) + notice.dropped
            )
        elif kind is PeerRefused:
            assert isinstance(notice, PeerRefused)
            self.stats.refusals[notice.reason] = self.stats.refusals.get(notice.reason, 0) + 1

    def _integrated(self, node: SimNode, notice: Integrated) -> None:
        now = self.loop.now_us
        self.checker.on_integrated(node.index, notice, now)
        local = notice.peer == ""
        for env_id in notice.envelope_ids:
            hop = 0 if local else node.copy_hop.pop(env_id, None)
            if hop is None:
                self.metrics.hops_unknown += 1
                hop = 0
            node.hop_of[env_id] = hop
            self.metrics.on_integrated(env_id, hop, now)
        if self.on_integrated is not None:
            self.on_integrated(node.index, notice.envelope_ids)

    @staticmethod
    def _byzantine_notice(node: SimNode, notice: Notice) -> None:
        """A Byzantine node's core only carries the protocol for its attacker: what it
        integrates, rejects or finds is not judged (it writes nothing through the core)."""
        if isinstance(notice, Integrated):
            for env_id in notice.envelope_ids:
                node.hop_of[env_id] = node.copy_hop.pop(env_id, 0)

    def _rejected(self, node: SimNode, notice: RejectedEnvelope) -> None:
        """Judged by who built it: an envelope an attacker built counts for its kind, whoever
        delivered it (a buffered one is reported when another envelope releases it). Otherwise
        by whether the peer that sent it is Byzantine (it may send anything) or honest (it
        forwards only what it stored, which no honest node may reject)."""
        built = self.checker.byz_expect.get(notice.envelope_id) if notice.envelope_id else None
        peer = self.network.peer_of.get((node.index, notice.peer))
        byzantine = None if peer is None else self.nodes[peer].byzantine
        if built is not None:
            byzantine = built[0]
        self.checker.on_rejected(node.index, notice, self.loop.now_us, byzantine)

    def _evidence(self, node: SimNode, notice: EvidenceFound) -> None:
        core = node.core
        assert core is not None
        evidence = core.admission.evidence
        pairs = [(key, evidence[key]) for key in notice.keys if key in evidence]
        self.checker.on_evidence(node.index, self.loop.now_us, pairs)

    # -- timers and flushes -------------------------------------------------------------------

    def _arm(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        deadline = core.next_deadline()
        if deadline is None:
            return
        now = self.loop.now_us
        at = node.clock.virtual_us(deadline, now)
        if at <= now and self._in_timer:
            # The core still has a deadline due right after a Timer: move on by a millisecond
            # rather than spin (counted: it would be a busy loop in the runtime).
            self.stats.timer_stalls += 1
            at = now + 1_000
        if node.timer_us is None or at < node.timer_us:
            node.timer_us = at
            self.loop.at(at, self._on_timer, (node, node.incarnation, at))

    def _on_timer(self, arg: tuple[SimNode, int, int]) -> None:
        node, incarnation, at = arg
        if node.incarnation != incarnation or node.core is None or node.timer_us != at:
            return
        node.timer_us = None
        deadline = node.core.next_deadline()
        if deadline is None:
            return
        if deadline <= node.clock.local_ms(self.loop.now_us):
            self._in_timer = True
            try:
                self.feed(node, Timer())
            finally:
                self._in_timer = False
        else:
            self._arm(node)

    def _on_flush(self, arg: tuple[SimNode, int]) -> None:
        node, incarnation = arg
        if node.incarnation != incarnation or node.core is None:
            return
        node.flush_due = False
        node.last_flush_us = self.loop.now_us
        node.last_batch = node.core.staged
        self.feed(node, Flush())
