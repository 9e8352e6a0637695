"""Connections between simulated nodes, carried over the link model.

The core is connection-oriented (``Dial``, ``PeerConnected``, ``PeerGone``), so the network is
too: a dial opens a connection after a round trip, or fails (refused at once by a host whose
node is down, after a black-hole timeout across a partition). The dialler's handle for a
connection is the address it dialled; the listener's is ``in:c<number>``, as a runtime names an
inbound socket. Frames on a connection go through :class:`~memmesh.sim.links.Links` (loss,
duplication, reordering, capacity, clogs). A close reaches the other side after the frames sent
before it; a partition drops every frame that crosses it and closes crossing connections once
the heartbeat timeout notices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from .links import Links
from .loop import EventLoop, Trace
from .options import SimOptions

__all__ = ["Connection", "Frame", "Host", "Network", "NetworkStats"]

_BLACK_HOLE_US = 2_000_000
"""A dial into a partition fails after this long (a connect timeout)."""
_HEARTBEAT_TIMEOUT_US = (1_000_000, 3_000_000)
"""A connection cut by a partition is noticed after a time drawn in this range."""


@dataclass(slots=True)
class Frame:
    number: int
    data: bytes
    kind: str
    items: tuple[tuple[bytes, int], ...] = ()
    """For ``Envelopes``: (envelope id, hop count of this copy) per envelope carried."""
    pushed: bool = False
    """An eager push (``Envelopes`` with req 0), not an answer to a request."""


@dataclass(slots=True, eq=False)
class Connection:
    number: int
    a: int
    """The dialler."""
    b: int
    a_incarnation: int
    b_incarnation: int
    a_handle: str
    b_handle: str
    a_open: bool = False
    b_open: bool = False
    a_closing: bool = False
    b_closing: bool = False
    """A close of that side is on its way (it takes effect when its node is told)."""
    a_closed: bool = False
    b_closed: bool = False

    def side(self, node: int) -> tuple[int, bool, str]:
        """(the other node, whether ``node`` is the listener, the other side's handle)."""
        if node == self.a:
            return self.b, False, self.b_handle
        return self.a, True, self.a_handle


class Host(Protocol):
    """What the network asks of the cluster that runs the nodes."""

    def incarnation(self, node: int) -> int | None:
        """The node's current run (bumped by every restart), or None while it is down."""

    def node_at(self, address: str) -> int | None: ...

    def on_connected(self, node: int, handle: str, outbound: bool) -> None: ...

    def on_frame(self, node: int, handle: str, frame: Frame) -> None: ...

    def on_gone(self, node: int, handle: str, reason: str | None) -> None: ...


@dataclass(slots=True)
class NetworkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    """Lost, cut by a partition, or arriving at a closed connection."""
    messages_by_kind: dict[str, int] = field(default_factory=dict)
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    dials: int = 0
    dial_failures: int = 0
    connections_opened: int = 0


class Network:
    def __init__(
        self, options: SimOptions, loop: EventLoop, trace: Trace, host: Host, rng: random.Random
    ) -> None:
        self.loop, self.trace, self.host, self.rng = loop, trace, host, rng
        self.links = Links(options, rng, "link")
        self.conns: list[dict[str, Connection]] = []
        """Per node, its open connections by its handle."""
        self.group: list[int] = []
        """Per node, its side of the current partition (all 0 when healed)."""
        self.stats = NetworkStats()
        self.peer_of: dict[tuple[int, str], int] = {}
        """(node, its handle of a connection) -> the node at the other end, kept after the
        connection closed (a core reports a peer by handle, sometimes after the close)."""
        self._numbers = 0
        self._frames = 0

    def add_node(self) -> int:
        self.conns.append({})
        self.group.append(0)
        return len(self.conns) - 1

    def reachable(self, a: int, b: int) -> bool:
        return self.group[a] == self.group[b]

    # -- dialling -----------------------------------------------------------------------------

    def dial(self, a: int, address: str) -> None:
        self.stats.dials += 1
        b = self.host.node_at(address)
        b_inc = None if b is None else self.host.incarnation(b)
        a_inc = self.host.incarnation(a)
        assert a_inc is not None
        if b is None or b == a or b_inc is None or not self.reachable(a, b):
            if b is not None and b != a and not self.reachable(a, b):
                delay = _BLACK_HOLE_US
            else:  # refused by the host at once (or no such host on this network)
                delay = self.links.round_trip_us(a, b) if b is not None and b != a else 1_000
            self.trace.add("dial-fail", a, address)
            self.loop.after(delay, self._dial_failed, (a, a_inc, address))
            return
        self._numbers += 1
        conn = Connection(self._numbers, a, b, a_inc, b_inc, address, f"in:c{self._numbers}")
        self.trace.add("dial", a, b, conn.number)
        self.loop.after(self.links.link(a, b).latency_us, self._accept, conn)

    def _dial_failed(self, arg: tuple[int, int, str]) -> None:
        a, a_inc, address = arg
        self.stats.dial_failures += 1
        if self.host.incarnation(a) == a_inc:
            self.host.on_gone(a, address, None)

    def _accept(self, conn: Connection) -> None:
        a, b = conn.a, conn.b
        alive = (
            self.host.incarnation(a) == conn.a_incarnation
            and self.host.incarnation(b) == conn.b_incarnation
            and self.reachable(a, b)
        )
        if not alive:
            self.trace.add("accept-fail", a, b, conn.number)
            back = (a, conn.a_incarnation, conn.a_handle)
            self.loop.after(self.links.link(b, a).latency_us, self._dial_failed, back)
            return
        self.stats.connections_opened += 1
        self.trace.add("accept", a, b, conn.number)
        conn.b_open = True
        self.conns[b][conn.b_handle] = conn
        self.peer_of[(b, conn.b_handle)] = a
        # The dialler learns of the connection one latency later, before any frame the
        # listener sends in answer (scheduled first, and frames are never faster).
        self.loop.after(self.links.link(b, a).latency_us, self._connected, conn)
        self.host.on_connected(b, conn.b_handle, False)

    def _connected(self, conn: Connection) -> None:
        a = conn.a
        if conn.b_closing or self.host.incarnation(a) != conn.a_incarnation:
            self.trace.add("connect-late", a, conn.number)
            if not conn.b_closing:
                self._close_side(conn, conn.b, None, self.loop.now_us)
            if self.host.incarnation(a) == conn.a_incarnation:
                self.host.on_gone(a, conn.a_handle, None)
            return
        if conn.a_handle in self.conns[a]:  # a second dial of one address: keep the first
            self.trace.add("connect-dup", a, conn.number)
            self._close_side(conn, conn.b, None, self.loop.now_us)
            return
        self.trace.add("connected", a, conn.number)
        conn.a_open = True
        self.conns[a][conn.a_handle] = conn
        self.peer_of[(a, conn.a_handle)] = conn.b
        self.host.on_connected(a, conn.a_handle, True)

    # -- frames -------------------------------------------------------------------------------

    def send(
        self,
        a: int,
        handle: str,
        data: bytes,
        kind: str,
        items: tuple[tuple[bytes, int], ...],
        *,
        pushed: bool = False,
    ) -> None:
        conn = self.conns[a].get(handle)
        if conn is None:
            return  # the connection closed while the core still spoke to it
        b, to_a, _ = conn.side(a)
        self._frames += 1
        stats = self.stats
        stats.frames_sent += 1
        stats.bytes_sent += len(data)
        stats.messages_by_kind[kind] = stats.messages_by_kind.get(kind, 0) + 1
        stats.bytes_by_kind[kind] = stats.bytes_by_kind.get(kind, 0) + len(data)
        frame = Frame(self._frames, data, kind, items, pushed)
        self.trace.add("send", self._frames, a, b, kind, data)
        arrivals = self.links.transmit(a, b, len(data), self.loop.now_us)
        if not arrivals:
            stats.frames_dropped += 1
            self.trace.add("lost", self._frames)
        for arrival in arrivals:
            self.loop.at(arrival, self._deliver, (conn, to_a, frame))

    def _deliver(self, arg: tuple[Connection, bool, Frame]) -> None:
        conn, to_a, frame = arg
        node, handle, is_open = (
            (conn.a, conn.a_handle, conn.a_open and not conn.a_closed)
            if to_a
            else (conn.b, conn.b_handle, conn.b_open and not conn.b_closed)
        )
        other = conn.b if to_a else conn.a
        if not is_open or not self.reachable(node, other):
            self.stats.frames_dropped += 1
            self.trace.add("drop", frame.number)
            return
        self.stats.frames_delivered += 1
        self.trace.add("deliver", frame.number)
        self.host.on_frame(node, handle, frame)

    # -- closing ------------------------------------------------------------------------------

    def close(self, a: int, handle: str, reason: str | None) -> None:
        """Node ``a`` closes the connection: it learns at once, the other side after the
        frames ``a`` sent before."""
        conn = self.conns[a].get(handle)
        if conn is None:
            return
        b, _, _ = conn.side(a)
        self.trace.add("close", a, conn.number)
        self._close_side(conn, a, None, self.loop.now_us)
        self._close_side(conn, b, reason, self.links.in_order_after(a, b, self.loop.now_us))

    def crash(self, a: int) -> None:
        """Node ``a``'s process died: its side is gone silently, peers see the close."""
        for handle in sorted(self.conns[a]):
            conn = self.conns[a].pop(handle)
            b, _, _ = conn.side(a)
            if conn.a == a:
                conn.a_closing = conn.a_closed = True
            else:
                conn.b_closing = conn.b_closed = True
            self._close_side(conn, b, None, self.links.in_order_after(a, b, self.loop.now_us))

    def _close_side(self, conn: Connection, node: int, reason: str | None, at_us: int) -> None:
        """Close ``node``'s side at ``at_us`` and tell its core (if it ever saw it open)."""
        if node == conn.a:
            if conn.a_closing:
                return
            conn.a_closing = True
        else:
            if conn.b_closing:
                return
            conn.b_closing = True
        self.loop.at(at_us, self._gone, (conn, node, reason))

    def _gone(self, arg: tuple[Connection, int, str | None]) -> None:
        conn, node, reason = arg
        if node == conn.a:
            conn.a_closed = True
        else:
            conn.b_closed = True
        handle = conn.a_handle if node == conn.a else conn.b_handle
        incarnation = conn.a_incarnation if node == conn.a else conn.b_incarnation
        if self.conns[node].get(handle) is not conn:
            return  # never opened on this side, or already forgotten by a crash
        del self.conns[node][handle]
        self.trace.add("gone", node, conn.number)
        if self.host.incarnation(node) == incarnation:
            self.host.on_gone(node, handle, reason)

    # -- partitions ---------------------------------------------------------------------------

    def partition(self, group: list[int]) -> None:
        """Split the nodes by ``group`` (a side per node); crossing connections die once their
        heartbeat times out (unless the partition heals first), and until then every frame
        across is lost."""
        self.group = list(group)
        self.trace.add("partition", *group)
        seen: set[int] = set()
        for node in range(len(self.conns)):
            for handle in sorted(self.conns[node]):
                conn = self.conns[node][handle]
                if conn.number in seen or self.reachable(conn.a, conn.b):
                    continue
                seen.add(conn.number)
                low, high = _HEARTBEAT_TIMEOUT_US
                self.loop.after(self.rng.randint(low, high), self._heartbeat_lost, conn)

    def _heartbeat_lost(self, conn: Connection) -> None:
        """One side's heartbeat timed out: it closes, and the other learns within a second
        (its own heartbeat, or the reset its next frame meets)."""
        if self.reachable(conn.a, conn.b):
            return
        now = self.loop.now_us
        first, second = (conn.a, conn.b) if self.rng.random() < 0.5 else (conn.b, conn.a)
        self._close_side(conn, first, None, now)
        self._close_side(conn, second, None, now + self.rng.randint(0, 1_000_000))

    def heal(self) -> None:
        self.group = [0] * len(self.group)
        self.trace.add("heal")
