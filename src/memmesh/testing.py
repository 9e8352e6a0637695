"""Helpers for tests and benchmarks, public so users can test their own code against Memory Mesh.

Everything here is deterministic: keys come from a label, never from ``os.urandom``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from .claims import Claim, make_claim
from .core import (
    Dial,
    Disconnect,
    Effect,
    Flush,
    Input,
    LocalWrite,
    MeshCore,
    Notice,
    Notify,
    PeerConnected,
    PeerGone,
    PeerKnown,
    Persist,
    Received,
    Send,
    SessionState,
    Timer,
)
from .core.handshake import Transcript
from .core.messages import PROTOCOL_VERSION, Auth, Hello, decode_message, encode_message
from .crypto import SigningKey
from .envelope import Envelope, seal
from .ids import ZERO_ID, Head, tagged_hash
from .membership import Role, make_genesis

__all__ = [
    "FakeNetwork",
    "LinkFaults",
    "LogWriter",
    "ManualClock",
    "MeshFixture",
    "NoQuiescence",
    "PeerScript",
    "fixed_mesh_id",
    "scaled",
    "seeded_key",
]


def scaled(count: int) -> int:
    """``count`` times ``MEMMESH_TEST_SCALE`` (default 1): how long campaigns grow a test.

    ``make soak`` sets the scale, so one test serves both the quick suite and the soak.
    """
    return count * max(1, int(os.environ.get("MEMMESH_TEST_SCALE", "1")))


def seeded_key(label: str) -> SigningKey:
    """A deterministic signing key named by ``label`` (for tests only: anyone can derive it)."""
    return SigningKey(tagged_hash(b"testing/seed", label.encode()))


def fixed_mesh_id(label: str = "test-mesh") -> bytes:
    """A deterministic mesh id for tests (a real one is the hash of a signed genesis)."""
    return tagged_hash(b"testing/mesh", label.encode())


class LogWriter:
    """Seals a hash-chained log of envelopes for one key and epoch, continuing from ``head``."""

    def __init__(
        self, key: SigningKey, mesh_id: bytes, *, epoch: int = 1, head: Head | None = None
    ) -> None:
        self.key = key
        self.mesh_id = mesh_id
        self.epoch = epoch
        self.seq = head.seq if head is not None else 0
        self.prev = head.id if head is not None else ZERO_ID

    def next(self, payload: bytes = b"", *, deps: tuple[bytes, ...] = (), hlc: int = 0) -> Envelope:
        envelope = seal(
            self.key,
            mesh_id=self.mesh_id,
            epoch=self.epoch,
            seq=self.seq + 1,
            prev=self.prev,
            deps=deps,
            hlc=hlc or self.seq + 1,
            payload=payload or f"payload {self.seq + 1}".encode(),
        )
        self.seq, self.prev = envelope.seq, envelope.id
        return envelope

    def take(self, count: int) -> list[Envelope]:
        return [self.next() for _ in range(count)]

    def __iter__(self) -> Iterator[Envelope]:
        while True:
            yield self.next()


class MeshFixture:
    """A seeded mesh for tests: one admin agent, ``nodes`` node keys and ``writers`` writer agents
    in the genesis, and claim builders that count each agent's seq."""

    def __init__(self, label: str = "mesh", *, nodes: int = 3, writers: int = 2) -> None:
        self.admin = seeded_key(f"{label}/admin")
        self.nodes = [seeded_key(f"{label}/node{i}") for i in range(nodes)]
        self.writers = [seeded_key(f"{label}/writer{i}") for i in range(writers)]
        roster = [(k.public_key, Role.NODE) for k in self.nodes]
        roster += [(k.public_key, Role.WRITER) for k in self.writers]
        self.genesis = make_genesis(self.admin, label, roster)
        self.mesh_id = self.genesis.mesh_id
        self._aseq: dict[bytes, int] = {}
        self._hlc = 0

    def claim(
        self,
        agent: SigningKey,
        key: str = "k",
        value: object = "v",
        *,
        type: str = "fact",
        namespace: tuple[str, ...] = ("test",),
        supersedes: tuple[bytes, ...] = (),
        based_on: tuple[bytes, ...] = (),
    ) -> Claim:
        aseq = self._aseq.get(agent.public_key, 0) + 1
        self._aseq[agent.public_key] = aseq
        self._hlc += 1
        return make_claim(
            agent,
            mesh_id=self.mesh_id,
            aseq=aseq,
            hlc=(1_700_000_000_000 + self._hlc, 0),
            namespace=namespace,
            key=key,
            type=type,
            value=value,
            supersedes=supersedes,
            based_on=based_on,
        )

    def admit(self, key: bytes, role: str, *, by: SigningKey | None = None) -> Claim:
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "role": role},
            type="admit",
            namespace=("_mesh", "members"),
        )

    def revoke_node(
        self, key: bytes, epoch: int, seq: int, *, by: SigningKey | None = None
    ) -> Claim:
        cutoff = {"epoch": epoch, "seq": seq}
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "cutoff": cutoff},
            type="revoke",
            namespace=("_mesh", "members"),
        )

    def revoke_agent(self, key: bytes, aseq: int, *, by: SigningKey | None = None) -> Claim:
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "cutoff": {"aseq": aseq}},
            type="revoke",
            namespace=("_mesh", "members"),
        )


class PeerScript:
    """Plays a peer holding ``key`` by hand against one core: builds the frames of a correct
    handshake (our ``Hello``, then our ``Auth`` once the core's hello is known), so a test can
    get a session to active and then send whatever it likes."""

    def __init__(
        self,
        key: SigningKey,
        mesh_id: bytes,
        *,
        nonce: bytes = b"\x5a" * 32,
        chain: list[bytes] | None = None,
        versions: list[int] | None = None,
    ) -> None:
        self.key, self.mesh_id, self.nonce = key, mesh_id, nonce
        self.hello = encode_message(
            Hello(versions or [PROTOCOL_VERSION], mesh_id, key.public_key, nonce, chain or [])
        )

    def auth(self, core_hello: bytes) -> bytes:
        """Our proof, answering the core's ``Hello`` frame."""
        theirs = decode_message(core_hello, frame_bytes_max=len(core_hello))
        assert isinstance(theirs, Hello)
        ours = Transcript(
            PROTOCOL_VERSION,
            self.mesh_id,
            self.key.public_key,
            self.nonce,
            theirs.node,
            theirs.nonce,
        )
        return encode_message(Auth(ours.sign(self.key)))

    def open(self, core: MeshCore, peer: str, now_ms: int = 0) -> list[Effect]:
        """Connect to ``core`` as ``peer`` and complete the handshake; return the effects of
        the last step (the core's first frontier, when it accepted us)."""
        effects = core.handle(PeerConnected(peer), now_ms)
        core_hello = next(e.data for e in effects if isinstance(e, Send) and e.kind == "Hello")
        core.handle(Received(peer, self.hello), now_ms)
        return core.handle(Received(peer, self.auth(core_hello)), now_ms)


class ManualClock:
    """Time that moves only when a test says so (milliseconds, like ``MeshCore``'s ``now_ms``)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("time does not go back")
        self.now_ms += ms
        return self.now_ms


@dataclass(slots=True)
class LinkFaults:
    """What a directed link does to frames: drop or duplicate each with a probability, and
    deliver them out of order."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False


class NoQuiescence(AssertionError):
    """The cores kept talking past the allowed number of sweeps."""


@dataclass(slots=True)
class _Frame:
    src: str
    dst: str
    data: bytes


@dataclass(slots=True)
class FakeNetwork:
    """``MeshCore`` instances joined by in-memory links, driven step by step; no sockets, no
    sleeps, one seeded ``random.Random`` for every choice, so a run is reproducible.

    Each node is a name; in a core, the session with node ``b`` has the peer handle ``"b"``.
    Frames wait in one queue; :meth:`deliver` hands them over (the oldest first, or a random one
    on a reordering link), after the link's faults. ``Persist`` marks the node for a ``Flush``,
    which :meth:`settle` feeds once the frames in flight are delivered, or at random in between.
    Every notice is kept in ``notices[name]``.
    """

    rng: random.Random
    clock: ManualClock = field(default_factory=ManualClock)
    cores: dict[str, MeshCore] = field(default_factory=dict)
    links: set[tuple[str, str]] = field(default_factory=set)
    """Open connections, each as (dialler, listener)."""
    known: set[tuple[str, str]] = field(default_factory=set)
    """(a, b): ``a`` dials ``b`` and redials it after every drop, restarts included."""
    partitions: set[frozenset[str]] = field(default_factory=set)
    """Pairs that cannot reach each other: dials fail, connections are cut."""
    faults: dict[tuple[str, str], LinkFaults] = field(default_factory=dict)
    in_flight: list[_Frame] = field(default_factory=list)
    flush_due: set[str] = field(default_factory=set)
    notices: dict[str, list[Notice]] = field(default_factory=dict)
    frames_sent: int = 0
    frames_dropped: int = 0
    bytes_sent: int = 0
    largest_frame: int = 0

    def add(self, name: str, core: MeshCore) -> None:
        self.cores[name] = core
        self.notices.setdefault(name, [])

    def connect(self, a: str, b: str) -> None:
        """``a`` learns ``b``'s address (and redials it whenever the connection drops), and a
        connection dialled by ``a`` opens at once; both cores send their hello."""
        self.known.add((a, b))
        self._feed(a, PeerKnown(b))
        self._open(a, b)

    def know(self, a: str, b: str) -> None:
        """``a`` learns ``b``'s address without a connection opening: ``a``'s core dials it when
        its active view has room (``connect`` opens one at once, whatever the view)."""
        self.known.add((a, b))
        self._feed(a, PeerKnown(b))

    def crash(self, name: str) -> None:
        """Take ``name`` off the network for good: its connections drop, dials to it fail."""
        for peer in sorted({b if a == name else a for a, b in self.links if name in (a, b)}):
            self.disconnect(name, peer)
        self.flush_due.discard(name)
        del self.cores[name]

    def cut(self, a: str, b: str) -> None:
        """Drop the connection between ``a`` and ``b`` (the dialler will redial)."""
        self.disconnect(a, b)

    def partition(self, a: str, b: str) -> None:
        """Cut ``a`` from ``b`` until :meth:`heal`: dials between them fail."""
        self.partitions.add(frozenset((a, b)))
        self.disconnect(a, b)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """End the partition between ``a`` and ``b``, or every partition."""
        if a is None or b is None:
            self.partitions.clear()
        else:
            self.partitions.discard(frozenset((a, b)))

    def _open(self, a: str, b: str) -> None:
        if self.connected(a, b) or frozenset((a, b)) in self.partitions:
            return
        self.links.add((a, b))
        self._feed(a, PeerConnected(b, outbound=True))
        self._feed(b, PeerConnected(a, outbound=False))

    def disconnect(self, a: str, b: str, reason: str | None = None) -> None:
        """Close the connection between ``a`` and ``b``; frames in flight on it are lost. When
        ``a`` closes it with a ``reason``, ``b`` is told (as a websocket close reason would)."""
        if not self.connected(a, b):
            return
        self.links.discard((a, b))
        self.links.discard((b, a))
        self.in_flight = [f for f in self.in_flight if {f.src, f.dst} != {a, b}]
        for name, other, why in ((a, b, None), (b, a, reason)):
            if name in self.cores:
                self._feed(name, PeerGone(other, why))

    def connected(self, a: str, b: str) -> bool:
        return (a, b) in self.links or (b, a) in self.links

    def set_faults(self, faults: LinkFaults, a: str | None = None, b: str | None = None) -> None:
        """Faults on the link a -> b, or on every link when neither is named."""
        if a is None or b is None:
            names = sorted(self.cores)
            for x in names:
                for y in names:
                    if x != y:
                        self.faults[(x, y)] = faults
        else:
            self.faults[(a, b)] = faults

    def restart(self, name: str, factory: Callable[[], MeshCore]) -> MeshCore:
        """Crash ``name`` (its connections drop, what it staged is lost) and start the core
        ``factory`` builds, typically from the same store. It dials the peers it knew; the
        peers that dialled it redial it after their backoff."""
        for peer in sorted({b if a == name else a for a, b in self.links if name in (a, b)}):
            self.disconnect(name, peer)
        self.flush_due.discard(name)
        core = factory()
        self.cores[name] = core
        for a, b in sorted(self.known):
            if a == name:
                self.connect(a, b)
        return core

    # -- driving ------------------------------------------------------------------------------

    def write(self, name: str, token: int, claims: list[Claim]) -> None:
        self._feed(name, LocalWrite(token, claims))

    def deliver(self, count: int = 1) -> int:
        """Deliver up to ``count`` frames; return how many were delivered."""
        delivered = 0
        while delivered < count and self.in_flight:
            index = 0
            first = self.in_flight[0]
            if self.faults.get((first.src, first.dst), _NO_FAULTS).reorder:
                index = self.rng.randrange(len(self.in_flight))
            frame = self.in_flight.pop(index)
            delivered += 1
            if frame.dst in self.cores and self.connected(frame.src, frame.dst):
                self._feed(frame.dst, Received(frame.src, frame.data))
        return delivered

    def inject(self, src: str, dst: str, data: bytes) -> None:
        """Queue a frame on the connection from ``src`` to ``dst`` as if ``src`` had sent it:
        how a test plays a misbehaving peer."""
        if not self.connected(src, dst):
            raise ValueError(f"{src} and {dst} are not connected")
        self.in_flight.append(_Frame(src, dst, data))

    def flush(self, name: str | None = None) -> None:
        for target in sorted(self.flush_due) if name is None else [name]:
            if target in self.flush_due:
                self.flush_due.discard(target)
                self._feed(target, Flush())

    def settle(self, steps_max: int = 1_000_000) -> int:
        """Deliver and flush until nothing is in flight or due; return the steps taken."""
        steps = 0
        while self.in_flight or self.flush_due:
            if steps >= steps_max:
                raise NoQuiescence(f"still busy after {steps} steps")
            steps += 1
            if self.flush_due and (not self.in_flight or self.rng.random() < 0.1):
                self.flush(self.rng.choice(sorted(self.flush_due)))
            else:
                self.deliver(1)
        return steps

    def tick(self, ms: int) -> None:
        """Advance the clock and wake every core whose deadline has come."""
        now = self.clock.advance(ms)
        for name in sorted(self.cores):
            deadline = self.cores[name].next_deadline()
            if deadline is not None and deadline <= now:
                self._feed(name, Timer())

    def quiesce(self, sweeps_max: int = 200, *, ignore: Collection[str] = ()) -> int:
        """Stop every link fault (partitions stay), then sweep anti-entropy over every connection
        until one whole sweep transfers no envelope and every round is answered
        ``NothingToSend`` both ways; return the number of sweeps. Between sweeps, while some core
        is not quiet (a handshake, a redial or a request pending), the clock moves to the next
        deadline of such a core (a redial may be backing off for seconds after a partition).
        Raise ``NoQuiescence`` if the sweeps run out. Cores named in ``ignore`` need not be quiet
        (a revoked node, which no member talks to, may wait for ever for what it lacks)."""
        self.faults.clear()
        for sweep in range(1, sweeps_max + 1):
            self.settle()
            watched = [core for name, core in sorted(self.cores.items()) if name not in ignore]
            busy = [core for core in watched if not core.quiet()]
            if busy:
                deadlines = [c.next_deadline() for c in busy]
                due = min((d for d in deadlines if d is not None), default=None)
                if due is not None:
                    self.tick(max(0, due - self.clock.now_ms))
                    self.settle()
            received = sum(c.stats.envelopes_received for c in self.cores.values())
            for name in sorted(self.cores):
                core = self.cores[name]
                for peer in sorted(core.sessions):
                    self._run(name, core.begin_sync(peer, self.clock.now_ms))
            self.settle()
            moved = sum(c.stats.envelopes_received for c in self.cores.values()) - received
            if moved == 0 and all(
                core.quiet() and all(s.in_sync for s in core.sessions.values()) for core in watched
            ):
                return sweep
        raise NoQuiescence(f"no quiet sweep in {sweeps_max}")

    def _feed(self, name: str, event: Input) -> None:
        self._run(name, self.cores[name].handle(event, self.clock.now_ms))

    def _run(self, name: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(name, effect)
            elif isinstance(effect, Persist):
                self.flush_due.add(name)
            elif isinstance(effect, Notify):
                self.notices[name].append(effect.notice)
            elif isinstance(effect, Disconnect):
                self.disconnect(name, effect.peer, effect.reason.value)
            elif isinstance(effect, Dial):
                reachable = effect.peer in self.cores and (
                    frozenset((name, effect.peer)) not in self.partitions
                )
                if not reachable:
                    self._feed(name, PeerGone(effect.peer))
                elif not self.connected(name, effect.peer):
                    self._open(name, effect.peer)

    def _send(self, name: str, effect: Send) -> None:
        if not self.connected(name, effect.peer):
            return
        faults = self.faults.get((name, effect.peer), _NO_FAULTS)
        self.frames_sent += 1
        self.bytes_sent += len(effect.data)
        self.largest_frame = max(self.largest_frame, len(effect.data))
        if faults.loss and self.rng.random() < faults.loss:
            self.frames_dropped += 1
            return
        copies = 2 if faults.duplicate and self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            self.in_flight.append(_Frame(name, effect.peer, effect.data))

    def session_states(self, name: str) -> dict[str, SessionState]:
        return {peer: s.state for peer, s in self.cores[name].sessions.items()}


_NO_FAULTS = LinkFaults()
