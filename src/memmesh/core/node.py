"""The sans-IO node: ``handle(input, now_ms) -> effects`` and ``next_deadline()``.

One ``MeshCore`` is one node's protocol logic: its admission pipeline, its sync sessions and its
timers. It does no I/O, reads no clock and draws no global randomness: time comes in as
``now_ms`` (milliseconds of the caller's wall clock; a jump only moves timers, never a validity
decision), randomness from the injected ``random.Random``, storage through the injected
synchronous ``Store``. The runtime (asyncio, websockets, LMDB) and the simulator drive this same
class and carry out its effects in order.

**A round of anti-entropy** (every ``anti_entropy_interval_ms``, with one random peer)::

    A -> B  Frontier(round, heads, forks, reply=True)     paged, the last page has last=True
    B       asks A for what it lacks (GetRange per log behind, GetIds for heads or forks it
            does not hold), then answers the round:
    B -> A  Frontier(round, ..., reply=False)  if A lacks something B holds, else
            NothingToSend(round)
    A       asks B for what it lacks.

Every ``GetRange``/``GetIds`` is answered by exactly one ``Envelopes`` page (a prefix that fits
one frame; ``more`` when cut) and the asker pulls the next page, so a large catch-up is flow
controlled by the side that has to verify it. New envelopes are pushed eagerly
(``Envelopes(req=0)``) along the push tree (:mod:`memmesh.core.tree`: one tree rooted at the
node of lowest rank, kept by signed beacons) and announced (``IHave``) on every other link.
Heads are compared by id as well as seq, so a peer holding the other branch of an equivocation
is asked for it and the fork becomes evidence on both sides; the lowest fork of every log
travels in the frontier, so a replica that holds one branch learns of the other.

**Persist and Flush.** Envelopes received and local writes are staged, and the core emits
``Persist``; the caller feeds ``Flush`` once it has fed the inputs that were ready, and the core
commits everything staged in one durable commit (group commit), integrates it, acknowledges local
writes, pushes what is new and asks for missing dependencies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..admission import Admission, AdmissionLimits, NotAMember, Outcome, Status
from ..claims import Claim
from ..crypto import SigningKey
from ..envelope import envelope_author, envelope_id, payload_bytes_max
from ..errors import LocalError, Reason, Rejected, StorageError
from ..hlc import HybridClock
from ..ids import Head, LogId, short_id
from ..membership import Genesis, Role, verify_admit_chain
from ..quota import Quota
from ..store import Store
from ..ydecode import ITEMS_MAX, client_id, update_frame_bytes_max, update_item_bytes
from .events import (
    Advertise,
    CancelWrite,
    Dial,
    Disconnect,
    Effect,
    EvidenceFound,
    Flush,
    Input,
    Integrated,
    LocalWrite,
    Notice,
    Notify,
    PeerConnected,
    PeerGone,
    PeerKnown,
    PeerReady,
    PeerRefused,
    Persist,
    Received,
    RejectedEnvelope,
    Send,
    Throttled,
    Timer,
    WriteAcked,
    WriteFailed,
)
from .handshake import Transcript
from .messages import (
    CONFIRMS_MAX,
    COVER_PREFIX_BYTES,
    COVERED_MAX,
    HEADS_PER_MESSAGE_MAX,
    IDS_PER_MESSAGE_MAX,
    PROTOCOL_VERSION,
    Auth,
    Beacon,
    Bye,
    Envelopes,
    ForkEntry,
    Frontier,
    GetIds,
    GetRange,
    Graft,
    HeadEntry,
    Hello,
    IHave,
    Message,
    NothingToSend,
    PeerRecord,
    Prune,
    Shuffle,
    decode_message,
    encode_message,
)
from .peers import PassiveView, sign_record
from .sessions import FetchIds, FetchRange, InFlight, Rng, Session, SessionState, SyncLimits
from .tree import PushTree

__all__ = ["MeshCore", "SyncStats"]

_NOT_THE_SENDERS_FAULT = frozenset({Reason.CAUSAL_BUFFER_FULL, Reason.PENDING_BUFFER_FULL})
"""Rejections for lack of room here: they do not count against the peer that sent them."""

_FINAL_REFUSALS = frozenset(
    r.value
    for r in (
        Reason.WRONG_MESH,
        Reason.NO_COMMON_VERSION,
        Reason.SELF_CONNECTION,
        Reason.NOT_MEMBER,
        Reason.REVOKED,
        Reason.BAD_SIGNATURE,
    )
)
"""Refusals of who a peer is: retrying cannot help, so the address is not dialled again."""
_ADDRESS_FINE = frozenset(
    r.value for r in (Reason.VIEW_FULL, Reason.DUPLICATE_SESSION, Reason.SHUTDOWN)
)
"""Ends of a learned dial that say nothing against the address: its record is kept."""
_MESSAGE_OVERHEAD_BYTES = 64
_ITEM_OVERHEAD_BYTES = 5
_CONFIRM_BYTES = 34
"""An id in ``Envelopes.confirms``: 32 bytes and a 2-byte msgpack header."""
_HLC_DRIFT_MAX_MS = 60_000
_NO_DEADLINE = 1 << 62
_HELD_UP_MAX = 4_096
"""Ids of a writer's own pushes held back from the parent (``MeshCore._held_up``), at most."""
_New = tuple[str, bytes, tuple[bytes, ...]]
"""Something just integrated: (the peer it came from, "" for this node's own; its id; the node
key prefixes the push that brought it says have it, ``Envelopes.covered``)."""


@dataclass(slots=True)
class SyncStats:
    """Counters of what sync did (a runtime exports them as metrics)."""

    messages_sent: dict[str, int] = field(default_factory=dict)
    messages_received: dict[str, int] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    bytes_received: dict[str, int] = field(default_factory=dict)
    envelopes_received: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    refusals_sent: dict[str, int] = field(default_factory=dict)
    rounds_started: int = 0
    rounds_in_sync: int = 0
    commits: int = 0
    pushes: int = 0
    """Push messages sent (one per eager link per flush that made something new)."""
    prunes: int = 0
    """``Prune`` messages sent: this node left a parent in the push tree."""
    bans: int = 0
    """Peers disconnected and banned for sending too many invalid envelopes."""
    pushes_throttled: int = 0
    """Pushed envelopes dropped unread: their author was past its push budget."""
    confirmations_alone: int = 0
    """Pushes without envelopes sent to confirm a push no other push followed in time."""
    stray_pushes: int = 0
    """Pushes from a peer that is neither parent nor child, answered with a ``Prune``."""
    lost_pushes: int = 0
    """Envelopes a push tree neighbour confirmed (``Envelopes.confirms``) that never came:
    fetched from it at once."""
    waiting_dropped: int = 0
    """Envelopes given up on after ``causal_wait_max_ms`` without their causal past."""
    grafts: int = 0
    """``Graft`` messages sent: this node chose a (new) parent in the push tree, or told its
    parent again at a new beacon seq that it is its child."""
    beacons_sent: int = 0
    """Beacons this node signed as the push tree's root."""
    beacons_refused: int = 0
    """Beacons whose signature did not verify or whose root is not a node member."""
    shuffles: int = 0
    """Shuffles this node started (periodic ones; a new session's records are not counted)."""
    view_refusals: int = 0
    """Handshakes refused with ``view_full`` (the active view was at its maximum)."""
    store_read_errors: int = 0
    """Stored envelopes left out of an answer because the store could not read them."""
    last_store_read_error: str = ""
    rotations: int = 0
    """Sessions dropped to make room after a rotation dial."""
    priority_joins: int = 0
    """Sessions dropped to let in a node with no other session (``Hello.alone``)."""


@dataclass(slots=True)
class _Dialling:
    attempts: int = 0
    due_ms: int | None = 0
    """When to dial next (or, while a dial is out, to give up on it); None while connected or
    once refused for good."""
    node: bytes | None = None
    refused: bool = False
    dialling: bool = False
    """A ``Dial`` is out and neither ``PeerConnected`` nor ``PeerGone`` has answered it."""
    parked: bool = False
    """Ready to dial (its backoff is over) and waiting for room in the active view."""
    learned: bool = False
    """Taken from a peer record, not configured: forgotten once its session ends, and its
    record too if it never became active."""
    rotation: bool = False
    """Dialled by a rotation: once active, the node drops one of its other sessions."""
    ok: bool = False
    """A session from this address became active."""
    refusal: str | None = None
    """The reason of the last refusal the peer sent."""

    @property
    def never_let_in(self) -> bool:
        """A configured address parked for room whose session never became active
        (:meth:`MeshCore._fill_view` dials it one past the view's target)."""
        return self.parked and not (self.learned or self.ok)


_StagedRemote = tuple[str, bytes, tuple[bytes, ...], bytes | None]


@dataclass(slots=True)
class _Staged:
    remote: list[_StagedRemote] = field(default_factory=list)
    """(peer, envelope bytes, the nodes the push that brought it says have it: ``covered``,
    its id: hashed once here, for admission and for :meth:`MeshCore._staged_ids`; None for
    bytes over the envelope limit, which admission refuses unhashed)."""
    local: list[LocalWrite] = field(default_factory=list)
    remote_bytes: int = 0
    remote_ids: set[bytes] = field(default_factory=set)
    """The ids of ``remote``, kept as it grows: asked at most pushes under load (a push
    confirms the one before it, whose envelopes are often still staged), where gathering
    them cost a walk of everything staged, thousands of envelopes while a node catches up."""

    def __bool__(self) -> bool:
        return bool(self.remote or self.local)


class MeshCore:
    """One node's sync protocol over its admission pipeline. Not thread-safe; no I/O."""

    _revoked_seen: tuple[int, tuple[Session, ...]] = (-1, ())
    """(admission generation, active sessions) at the last :meth:`_drop_revoked` (an immutable
    class default; each core sets its own)."""
    _announce_due_ms: int | None
    """When the ids waiting in sessions' ``announce`` lists go out (``ihave_batch_ms``)."""
    _confirm_due_ms: int | None
    """The earliest of the sessions' ``confirm_due_ms`` (``confirm_wait_ms``), or later."""
    _held_up: dict[bytes, tuple[bytes, ...]]
    """A writer's own pushes announced to the parent instead of pushed, with their
    ``covered``, oldest first (:meth:`_push`, :meth:`_pass_up_held`)."""

    def __init__(
        self,
        node_key: SigningKey,
        genesis: Genesis,
        store: Store,
        rng: Rng,
        *,
        limits: SyncLimits | None = None,
        admission_limits: AdmissionLimits | None = None,
        epoch: int = 1,
        admit_chain: Sequence[bytes] = (),
        start_isolated: bool = True,
    ) -> None:
        """``admit_chain``: the admit claims' bytes from a genesis admin to ``node_key`` (what
        ``memmesh members add`` gives a joining node), presented in the handshake until this
        node's own replica holds its admission. Not needed for a genesis member.

        ``start_isolated=False`` (what a daemon runs with) holds local writes until a peer's
        frontier has shown this node's own log, and for as long as peers know a later seq of it
        than this replica holds (DESIGN §4 rule 6: a restored backup or a cloned disk would
        otherwise sign a second envelope for a seq it already used). Sync brings the missing
        envelopes of its own log like any other, and writes resume after them."""
        self.node_key = node_key
        self.node = node_key.public_key
        self.mesh_id = genesis.mesh_id
        self.epoch = epoch
        self.limits = limits or SyncLimits()
        self.rng = rng
        self.admission = Admission.open(store, genesis, limits=admission_limits)
        self._given_chain = list(admit_chain)
        self._own_log = LogId(self.node, epoch)
        self._head_confirmed = start_isolated or self._sole_node()
        self._own_seq_known = 0
        """The highest seq of this node's own log that a peer's frontier named."""
        self.sessions: dict[str, Session] = {}
        self._active_cache: tuple[Session, ...] | None = None
        self.stats = SyncStats()
        self.clock = HybridClock(_HLC_DRIFT_MAX_MS, self._own_last_hlc())
        self._dialling: dict[str, _Dialling] = {}
        self._staged = _Staged()
        self._persist_asked, self._next_req = False, 0
        self._round_due_ms: int | None = None
        self._fetching_ids: dict[bytes, int] = {}
        """Envelope ids asked of some peer, with the deadline of that request (``_NO_DEADLINE``
        while it waits in a session's queue)."""
        self._fetching_logs: dict[LogId, int] = {}
        """Logs with a range request queued or in flight, with its deadline (the same)."""
        self._out: list[Effect] = []
        self._now = 0  # the caller's clock, as the last input gave it
        self.view = PassiveView(self.mesh_id, self.node, self.limits.passive_view_max)
        self._own_record: PeerRecord | None = None
        self._shuffle_due_ms: int | None = None
        self._announced: dict[bytes, tuple[int, str]] = {}
        """Ids a peer announced (``IHave``) that we lack: when to give up waiting for their
        push, and the announcing peer, which is then asked for them."""
        self._not_before: dict[bytes, int] = {}
        """Nodes whose full view just turned us away: not dialled again before then, so a node
        pushed out by a priority join does not bounce straight back (and push out another)."""
        self._waiting_since: dict[bytes, int] = {}
        """Envelopes in admission's causal buffer -> when they started waiting."""
        self._bans: dict[bytes, tuple[int, int]] = {}
        """Node key -> (banned until, bans so far): peers that sent too many invalid
        envelopes. Refused at the handshake and not dialled until then."""
        self.last_in_sync_ms: int | None = None
        """When an anti-entropy round last ended with nothing to fetch from either side."""
        self._rotation_due_ms: int | None = None
        self.tree = PushTree(self.mesh_id, self.node)
        self._push_budget = Quota(
            self.limits.author_pushes_per_s, self.limits.author_push_burst, keys_max=1 << 14
        )
        """Per author node: envelopes peers may push (``SyncLimits.author_pushes_per_s``)."""
        self._announce_due_ms = self._confirm_due_ms = None
        self._held_up = {}
        self._beacon_due_ms: int | None = None
        """As the push tree's root: when to sign the next beacon."""
        self._members_seen: tuple[int, int] = (-1, 0)
        """(admission generation, other node members then): :meth:`_floods_own`'s count."""

    # -- the public surface -------------------------------------------------------------------

    def handle(self, event: Input, now_ms: int) -> list[Effect]:
        """Feed one input; return the effects to carry out, in order."""
        self._now = now_ms
        if isinstance(event, Received):
            self._on_bytes(event.peer, event.data)
        elif isinstance(event, Flush):
            self._flush()
        elif isinstance(event, LocalWrite):
            self._stage_local(event)
        elif isinstance(event, CancelWrite):
            self._cancel_local(event.token)
        elif isinstance(event, Timer):
            self._on_timer()
        elif isinstance(event, PeerConnected):
            self._on_connected(event.peer, event.outbound, event.nonce)
        elif isinstance(event, PeerGone):
            self._on_gone(event.peer, event.reason)
        elif isinstance(event, PeerKnown):
            self._on_known(event.peer, event.forget)
        elif isinstance(event, Advertise):
            self._advertise(event.addresses)
        else:  # pragma: no cover - the Input union is closed
            raise TypeError(f"not an input: {event!r}")
        out, self._out = self._out, []
        return out

    def begin_sync(self, peer: str, now_ms: int) -> list[Effect]:
        """Start an anti-entropy round with ``peer`` now (the timer does this with a random
        active peer every interval). Nothing happens if the session is not active or a round
        with it is already open."""
        self._now = now_ms
        session = self.sessions.get(peer)
        if session is not None and session.state is SessionState.ACTIVE:
            self._start_round(session)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> int | None:
        """The earliest time at which ``Timer`` has work to do, or None. (Asked after every
        input by a runtime or the simulator: plain loops, no lists built.)"""
        best = self._sessions_deadline()
        for dialling in self._dialling.values():
            due = dialling.due_ms
            if due is not None and due < best:
                best = due
        if self._not_before:
            best = min(best, *self._not_before.values())
        for due in (
            self._announce_due_ms,
            self._confirm_due_ms,
            # dues only grow with insertion, so the oldest entry is due first
            next(iter(self._announced.values()))[0] if self._announced else None,
            self._beacon_due_ms
            if self.tree.is_root
            else (
                self.tree.heard_ms + self.limits.root_timeout_ms
                if self.tree.root is not None
                else None
            ),
            # the oldest first (``_note_waiting``)
            next(iter(self._waiting_since.values())) + self.limits.causal_wait_max_ms
            if self._waiting_since
            else None,
        ):
            if due is not None and due < best:
                best = due
        return None if best == _NO_DEADLINE else best

    def _sessions_deadline(self) -> int:
        """The earliest deadline of the sessions and the rounds (``_NO_DEADLINE`` if none)."""
        best = _NO_DEADLINE
        if self._active():
            for due in (self._round_due_ms, self._shuffle_due_ms, self._rotation_due_ms):
                if due is not None and due < best:
                    best = due
        for session in self.sessions.values():
            due = session.deadline_ms
            if due is not None and due < best:
                best = due
            due = session.round_deadline_ms
            if due is not None and due < best:
                best = due
            if session.requests:
                for request in session.requests.values():
                    best = min(best, request.deadline_ms)
        return best

    def quiet(self) -> bool:
        """Nothing staged, asked, queued or buffered, and no handshake or round open: this node
        has nothing to send until something new happens."""
        return (
            not self._staged
            and not self._announced
            and self._announce_due_ms is None
            and self._confirm_due_ms is None
            and all(d.due_ms is None or d.refused for d in self._dialling.values())
            and not self.admission.buffered["causal"]
            and not self.admission.buffered["pending_member"]
            and all(s.state is SessionState.ACTIVE and not s.busy for s in self.sessions.values())
        )

    def frontier(self) -> list[tuple[LogId, Head]]:
        return self.admission.frontier()

    def _sole_node(self) -> bool:
        """No other node key is a member (revoked ones included: they keep their role): nobody
        else can hold an envelope of this node's log, so there is no one to ask for its head
        (the first node of a new mesh, which would otherwise never write)."""
        return all(
            key == self.node or member.role is not Role.NODE
            for key, member in self.admission.membership.state.items()
        )

    def may_write(self) -> bool:
        """Whether local writes can be committed now (DESIGN §4 rule 6): a peer has shown this
        node's own log, and this replica holds at least the seq of it peers know."""
        held = len(self.admission.logs.get(self._own_log, []))
        return self._head_confirmed and held >= self._own_seq_known

    @property
    def writes_waiting(self) -> int:
        """Local writes staged but held back (see :meth:`may_write`)."""
        return len(self._staged.local)

    @property
    def staged(self) -> int:
        """Received envelopes and local writes staged for the next ``Flush``."""
        return len(self._staged.remote) + len(self._staged.local)

    def flush_waits(self, since_last: float, window: float, last_batch: int) -> bool:
        """Whether the caller should wait the commit window before the next ``Flush`` (the
        runtime's rule, which the simulator follows; any one unit of time): only under load,
        that is when the last commit ended less than a window ago and carried more than one
        item (``last_batch``: :attr:`staged` when it began), or more than one is staged now.
        At a steady trickle, each commit over before the next update, the window would only
        add its length to every hop; once updates come faster than commits they pile up
        between them, and then the window gathers more of them into each."""
        return window > 0 and since_last < window and max(last_batch, self.staged) > 1

    def claims_digest(self) -> bytes:
        return self.admission.claims_digest()

    def behind(self) -> bool:
        """Whether a peer is known to hold something this replica lacks: a fetch is asked or
        queued, or received envelopes wait for their causal past or their author's admit."""
        buffered = self.admission.buffered
        return bool(
            self._fetching_logs
            or self._fetching_ids
            or buffered["causal"]
            or buffered["pending_member"]
            or any(s.wants or s.requests for s in self.sessions.values())
        )

    # -- connections and handshake ------------------------------------------------------------

    def _on_known(self, peer: str, forget: bool) -> None:
        if forget:
            self._dialling.pop(peer, None)
            return
        if peer not in self._dialling:
            self._dialling[peer] = _Dialling(due_ms=self._now)

    def _on_connected(self, peer: str, outbound: bool, nonce: bytes | None) -> None:
        old = self.sessions.get(peer)
        if old is not None and old.state is not SessionState.CLOSED:
            self._drop_session(old)
        if dialling := self._dialling.get(peer):
            dialling.parked = False
        if nonce is None:
            nonce = bytes(self.rng.randrange(256) for _ in range(32))
        if len(nonce) != 32:
            raise ValueError("a handshake nonce is 32 bytes")
        session = Session(
            peer=peer,
            outbound=outbound,
            state=SessionState.HELLO,
            deadline_ms=self._now + self.limits.handshake_timeout_ms,
            nonce=nonce,
        )
        self.sessions[peer] = session
        self._active_cache = None
        dialling = self._dialling.get(peer)
        if dialling is not None:
            dialling.due_ms, dialling.dialling = None, False
        chain = self.admission.admit_chain(self.node) or self._given_chain
        alone = not self._active()
        self._send(session, Hello([PROTOCOL_VERSION], self.mesh_id, self.node, nonce, chain, alone))

    def _on_gone(self, peer: str, reason: str | None) -> None:
        session = self.sessions.pop(peer, None)
        self._active_cache = None
        if session is not None and session.node is not None and reason == Reason.VIEW_FULL:
            self._not_before[session.node] = self._now + self.limits.shuffle_interval_ms
        if session is not None:
            self._end_session(session)
            # Addresses of the same node, not dialled while this session stood, dial again.
            for address in sorted(self._dialling):
                other = self._dialling[address]
                idle = other.due_ms is None and not other.dialling and not other.refused
                same = session.node is not None and other.node == session.node
                if address != peer and idle and same:
                    self._schedule_dial(other)
        dialling = self._dialling.get(peer)
        if dialling is not None:
            dialling.dialling = False
            reason = reason or dialling.refusal
            dialling.refusal = None
            if dialling.learned:
                # A learned address that never worked leaves the passive view (HyParView).
                failed = not dialling.ok and reason not in _ADDRESS_FINE
                node = dialling.node
                if failed and node is not None and all(x.node != node for x in self._active()):
                    self._lose(node)
                del self._dialling[peer]
            elif reason in _FINAL_REFUSALS:
                dialling.refused, dialling.due_ms = True, None
            elif not dialling.parked:  # a parked address was rotated out: it waits for room
                self._schedule_dial(dialling)
        self._hurry_dials_when_alone()
        self._fill_view()

    def _schedule_dial(self, dialling: _Dialling) -> None:
        """Redial after a jittered exponential backoff (full jitter over the capped window);
        the cap is ``dial_backoff_alone_max_ms`` while this node has no session."""
        window = min(
            self._backoff_cap(),
            self.limits.dial_backoff_initial_ms << min(dialling.attempts, 30),
        )
        dialling.attempts += 1
        dialling.due_ms = self._now + window // 2 + self.rng.randrange(window // 2 + 1)

    def _backoff_cap(self) -> int:
        limits = self.limits
        if self._active():
            return limits.dial_backoff_max_ms
        return min(limits.dial_backoff_max_ms, limits.dial_backoff_alone_max_ms)

    def _hurry_dials_when_alone(self) -> None:
        """A node that just lost its last session redials within ``dial_backoff_alone_max_ms``
        whatever backoff its peers earned before (a partition often ends long before a backoff
        of up to ``dial_backoff_max_ms`` does: the simulator saw a node stay cut off 17 s after
        the heal, seed 1009421)."""
        if self._active():
            return
        cap = self._backoff_cap()
        for peer in sorted(self._dialling):
            dialling = self._dialling[peer]
            due = dialling.due_ms
            if due is not None and not dialling.dialling and due > self._now + cap:
                dialling.due_ms = self._now + cap // 2 + self.rng.randrange(cap // 2 + 1)

    def _on_hello(self, session: Session, message: Hello) -> None:
        if PROTOCOL_VERSION not in message.versions:
            return self._fail(
                session, Reason.NO_COMMON_VERSION, f"peer speaks {sorted(message.versions)[:8]}"
            )
        if message.mesh != self.mesh_id:
            return self._fail(session, Reason.WRONG_MESH, f"peer is in {short_id(message.mesh)}")
        if message.node == self.node:
            return self._fail(session, Reason.SELF_CONNECTION, "this is our own node key")
        refusal = self._membership_refusal(message.node, message.chain)
        if refusal is not None:
            return self._fail(session, refusal[0], refusal[1])
        session.node, session.peer_nonce = message.node, message.nonce
        session.peer_alone = message.alone
        session.state = SessionState.AUTH
        self._active_cache = None
        ours = Transcript(
            PROTOCOL_VERSION, self.mesh_id, self.node, session.nonce, message.node, message.nonce
        )
        self._send(session, Auth(ours.sign(self.node_key)))
        return None

    def _membership_refusal(self, node: bytes, chain: list[bytes]) -> tuple[Reason, str] | None:
        """Why ``node`` may not sync with us, or None: only node keys that are members now (by
        what we know, or by the admit chain it presents) complete the handshake."""
        member = self.admission.membership.state.get(node)
        if member is not None:
            if member.role is not Role.NODE:
                return Reason.NOT_MEMBER, f"{short_id(node)} is a {member.role}, not a node"
            if member.node_cutoff is not None:
                return Reason.REVOKED, f"node {short_id(node)} was revoked"
            return None
        try:
            role = verify_admit_chain(self.admission.genesis, chain, node)
        except Rejected as exc:
            return Reason.NOT_MEMBER, f"node {short_id(node)}: {exc.detail}"
        if role is not Role.NODE:
            return Reason.NOT_MEMBER, f"{short_id(node)} is admitted as {role}, not as a node"
        return None

    def _on_auth(self, session: Session, message: Auth) -> None:
        assert session.node is not None
        theirs = Transcript(
            PROTOCOL_VERSION,
            self.mesh_id,
            session.node,
            session.peer_nonce,
            self.node,
            session.nonce,
        )
        if not theirs.verify(message.signature):
            return self._fail(session, Reason.BAD_SIGNATURE, "the handshake proof does not verify")
        dialling = self._dialling.get(session.peer)
        if dialling is not None:
            dialling.node = session.node  # so it is not redialled while another session stands
        if self._refuse_banned(session) or self._refuse_duplicate(session):
            return None
        if not self._make_room(session):
            return None
        session.state = SessionState.ACTIVE
        self._active_cache = None
        session.activated = True
        session.deadline_ms = None
        if dialling is not None:
            dialling.attempts, dialling.ok = 0, True
        if session.node is not None:
            self.view.found(session.node)
        self._notify(PeerReady(session.peer, session.node))
        if self._round_due_ms is None:
            self._round_due_ms = self._now + self.limits.anti_entropy_interval_ms
        if self._shuffle_due_ms is None:
            self._shuffle_due_ms = self._now + self.limits.shuffle_interval_ms
        if self._rotation_due_ms is None and self.limits.view_rotation_interval_ms:
            self._rotation_due_ms = self._now + self.limits.view_rotation_interval_ms
        self._start_round(session)  # a new session syncs at once
        self._tree_joined(session)
        sample = self._shuffle_sample()
        if sample:
            self._send(session, Shuffle(sample, False))
        if dialling is not None and dialling.rotation:
            dialling.rotation = False
            if len(self._active()) > self.limits.active_view_target:
                self.stats.rotations += 1
                self._evict(session, "rotated out of the active view")
        return None

    def _refuse_duplicate(self, session: Session) -> bool:
        """Two sessions with one node: both ends keep the connection dialled by the smaller
        node key, so they agree; True when that drops this one."""
        assert session.node is not None
        duplicate = next(
            (
                s
                for s in self.sessions.values()
                if s is not session and s.node == session.node and s.state is SessionState.ACTIVE
            ),
            None,
        )
        if duplicate is None:
            return False
        keep_outbound = self.node < session.node
        loser = session if session.outbound != keep_outbound else duplicate
        self._fail(loser, Reason.DUPLICATE_SESSION, "one session per pair of nodes")
        return loser is session

    def _refuse_banned(self, session: Session) -> bool:
        """Refuse (``banned``) an authenticated peer whose ban has not run out."""
        assert session.node is not None
        ban = self._bans.get(session.node)
        if ban is None or ban[0] <= self._now:
            return False
        self._fail(session, Reason.BANNED, f"banned for {(ban[0] - self._now) / 1000:.0f} s more")
        return True

    def _make_room(self, session: Session) -> bool:
        """Whether ``session`` fits in the active view: below the maximum, or by dropping a link
        of ours when the peer has no other session (HyParView's priority join). If not, it is
        refused with ``view_full``."""
        if len(self._active()) < self.limits.active_view_max:
            return True
        if not session.peer_alone:
            self.stats.view_refusals += 1
            self._fail(session, Reason.VIEW_FULL, "the active view is full")
            return False
        self.stats.priority_joins += 1
        self._evict(session, "made room for a node with no other session")
        return True

    def _on_bye(self, session: Session, message: Bye) -> None:
        session.state = SessionState.CLOSED
        self._active_cache = None
        self._end_session(session)
        self._notify(PeerRefused(session.peer, message.reason, message.detail, by_us=False))
        if message.reason == Reason.VIEW_FULL and session.node is not None:
            self._not_before[session.node] = self._now + self.limits.shuffle_interval_ms
        dialling = self._dialling.get(session.peer)
        if dialling is not None:
            dialling.refusal = message.reason
            if message.reason in _FINAL_REFUSALS:
                dialling.refused, dialling.due_ms = True, None
        self._out.append(Disconnect(session.peer, Reason.SHUTDOWN))

    def _fail(self, session: Session, reason: Reason, detail: str) -> None:
        """The one error path: say why, close, forget what the session asked."""
        if session.state is SessionState.CLOSED:
            return
        self._send(session, Bye(reason.value, detail[:200]))
        self.stats.refusals_sent[reason] = self.stats.refusals_sent.get(reason, 0) + 1
        self._drop_session(session)
        self._notify(PeerRefused(session.peer, reason.value, detail, by_us=True))
        self._out.append(Disconnect(session.peer, reason))
        dialling = self._dialling.get(session.peer)
        if dialling is not None and reason.value in _FINAL_REFUSALS:
            dialling.refused, dialling.due_ms = True, None

    def _drop_session(self, session: Session) -> None:
        session.state = SessionState.CLOSED
        self._active_cache = None
        session.deadline_ms = None  # no handshake timer for a closed session
        self._end_session(session)

    def _end_session(self, session: Session) -> None:
        """What a closing session leaves behind: its requests (released for others to ask
        again), its open round, and its place in the push tree."""
        if session.activated:
            session.activated = False
            before = self.tree.distance()
            self.tree.forget(session.peer)
            self._resettle(before)  # a lost parent is replaced by the next best peer, if any
        for request in session.requests.values():
            self._release(request.fetch)
        session.requests.clear()
        for fetch in session.wants:  # queued, not sent: released too, so others are asked
            self._release(fetch)
        session.wants.clear()
        session.awaiting_round = session.round_deadline_ms = None

    # -- dispatch: the state table ------------------------------------------------------------

    def _on_bytes(self, peer: str, data: bytes) -> None:
        session = self.sessions.get(peer)
        if session is None or session.state is SessionState.CLOSED:
            return  # late frames of a closed connection
        try:
            message = decode_message(data, frame_bytes_max=self.limits.frame_bytes_max)
        except Rejected as exc:
            return self._fail(session, exc.reason, exc.detail)
        kind = type(message).__name__
        self.stats.messages_received[kind] = self.stats.messages_received.get(kind, 0) + 1
        self.stats.bytes_received[kind] = self.stats.bytes_received.get(kind, 0) + len(data)
        handler = _TABLE.get((session.state, type(message)))
        if handler is None:
            return self._fail(
                session, Reason.UNEXPECTED_MESSAGE, f"{kind} in state {session.state.value}"
            )
        handler(self, session, message)
        return None

    # -- anti-entropy -------------------------------------------------------------------------

    def _on_timer(self) -> None:
        now = self._now
        for session in sorted(self.sessions.values(), key=lambda s: s.peer):
            if session.deadline_ms is not None and session.deadline_ms <= now:
                self._fail(session, Reason.HANDSHAKE_TIMEOUT, "handshake not completed in time")
                continue
            if session.round_deadline_ms is not None and session.round_deadline_ms <= now:
                session.awaiting_round = session.round_deadline_ms = None
            expired = sorted(r for r, f in session.requests.items() if f.deadline_ms <= now)
            for req in expired:
                self._release(session.requests.pop(req).fetch)
            if expired:
                self._pump(session)
        self._dial_timers()
        self._tree_timers()
        self._announce_timers()
        self._announced_timers()
        self._expire_waiting()
        self._fill_view()
        active = self._active()
        if self._round_due_ms is not None and self._round_due_ms <= now:
            self._round_due_ms = now + self.limits.anti_entropy_interval_ms
            # A peer whose last round is still unanswered (a lost frame holds it until the
            # round's deadline) is passed over, or the draw would skip whole rounds.
            free = [s for s in active if s.awaiting_round is None]
            if free:
                self._start_round(self.rng.choice(free))
        if self._shuffle_due_ms is not None and self._shuffle_due_ms <= now:
            self._shuffle_due_ms = now + self.limits.shuffle_interval_ms
            if active:
                self.stats.shuffles += 1
                self._send(self.rng.choice(active), Shuffle(self._shuffle_sample(), True))
        if self._rotation_due_ms is not None and self._rotation_due_ms <= now:
            self._rotation_due_ms = now + self.limits.view_rotation_interval_ms
            self._rotate()

    def _dial_timers(self) -> None:
        """Dials whose backoff is over are parked, to be dialled when the view has room; dials
        never answered count as failed."""
        for node in sorted(n for n, until in self._not_before.items() if until <= self._now):
            del self._not_before[node]
        for peer in sorted(self._dialling):
            dialling = self._dialling[peer]
            if dialling.due_ms is None or dialling.due_ms > self._now:
                continue
            if dialling.dialling:  # the dial was never answered: count it as failed
                dialling.dialling = False
                if dialling.learned:
                    if dialling.node is not None:
                        self._lose(dialling.node)
                    del self._dialling[peer]
                else:
                    self._schedule_dial(dialling)
            elif peer in self.sessions or any(
                dialling.node is not None and s.node == dialling.node
                for s in self.sessions.values()
            ):
                dialling.due_ms = None  # connected already, perhaps by the peer dialling us
            else:
                dialling.due_ms, dialling.parked = None, True

    # -- the active and passive views ---------------------------------------------------------

    def _advertise(self, addresses: tuple[str, ...]) -> None:
        self._own_record = sign_record(
            self.node_key, self.mesh_id, self.clock.tick(self._now), addresses
        )

    def _shuffle_sample(self) -> list[PeerRecord]:
        own = [self._own_record] if self._own_record is not None else []
        return own + self.view.sample(self.limits.shuffle_records_max - len(own), self.rng)

    def _on_shuffle(self, session: Session, message: Shuffle) -> None:
        active = {s.node for s in self._active()}
        self.view.merge(
            message.records,
            is_member=self._is_node_member,
            active=active.__contains__,
            rng=self.rng,
        )
        if message.reply:
            self._send(session, Shuffle(self._shuffle_sample(), False))
        self._fill_view()

    def _is_node_member(self, node: bytes) -> bool:
        member = self.admission.membership.state.get(node)
        return member is not None and member.role is Role.NODE and member.node_cutoff is None

    def _lose(self, node: bytes) -> None:
        """A learned address of ``node`` failed: its record leaves the passive view for the
        lost ones (:meth:`_dial_candidates` tries those only when nothing else is left), and
        it is not dialled again for ``dial_backoff_alone_max_ms``."""
        self.view.forget(node)
        until = self._now + self.limits.dial_backoff_alone_max_ms
        self._not_before[node] = max(self._not_before.get(node, 0), until)

    def _dial_candidates(self) -> list[tuple[str, bytes | None]]:
        """Addresses this node may dial to fill its view, sorted: configured ones parked for
        room, then the first address of every passive record of a node not connected or being
        dialled; if there are none, those of the lost records (``PassiveView.lost``). Without
        those, nodes that a partition cut off together, none of whose configured peers is on
        the other side, forgot every record of it while the partition lasted and stayed apart
        after the heal until a node of the other side happened to dial one of them (simulator
        seed 2198: 47 s)."""
        busy = {s.node for s in self.sessions.values() if s.node is not None}
        busy.update(d.node for d in self._dialling.values() if d.dialling and d.node is not None)
        busy.update(n for n, until in self._not_before.items() if until > self._now)
        found: list[tuple[str, bytes | None]] = [
            (peer, d.node)
            for peer, d in sorted(self._dialling.items())
            if d.parked and peer not in self.sessions and d.node not in busy
        ]
        if not self.limits.discover_peers:
            return found
        known = {d.node for d in self._dialling.values() if d.node is not None}
        for pool in (self.view.records, self.view.lost):
            for node, record in sorted(pool.items()):
                address = record.addresses[0]
                if node in busy or node in known or address in self._dialling:
                    continue
                if self._is_node_member(node):
                    found.append((address, node))
            if found:  # the lost records only when nothing else is left to dial
                return found
        return found

    def _fill_view(self) -> None:
        """Dial random candidates while the sessions held and the dials out stay under the
        active view's target; then a configured address parked for room that never became
        active, while they stay under the target plus one (and the maximum). A configured peer
        is the operator's link to a part of the mesh: parked for good behind a view the other
        nodes filled, it let nodes cut off together by a partition stay apart after the heal
        until a rotation (simulator seed 2198 at ``1030daa``: a handshake lost in the
        partition, the redial parked 3 s after the heal, 54 s apart). One that was active once
        waits for room, as before: its part of the mesh knows of this node already. Only one
        past the target: dialling every such address up to the maximum made the 1,000-node
        simulation's run 17 % longer (293 s against 251 s for about as many events)."""
        # Inbound handshakes do not count: a crowd of idle connections must not stop this node
        # from dialling its peers.
        held = sum(
            1
            for s in self.sessions.values()
            if s.state is SessionState.ACTIVE or (s.outbound and s.state is not SessionState.CLOSED)
        )
        out = sum(1 for d in self._dialling.values() if d.dialling)
        room = self.limits.active_view_target - held - out
        spare = min(self.limits.active_view_max, self.limits.active_view_target + 1) - held - out
        if spare <= 0:
            return
        if room <= 0 and not any(d.never_let_in for d in self._dialling.values()):
            return  # only such an address could be dialled now, and there is none
        candidates = self._dial_candidates()
        while room > 0 and candidates:
            address, node = candidates.pop(self.rng.randrange(len(candidates)))
            self._dial(address, node)
            room, spare = room - 1, spare - 1
        for address, node in candidates:
            if spare <= 0:
                break
            dialling = self._dialling.get(address)
            if dialling is not None and dialling.never_let_in:
                self._dial(address, node)
                spare -= 1

    def _dial(self, address: str, node: bytes | None, *, rotation: bool = False) -> None:
        dialling = self._dialling.get(address)
        if dialling is None:
            dialling = self._dialling[address] = _Dialling(node=node, learned=True)
        dialling.parked, dialling.dialling, dialling.rotation = False, True, rotation
        dialling.due_ms = self._now + self.limits.handshake_timeout_ms
        self._out.append(Dial(address))

    def _rotate(self) -> None:
        """With a full view, dial one more random candidate; when it is active, drop one other
        session (:meth:`_evict`), so the overlay keeps rewiring slowly."""
        held = len(self._active())
        if not self.limits.active_view_target <= held < self.limits.active_view_max:
            return
        if any(d.dialling for d in self._dialling.values()):
            return
        candidates = self._dial_candidates()
        if candidates:
            address, node = candidates[self.rng.randrange(len(candidates))]
            self._dial(address, node, rotation=True)

    def _evict(self, keep: Session, detail: str) -> None:
        """Drop one session other than ``keep``: a lazy link if there is one (the push tree does
        not need it), else any; the address waits for room instead of being redialled."""
        others = [s for s in self._active() if s is not keep]
        pool = [s for s in others if not self.tree.eager(s.peer)] or others
        if not pool:
            return
        victim = pool[self.rng.randrange(len(pool))]
        dialling = self._dialling.get(victim.peer)
        if dialling is not None and not dialling.learned:
            dialling.parked, dialling.due_ms = True, None
        self._fail(victim, Reason.VIEW_FULL, detail)

    def _active(self) -> tuple[Session, ...]:
        """Active sessions by peer handle; kept until a session opens, closes or changes state
        (each place that does resets ``_active_cache``), since it is asked for on nearly every
        input."""
        if self._active_cache is None:
            self._active_cache = tuple(
                sorted(
                    (s for s in self.sessions.values() if s.state is SessionState.ACTIVE),
                    key=lambda s: s.peer,
                )
            )
        return self._active_cache

    def _start_round(self, session: Session) -> None:
        if session.awaiting_round is not None:
            return
        session.round = (session.round + 1) & 0xFFFFFFFF
        session.awaiting_round = session.round
        session.round_deadline_ms = self._now + self.limits.request_timeout_ms
        self.stats.rounds_started += 1
        self._send_frontier(session, session.round, reply=True)
        asked = self._fetching_ids
        missing = [i for i in self.admission.missing() if not self._asked_lately(asked.get(i))]
        for start in range(0, len(missing), IDS_PER_MESSAGE_MAX):
            self._want(session, FetchIds(tuple(missing[start : start + IDS_PER_MESSAGE_MAX])))
        self._pump(session)

    def _send_frontier(self, session: Session, round_: int, *, reply: bool) -> None:
        heads = [
            HeadEntry(log.author, log.epoch, head.seq, head.id)
            for log, head in self.admission.frontier()
        ]
        forks = [ForkEntry(a, b) for _, (_, a, b) in sorted(self.admission.fork_pairs.items())]
        tips = self.admission.side_tips()
        pages = max(1, -(-max(len(heads), len(forks), len(tips)) // HEADS_PER_MESSAGE_MAX))
        for page in range(pages):
            cut = slice(page * HEADS_PER_MESSAGE_MAX, (page + 1) * HEADS_PER_MESSAGE_MAX)
            last = page == pages - 1
            frontier = Frontier(round_, heads[cut], forks[cut], last, reply, tips[cut])
            self._send(session, frontier)

    def _on_frontier(self, session: Session, message: Frontier) -> None:
        session.peer_heads.extend(message.heads)
        session.peer_forks.extend(message.forks)
        session.peer_tips.extend(message.tips)
        if max(len(session.peer_heads), len(session.peer_forks), len(session.peer_tips)) > (
            self.limits.frontier_logs_max
        ):
            return self._fail(session, Reason.FRONTIER_TOO_LARGE, "frontier names too many logs")
        if not message.last:
            return None
        heads, forks, tips = session.peer_heads, session.peer_forks, session.peer_tips
        session.peer_heads, session.peer_forks, session.peer_tips = [], [], []
        self._check_own_head(heads)
        asked = self._ask_for_what_we_lack(session, heads, forks, tips)
        if message.reply:
            if self._peer_lacks(heads, forks, tips):
                self._send_frontier(session, message.round, reply=False)
            else:
                self._send(session, NothingToSend(message.round))
        elif session.awaiting_round == message.round:
            session.awaiting_round = session.round_deadline_ms = None
            session.in_sync = not asked
            if session.in_sync:
                self.last_in_sync_ms = self._now
        return None

    def _on_nothing(self, session: Session, message: NothingToSend) -> None:
        if session.awaiting_round == message.round:
            session.awaiting_round = session.round_deadline_ms = None
            session.in_sync = not session.requests and not session.wants
            if session.in_sync:
                self.stats.rounds_in_sync += 1
                self.last_in_sync_ms = self._now

    def _ask_for_what_we_lack(
        self,
        session: Session,
        heads: list[HeadEntry],
        forks: list[ForkEntry],
        tips: list[bytes],
    ) -> bool:
        """Queue requests for what the peer's frontier names and we do not hold: the range up
        to its head of every log it is ahead on, by id every other head (the other branch of an
        equivocation), both sides of every fork and every side-branch tip. Holding an envelope
        means holding its causal past, so what we hold needs no look further down."""
        records, logs = self.admission.records, self.admission.logs
        ids: list[bytes] = []
        asked = False
        for entry in heads:
            if entry.id in records:
                continue
            log = LogId(entry.author, entry.epoch)
            held = len(logs.get(log, []))
            if entry.seq <= held:
                ids.append(entry.id)
            elif not self._asked_lately(self._fetching_logs.get(log)):
                self._want(session, FetchRange(log, held + 1, entry.seq))
                asked = True
        ids.extend(i for fork in forks for i in (fork.a, fork.b) if i not in records)
        ids.extend(i for i in tips if i not in records)
        ids = sorted({i for i in ids if not self._asked_lately(self._fetching_ids.get(i))})
        for start in range(0, len(ids), IDS_PER_MESSAGE_MAX):
            self._want(session, FetchIds(tuple(ids[start : start + IDS_PER_MESSAGE_MAX])))
            asked = True
        self._pump(session)
        return asked

    def _check_own_head(self, heads: list[HeadEntry]) -> None:
        """What a peer knows of our own log: a later seq holds our writes until sync brings it."""
        could_write = self.may_write()
        own = self._own_log
        for entry in heads:
            if (entry.author, entry.epoch) == (own.author, own.epoch):
                self._own_seq_known = max(self._own_seq_known, entry.seq)
        self._head_confirmed = True
        if not could_write and self.may_write() and self._staged.local:
            self._ask_persist()

    def _peer_lacks(
        self, heads: list[HeadEntry], forks: list[ForkEntry], tips: list[bytes]
    ) -> bool:
        """Whether the peer may lack something we hold, judged from its frontier. Where that
        cannot be told (a log whose branches we hold differently), say yes: the peer gets our
        frontier and decides, by id, whether it holds our heads."""
        theirs = {(h.author, h.epoch): (h.seq, h.id) for h in heads}
        named = {h.id for h in heads} | set(tips)
        forked = self.admission.fork_pairs
        for log, head in self.admission.frontier():
            seq, head_id = theirs.get((log.author, log.epoch), (0, b""))
            if head_id == head.id or head.id in named:
                continue
            if seq <= head.seq or log in forked:
                return True
        their_forks = {(f.a, f.b) for f in forks}
        if any((a, b) not in their_forks for _, a, b in forked.values()):
            return True
        return any(tip not in named for tip in self.admission.side_tips())

    # -- requests -----------------------------------------------------------------------------

    def _asked_lately(self, deadline: int | None, hedge_ms: int | None = None) -> bool:
        """Whether a fetch with this deadline is still queued, or was sent less than
        ``hedge_ms`` (``fetch_hedge_ms``) ago. An older one may be asked again of the peer at
        hand: the first request or its answer may be lost, and waiting out
        ``request_timeout_ms`` would hold everything that depends on it (a hedged request; the
        answer that comes second is a duplicate). One still queued is not: the node is pacing
        its own transfer. A missing dep is hedged sooner (:meth:`_dep_refetch_ms`): the peer asked
        holds it, so only a lost request or answer keeps it away longer."""
        if deadline is None:
            return False
        if deadline == _NO_DEADLINE:
            return True
        asked_at = deadline - self.limits.request_timeout_ms
        hedge = self.limits.fetch_hedge_ms if hedge_ms is None else hedge_ms
        return asked_at + hedge > self._now

    def _want(self, session: Session, fetch: FetchRange | FetchIds) -> None:
        if len(session.wants) >= self.limits.wants_max:
            self._release(session.wants.popleft())  # the next round asks again
        session.wants.append(fetch)
        # Queued, not sent: no deadline yet, and never hedged (``_asked_lately``) while queued.
        if isinstance(fetch, FetchRange):
            self._fetching_logs[fetch.log] = _NO_DEADLINE
        else:
            self._fetching_ids.update(dict.fromkeys(fetch.ids, _NO_DEADLINE))

    def _release(self, fetch: FetchRange | FetchIds) -> None:
        if isinstance(fetch, FetchRange):
            self._fetching_logs.pop(fetch.log, None)
        else:
            for i in fetch.ids:
                self._fetching_ids.pop(i, None)

    def _pump(self, session: Session) -> None:
        """Send queued requests while fewer than the limit are in flight and what was received
        but not yet flushed stays under its bound."""
        while (
            session.wants
            and len(session.requests) < self.limits.requests_in_flight_max
            and self._staged.remote_bytes < self.limits.staged_bytes_max
        ):
            fetch = session.wants.popleft()
            self._next_req = self._next_req % 0xFFFFFFFE + 1
            req = self._next_req
            deadline = self._now + self.limits.request_timeout_ms
            session.requests[req] = InFlight(fetch, deadline)
            if isinstance(fetch, FetchRange):
                log = fetch.log
                if log in self._fetching_logs:
                    self._fetching_logs[log] = deadline
                self._send(
                    session, GetRange(req, log.author, log.epoch, fetch.start_seq, fetch.end_seq)
                )
            else:
                fetching = self._fetching_ids
                fetching.update((i, deadline) for i in fetch.ids if i in fetching)
                self._send(session, GetIds(req, list(fetch.ids)))

    def _on_get_range(self, session: Session, message: GetRange) -> None:
        log = LogId(message.author, message.epoch)
        ids = self.admission.logs.get(log, [])
        end = min(message.end_seq, len(ids))
        wanted = (ids[seq - 1] for seq in range(message.start_seq, end + 1))
        sent: list[bytes] = []
        items, complete = self._page(wanted, 0, sent)
        self._send(session, Envelopes(message.req, items, not complete), sent)

    def _on_get_ids(self, session: Session, message: GetIds) -> None:
        held = (i for i in message.ids if i in self.admission.records)
        sent: list[bytes] = []
        items, complete = self._page(held, 0, sent)
        self._send(session, Envelopes(message.req, items, not complete), sent)

    def _page(
        self, ids: Iterable[bytes], reserve: int = 0, sent: list[bytes] | None = None
    ) -> tuple[list[bytes], bool]:
        """Envelopes' bytes in order until the next would overflow one frame, less ``reserve``
        bytes for the rest of the message; the ids of those taken are appended to ``sent``."""
        room = self.limits.frame_bytes_max - _MESSAGE_OVERHEAD_BYTES - reserve
        items: list[bytes] = []
        records = self.admission.records
        for env_id in ids:
            size = records[env_id].envelope.size
            if size + _ITEM_OVERHEAD_BYTES > room:
                return items, False
            try:
                raw = self.admission.envelope_bytes(env_id)
            except StorageError as exc:
                # Skipped, not served: the peer asks again (another peer, or anti-entropy) and
                # the damage is for the next start's scrub. Never a damaged envelope served.
                self.stats.store_read_errors += 1
                self.stats.last_store_read_error = f"{short_id(env_id)}: {exc}"
                continue
            room -= size + _ITEM_OVERHEAD_BYTES
            items.append(raw)
            if sent is not None:
                sent.append(env_id)
        return items, True

    def _on_envelopes(self, session: Session, message: Envelopes) -> None:
        items = message.items
        answered = False
        if message.req:
            request = session.requests.pop(message.req, None)
            if request is not None:
                answered = True
                session.note_rtt(self._now - (request.deadline_ms - self.limits.request_timeout_ms))
                self._release(request.fetch)
                self._continue(session, request.fetch, message)
        if not answered and self._push_budget.enabled:  # a push (or a made-up answer)
            items = self._within_budget(session, items)
        covered = () if message.req else message.covered  # only a push says who has it
        size_max = self.admission.limits.envelope.envelope_bytes_max
        arrived = [
            (session.peer, raw, covered, envelope_id(raw) if len(raw) <= size_max else None)
            for raw in items
        ]
        self._staged.remote.extend(arrived)
        self._staged.remote_ids.update(i for *_, i in arrived if i is not None)
        self._staged.remote_bytes += sum(len(raw) for raw in items)
        self.stats.envelopes_received += len(items)
        if items:
            self._ask_persist()
        if not answered:
            if message.items and not message.covered:
                self._refuse_stray_push(session)
            if message.confirms and len(items) == len(message.items):
                self._fetch_lost_push(session, message.confirms)
        self._pump(session)

    def _refuse_stray_push(self, session: Session) -> None:
        """A push from a peer that is neither this node's parent nor its child: the peer
        still counts this node as its child (the ``Prune`` that said otherwise was lost), or
        is flooding (it has no tree yet). Tell it with a ``Prune``, at most once per beacon
        seq, so it stops: pushed on that stale link, every envelope reaches this node's part
        of the tree first the long way round (up from here, then down again), and while the
        peer counts this node as a child it cannot take this node as its parent. Not for a
        writer's pushes that name who got them (``covered``): those go to every peer."""
        tree = self.tree
        if not tree.settled or tree.eager(session.peer) or session.pruned_seq == tree.seq:
            return
        session.pruned_seq = tree.seq
        self.stats.stray_pushes += 1
        self._send_to(session.peer, Prune())

    def _fetch_lost_push(self, session: Session, confirms: tuple[bytes, ...]) -> None:
        """Ask a tree neighbour at once for what it says it pushed here and never came.

        The link delivers in order, so an envelope a push confirms that is neither held nor
        received nor asked for was in a push that was lost. Fetched from the sender, it still
        arrives from its place in the tree, and this node's subtree gets it from here;
        otherwise the subtree gets it the long way round, through whichever of its nodes an
        announcement reached first, ``ihave_wait_ms`` later (at 1,000 simulated nodes with 1 %
        loss, that detour was the tail of the hop counts). Only on a tree link of a settled
        tree: while every link is eager (flooding) other copies are on their way anyway. Not
        after a throttled push (the caller's check): the budget holds that author back."""
        if not (self.tree.settled and self.tree.eager(session.peer)):
            return
        admission, fetching = self.admission, self._fetching_ids
        lost = [i for i in confirms if i not in fetching and not admission.holds(i)]
        if not lost:
            return
        staged = self._staged_ids()
        lost = [i for i in dict.fromkeys(lost) if i not in staged]
        if not lost:
            return
        self.stats.lost_pushes += len(lost)
        for env_id in lost:
            self._announced.pop(env_id, None)
        self._want(session, FetchIds(tuple(lost)))

    def _staged_ids(self) -> set[bytes]:
        """Ids of the received envelopes waiting for the next commit (the index's own set:
        do not change it)."""
        return self._staged.remote_ids

    def _within_budget(self, session: Session, items: list[bytes]) -> list[bytes]:
        """What of a push fits its authors' push budgets, in order. Only envelopes whose
        author field names a node member are counted (the rest go to admission, which rejects
        them and may ban the sender), so the budgets are bounded by the membership."""
        authors = [envelope_author(raw) for raw in items]
        counts: dict[bytes, int] = {}
        for author in authors:
            if author is not None and self._is_node_member(author):
                counts[author] = counts.get(author, 0) + 1
        if not counts:
            return items
        now_s = self._now / 1000
        taken = {a: self._push_budget.take_up_to(a, n, now_s) for a, n in sorted(counts.items())}
        room = dict(taken)
        kept: list[bytes] = []
        for raw, author in zip(items, authors, strict=True):
            if author is not None and author in room:
                if not room[author]:
                    continue
                room[author] -= 1
            kept.append(raw)
        for author, count in sorted(counts.items()):
            if taken[author] < count:
                self.stats.pushes_throttled += count - taken[author]
                self._notify(Throttled(session.peer, author, count - taken[author]))
        return kept

    def _continue(self, session: Session, fetch: FetchRange | FetchIds, message: Envelopes) -> None:
        """Pull the next page of a cut answer."""
        if not message.more or not message.items:
            return
        if isinstance(fetch, FetchRange):
            start = fetch.start_seq + len(message.items)
            if start <= fetch.end_seq:
                self._want(session, FetchRange(fetch.log, start, fetch.end_seq))
        else:
            got = {envelope_id(raw) for raw in message.items}
            rest = tuple(i for i in fetch.ids if i not in got)
            if rest:
                self._want(session, FetchIds(rest))

    # -- local writes, persist and flush ------------------------------------------------------

    def _stage_local(self, write: LocalWrite) -> None:
        if not write.claims:
            self._notify(WriteFailed(write.token, "LocalError", "a write needs at least a claim"))
            return
        if self._refused_as_forked([write.token]):
            return
        count, size = len(write.claims), self._write_bytes(write)
        if count > self._local_claims_max or size > self._local_bytes_max:
            detail = (
                f"a write of {count} claims taking {size} bytes of an envelope's update; one "
                f"envelope carries at most {self._local_claims_max} claims in "
                f"{self._local_bytes_max} bytes: split the write"
            )
            self._notify(WriteFailed(write.token, "TooLarge", detail))
            return
        self._staged.local.append(write)
        self._ask_persist()

    def _refused_as_forked(self, tokens: Sequence[int]) -> bool:
        """Refuse these writes at once (``OwnLogForked``) when this node's own log equivocates:
        another process wrote with its key (a restored backup, a cloned disk), so the log is
        excluded from the fork on everywhere and anything written to it would be excluded
        too. Without this the write waited for a seq its peers already know, until it timed
        out."""
        refusal = self.admission.forked_log_refusal(self._own_log)
        if refusal is None:
            return False
        for token in tokens:
            self._notify(WriteFailed(token, "OwnLogForked", refusal))
        return True

    def _cancel_local(self, token: int) -> None:
        kept = [w for w in self._staged.local if w.token != token]
        if len(kept) != len(self._staged.local):
            self._staged.local = kept
            self._notify(WriteFailed(token, "Cancelled", "withdrawn before it was committed"))

    def _ask_persist(self) -> None:
        if not self._persist_asked:
            self._persist_asked = True
            self._out.append(Persist())

    def _flush(self) -> None:
        self._persist_asked = False
        staged = self._staged
        cut = self.limits.flush_envelopes_max
        remote, rest = staged.remote[:cut], staged.remote[cut:]
        if staged.local and self._refused_as_forked([w.token for w in staged.local]):
            staged.local = []  # staged before the fork was known
        local = staged.local if self.may_write() else []
        groups = list(self._local_groups(local))
        now = groups[: self.limits.flush_local_envelopes_max]
        later = [write for group in groups[len(now) :] for write in group]
        self._staged = _Staged(
            remote=rest,
            local=later if local else staged.local,
            remote_bytes=sum(len(raw) for _, raw, _, _ in rest),
            remote_ids={env_id for *_, env_id in rest if env_id is not None},
        )
        evidence_before = set(self.admission.evidence)
        new: list[_New] = []
        if remote:
            new.extend(self._admit_remote(remote))
        for writes in now:
            new.extend(self._write_local(writes))
        if self._staged.remote or (self._staged.local and self.may_write()):
            self._ask_persist()  # what this flush left for the next one
        fresh = sorted(set(self.admission.evidence) - evidence_before)
        if fresh:
            self._notify(EvidenceFound(tuple(fresh)))
        if new:
            self._push(new)
            self._drop_revoked()
        for session in self._active():  # requests held back while the staged bytes were high
            self._pump(session)

    def _drop_revoked(self) -> None:
        """Close the sessions of peers that what was just integrated revoked (or demoted from
        node): only members sync. A peer let in by its admit chain, unknown here, stays.
        Skipped when neither the membership (the admission generation counts its changes) nor
        the active sessions changed since the last check: it runs after every flush."""
        generation, active = self.admission.generation, self._active()
        seen_generation, seen_active = self._revoked_seen
        if generation == seen_generation and active is seen_active:
            return
        self._revoked_seen = (generation, active)
        state = self.admission.membership.state
        for session in active:
            member = state.get(session.node) if session.node is not None else None
            if member is not None and (member.role is not Role.NODE or member.node_cutoff):
                self._fail(session, Reason.REVOKED, "this node's membership was revoked")

    def _admit_remote(self, staged: list[_StagedRemote]) -> list[_New]:
        try:
            outcomes = self.admission.receive_many(
                [raw for _, raw, _, _ in staged], ids=[env_id for *_, env_id in staged]
            )
        except StorageError:
            # Nothing of the batch was stored; sync fetches those envelopes again.
            return []
        self.stats.commits += 1
        new: list[_New] = []
        invalid: list[str] = []
        missing_by_peer: dict[str, set[bytes]] = {}
        for (peer, _, covered, _), outcome in zip(staged, outcomes, strict=True):
            if outcome.status is Status.DUPLICATE:
                self.stats.duplicates += 1
            elif outcome.status is Status.REJECTED:
                self._rejected(peer, outcome)
                if outcome.reason not in _NOT_THE_SENDERS_FAULT:
                    invalid.append(peer)
            elif outcome.status is Status.WAITING_CAUSAL:
                missing_by_peer.setdefault(peer, set()).update(outcome.missing)
                if outcome.envelope_id is not None:
                    self._note_waiting(outcome.envelope_id)
            for late in outcome.released_rejected:  # waited for its past, then refused
                self._rejected(peer, late)
            if outcome.admitted:
                new += self._integrated(peer, outcome.admitted, covered)
        for peer in invalid:
            self._count_invalid(peer)
        self._ask_missing(missing_by_peer)
        return new

    def _integrated(
        self, peer: str, admitted: tuple[bytes, ...], covered: tuple[bytes, ...]
    ) -> list[_New]:
        """What a peer's envelope brought in (itself, with the nodes its push said have it,
        and what it released): clock and notices."""
        for env_id in admitted:
            self._waiting_since.pop(env_id, None)
            self.clock.observe(self.admission.records[env_id].envelope.hlc, self._now)
        self._notify(Integrated(peer, admitted))
        return [(peer, env_id, covered if i == 0 else ()) for i, env_id in enumerate(admitted)]

    def _rejected(self, peer: str, outcome: Outcome) -> None:
        """Count and report a rejection (``peer``: the session whose envelope this call
        admitted; for a released one, the envelope that released it)."""
        assert outcome.reason is not None
        self.stats.rejected[outcome.reason] = self.stats.rejected.get(outcome.reason, 0) + 1
        self._notify(RejectedEnvelope(peer, outcome.envelope_id, outcome.reason, outcome.detail))

    def _local_groups(self, writes: list[LocalWrite]) -> Iterable[list[LocalWrite]]:
        """Writes in order, in envelopes that stay within the envelope limits: at most
        ``local_claims_per_envelope_max`` claims, and claims whose update fits the largest
        payload an envelope carries. Writes are never split: each was checked to fit alone
        when it was staged. Packing by count alone put 64 concurrent writes of 50 KB into one
        envelope of 3 MB, which ``seal`` refused, and every one of those writes failed."""
        group: list[LocalWrite] = []
        count = size = 0
        for write in writes:
            more, grown = len(write.claims), self._write_bytes(write)
            if group and (
                count + more > self._local_claims_max or size + grown > self._local_bytes_max
            ):
                yield group
                group, count, size = [], 0, 0
            group.append(write)
            count += more
            size += grown
        if group:
            yield group

    @functools.cached_property
    def _own_client(self) -> int:
        """This node's Yjs client id in its own log."""
        return client_id(self.node, self.epoch)

    @functools.cached_property
    def _local_claims_max(self) -> int:
        """The most claims one envelope of this node's carries."""
        return min(self.limits.local_claims_per_envelope_max, ITEMS_MAX)

    @functools.cached_property
    def _local_bytes_max(self) -> int:
        """The most bytes its claims take in the update of one envelope of this node's: the
        largest payload, less the update's frame."""
        frame = update_frame_bytes_max(self._own_client, self._local_claims_max)
        return payload_bytes_max(self.admission.limits.envelope) - frame

    def _write_bytes(self, write: LocalWrite) -> int:
        """The bytes a write's claims take in an update of this node's log."""
        client = self._own_client
        return sum(update_item_bytes(client, len(claim.raw)) for claim in write.claims)

    def _write_local(self, writes: list[LocalWrite]) -> list[_New]:
        claims: list[Claim] = [c for w in writes for c in w.claims]
        try:
            env = self.admission.write_local(
                self.node_key, claims, hlc=self.clock.tick(self._now), epoch=self.epoch
            )
        except (LocalError, Rejected, ValueError) as exc:
            kind = "NotAMember" if isinstance(exc, NotAMember) else type(exc).__name__
            for write in writes:
                self._notify(WriteFailed(write.token, kind, str(exc)))
            return []
        self.stats.commits += 1
        for write in writes:
            self._notify(
                WriteAcked(write.token, env.id, env.seq, tuple(c.id for c in write.claims))
            )
        self._notify(Integrated("", (env.id,)))
        return [("", env.id, ())]

    def _ask_missing(self, missing_by_peer: dict[str, set[bytes]]) -> None:
        """Ask each peer for what its envelopes are waiting on: the deps nobody here holds,
        found below the deps that wait in the causal buffer themselves (asking for those
        would only fetch them again). A dep asked for longer ago than the peer takes to answer
        (:meth:`_dep_refetch_ms`) and still missing is asked again: its request or answer was
        lost, and everything newer waits."""
        asked: set[bytes] = set()
        for peer in sorted(missing_by_peer):
            session = self.sessions.get(peer)
            if session is None or session.state is not SessionState.ACTIVE:
                continue
            refetch_ms = self._dep_refetch_ms(session)
            ids = [
                i
                for i in self.admission.missing_below(missing_by_peer[peer])
                if i not in asked and not self._asked_lately(self._fetching_ids.get(i), refetch_ms)
            ]
            asked.update(ids)
            for start in range(0, len(ids), IDS_PER_MESSAGE_MAX):
                self._want(session, FetchIds(tuple(ids[start : start + IDS_PER_MESSAGE_MAX])))
            self._pump(session)

    def _dep_refetch_ms(self, session: Session) -> int:
        """How long a dep asked for may stay missing before it is asked of ``session`` again:
        the peer's retransmission timeout once it has answered a request, kept within
        [``dep_refetch_min_ms``, ``dep_refetch_ms``]. At 1,000 simulated nodes with 1 % loss,
        the fixed 500 ms was the tail of the hop counts: every envelope after a lost fetch
        waited that long at a node near the root, and so did its whole subtree."""
        limits = self.limits
        rto = session.rto_ms
        if rto is None:
            return limits.dep_refetch_ms
        return min(max(rto, limits.dep_refetch_min_ms), limits.dep_refetch_ms)

    def _note_waiting(self, env_id: bytes) -> None:
        """``env_id`` waits for its causal past from now on. Never earlier than the last entry
        (the caller's clock may step back), so the first entry is always the oldest."""
        waiting = self._waiting_since
        if env_id not in waiting:
            last = next(reversed(waiting.values())) if waiting else self._now
            waiting[env_id] = max(self._now, last)

    def _expire_waiting(self) -> None:
        """Give up on envelopes whose causal past nobody supplied in ``causal_wait_max_ms``:
        drop them from the buffer, which stops the fetches for that past."""
        due = self._now - self.limits.causal_wait_max_ms
        expired: list[bytes] = []
        for env_id, since in self._waiting_since.items():  # oldest first
            if since > due:
                break
            expired.append(env_id)
        if not expired:
            return
        expired.sort()
        for env_id in expired:
            del self._waiting_since[env_id]
        dropped = self.admission.drop_waiting(expired)
        self.stats.waiting_dropped += len(dropped)

    def _count_invalid(self, peer: str) -> None:
        """One more rejected envelope from ``peer``; past the limit, disconnect and ban it."""
        session = self.sessions.get(peer)
        if session is None or session.state is not SessionState.ACTIVE or session.node is None:
            return
        session.invalid += 1
        if session.invalid <= self.limits.invalid_envelopes_max:
            return
        _, bans = self._bans.get(session.node, (0, 0))
        length = min(self.limits.ban_initial_ms << min(bans, 30), self.limits.ban_max_ms)
        until = self._now + length
        self._bans[session.node] = (until, bans + 1)
        self._not_before[session.node] = max(self._not_before.get(session.node, 0), until)
        self.stats.bans += 1
        self._fail(
            session,
            Reason.TOO_MANY_INVALID,
            f"{session.invalid} invalid envelopes; banned for {length // 1000} s",
        )

    # -- the push tree (memmesh.core.tree) -----------------------------------------------------

    def _tree_joined(self, session: Session) -> None:
        """A new active session: tell it where this node stands in the tree, and claim the
        root if this node may now."""
        tree = self.tree
        if tree.root is not None and tree.distance() is not None:
            self._send(session, self._beacon_of(tree.advertised()))
        self._tree_timers()

    def _beacon_of(self, hops: int) -> Beacon:
        tree = self.tree
        assert tree.root is not None
        return Beacon(tree.root, tree.seq, hops, tree.signature)

    def _may_claim(self) -> bool:
        """No better root is known, no active peer ranks lower (so only local minima beacon),
        and this node is a node member with at least one peer."""
        tree = self.tree
        active = self._active()
        return (
            bool(active)
            and (tree.is_root or tree.outranks(self.node, tree.root))
            and not any(s.node is not None and tree.outranks(s.node, self.node) for s in active)
            and self._is_node_member(self.node)
        )

    def _tree_timers(self) -> None:
        tree, now = self.tree, self._now
        if tree.is_root:
            if not self._may_claim():
                # A lower-ranked peer arrived (or this node was revoked): stop and let it claim.
                tree.lose_root()
                self._beacon_due_ms = None
            elif self._beacon_due_ms is not None and self._beacon_due_ms <= now:
                self._beacon()
        elif tree.root is not None and tree.heard_ms + self.limits.root_timeout_ms <= now:
            old = tree.parent
            tree.lose_root()
            self._left_parent(old)
        if tree.root is None and self._may_claim():
            self._beacon()

    def _beacon(self) -> None:
        self.tree.claim(self.node_key, self._now)
        self._beacon_due_ms = self._now + self.limits.beacon_interval_ms
        self.stats.beacons_sent += 1
        for session in self._active():
            self._send(session, self._beacon_of(0))

    def _beacon_news(self, message: Beacon) -> bool | None:
        """True for a beacon to check and adopt (a new seq of the root followed, or a better
        root), False for a copy of the seq held (only the sender's distance is news), None
        for one to ignore."""
        tree = self.tree
        if message.root == self.node:
            return None
        if message.root != tree.root:
            return True if tree.outranks(message.root, tree.root) else None  # worse: ignored
        if message.seq > tree.seq:
            return True
        if message.seq == tree.seq and message.signature == tree.signature:
            return False
        return None  # stale, or another signature over a seq already held

    def _on_beacon(self, session: Session, message: Beacon) -> None:
        tree = self.tree
        fresh = self._beacon_news(message)
        if fresh is None:
            return
        before = tree.distance()
        if fresh:
            if not self._is_node_member(message.root) or not tree.verify(
                message.root, message.seq, message.signature
            ):
                self.stats.beacons_refused += 1
                return
            if tree.is_root:
                self._beacon_due_ms = None
            old = tree.parent
            tree.adopt(message.root, message.seq, message.signature, self._now)
            if tree.parent is None:
                self._left_parent(old)  # a new root: the tree starts over
        tree.report(session.peer, message.hops)
        if not fresh:
            self._resettle(before)
            return
        parent = tree.parent
        self._reparent()
        if parent is not None and tree.parent == parent:
            # Tell the parent again that this is its child: a lost Graft (or a parent that
            # restarted) would otherwise leave this node's subtree out of every push for good,
            # reached only by the long way round or by repairs. One small message per seq.
            self.stats.grafts += 1
            self._send_to(parent, Graft())
        after = tree.distance()
        if after is not None:  # pass the new seq on, with this node's distance
            for other in self._active():
                if other is not session:
                    self._send(other, self._beacon_of(after))

    def _resettle(self, before: int | None) -> None:
        """After a change to what this node knows of its peers (a distance, a child, a lost
        session): follow the best parent, and if that moved this node's own distance from
        ``before``, tell every peer at once (a triggered update; 255 when it has no path left,
        which moves its children elsewhere)."""
        self._reparent()
        if self.tree.root is None or self.tree.distance() == before:
            return
        beacon = self._beacon_of(self.tree.advertised())
        for session in self._active():
            self._send(session, beacon)

    def _reparent(self) -> None:
        """Follow the best parent (:meth:`PushTree.best_parent`; the current one keeps ties),
        and tell the old parent and the new."""
        tree = self.tree
        if tree.root is None or tree.is_root:
            return
        active = [(s.peer, s.node) for s in self._active() if s.node is not None]
        best = tree.best_parent(active)
        current = tree.parent
        if best == current:
            return
        tree.follow(best)
        if best is not None:
            self.stats.grafts += 1
            self._send_to(best, Graft())
        self._left_parent(current)

    def _left_parent(self, peer: str | None) -> None:
        """Tell a parent this node left that it is no longer its child, and how far this node
        now is from the root (it may become that peer's parent in turn)."""
        tree = self.tree
        if peer is None or peer == tree.parent:
            return
        # The distance first: the old parent reconsiders its own parent when this Prune comes,
        # and must not pick this node on a distance from before the change.
        if tree.root is not None and not tree.is_root:
            self._send_to(peer, self._beacon_of(tree.advertised()))
        if self._send_to(peer, Prune()):
            self.stats.prunes += 1

    def _send_to(self, peer: str, message: Message) -> bool:
        session = self.sessions.get(peer)
        if session is None or session.state is not SessionState.ACTIVE:
            return False
        self._send(session, message)
        return True

    def _on_ihave(self, session: Session, message: IHave) -> None:
        # Never earlier than the last one (the caller's clock may step back), so the oldest
        # entry of ``_announced`` is always the first due (``next_deadline``).
        last = next(reversed(self._announced.values()))[0] if self._announced else 0
        due = max(self._now + self.limits.ihave_wait_ms, last)
        records = self.admission.records
        if self._held_up and self.tree.settled and session.peer in self.tree.children:
            # A child announces what the writer's push covered it for: the writer is below
            # this node, which holds it back from its parent, so it goes up now.
            self._pass_up_held(message.ids)
        for env_id in message.ids:
            if env_id in records or env_id in self._announced or env_id in self._fetching_ids:
                continue
            if len(self._announced) >= self.limits.announced_ids_max:
                break
            self._announced[env_id] = (due, session.peer)

    def _announced_timers(self) -> None:
        """Announced ids still missing after their wait: ask the announcing peer for them (the
        push tree has a hole, which beacons repair). An id whose envelope has arrived and waits
        for the next commit is no hole: it waits another ``ihave_wait_ms`` (a node behind on
        its commits would otherwise fetch again what it already received)."""
        expired: dict[str, list[bytes]] = {}
        staged: set[bytes] | None = None
        for env_id in sorted(self._announced):
            due, peer = self._announced[env_id]
            if env_id in self.admission.records:
                del self._announced[env_id]
            elif due <= self._now:
                del self._announced[env_id]
                if staged is None:
                    staged = self._staged_ids()
                if env_id in staged:
                    # Last in, and due no earlier than any other entry: dues still grow with
                    # insertion (``_on_ihave``, ``next_deadline``).
                    last = next(reversed(self._announced.values()))[0] if self._announced else 0
                    self._announced[env_id] = (
                        max(self._now + self.limits.ihave_wait_ms, last),
                        peer,
                    )
                    continue
                expired.setdefault(peer, []).append(env_id)
        for peer in sorted(expired):
            session = self.sessions.get(peer)
            if session is None or session.state is not SessionState.ACTIVE:
                continue  # gone: anti-entropy with the others finds it
            ids = [i for i in expired[peer] if i not in self._fetching_ids]
            for start in range(0, len(ids), IDS_PER_MESSAGE_MAX):
                self._want(session, FetchIds(tuple(ids[start : start + IDS_PER_MESSAGE_MAX])))
            self._pump(session)

    def _announce(self, session: Session) -> None:
        """Send ``session`` the ids waiting for it (``IHave``, paged)."""
        ids, session.announce = session.announce, []
        for start in range(0, len(ids), IDS_PER_MESSAGE_MAX):
            self._send(session, IHave(ids[start : start + IDS_PER_MESSAGE_MAX]))

    def _announce_timers(self) -> None:
        """Announcements gathered for ``ihave_batch_ms``, and confirmations no push has carried
        for ``confirm_wait_ms`` (:meth:`_confirm`). Two timers: a confirmation due does not
        send the announcements early, which would undo their batching."""
        now = self._now
        if self._announce_due_ms is not None and self._announce_due_ms <= now:
            self._announce_due_ms = None
            for session in self._active():
                if session.announce:
                    self._announce(session)
        if self._confirm_due_ms is not None and self._confirm_due_ms <= now:
            later: int | None = None
            for session in self._active():
                due = session.confirm_due_ms
                if due is None:
                    continue
                if due <= now:
                    self._confirm(session)
                elif later is None or due < later:
                    later = due
            self._confirm_due_ms = later

    def _confirm(self, session: Session) -> None:
        """Confirm the last push to ``session`` in a push of its own, without envelopes: no
        push followed it within ``confirm_wait_ms``. On a link that carries few pushes (a
        child's link to its parent carries only what its subtree writes) a lost push would
        otherwise be noticed by nobody, and the rest of the mesh would get the envelope the
        long way round."""
        ids, session.pushed, session.confirm_due_ms = session.pushed, [], None
        if ids and self.tree.settled and self.tree.eager(session.peer):
            self.stats.confirmations_alone += 1
            self._send(session, Envelopes(0, [], False, (), tuple(ids)), [])

    def _on_prune(self, session: Session, message: Prune) -> None:
        before = self.tree.distance()
        self.tree.prune(session.peer)
        self._resettle(before)  # a former child may be a path to the root now

    def _on_graft(self, session: Session, message: Graft) -> None:
        self.tree.graft(session.peer)

    def _push(self, new: Sequence[_New]) -> None:
        """Push what is new, so that each node receives each envelope about once:

        - this node's own new envelopes, when its active peers are at least half of the other
          node members (:meth:`_floods_own`), go to every active peer, saying who got them
          (``Envelopes.covered``): one hop to most of a small mesh, where the tree alone would
          take them up to the root and down again;
        - the rest go along the tree: every eager session gets what it did not bring and what
          the push that brought it does not say its node has, paged by frame, with the same
          ``covered``; every other session gets the ids (``IHave``), so a hole in the tree is
          noticed and grafted within ``ihave_wait_ms`` instead of at the next anti-entropy
          round. A covered node gets the ids only on a tree link (in case the writer's push
          to it was lost), and nothing on another."""
        active = self._active()
        own = [env_id for peer, env_id, _ in new if not peer] if self._floods_own(active) else []
        cover = self._cover(active) if own else ()
        tree = self.tree
        for session in active:
            pushes = [(own, cover)] if own else []
            prefix = (session.node or b"")[:COVER_PREFIX_BYTES]
            eager = tree.eager(session.peer)
            up = session.peer == tree.parent and tree.settled
            passed: dict[tuple[bytes, ...], list[bytes]] = {}
            announce: list[bytes] = []
            for peer, env_id, covered in new:
                if peer == session.peer or (not peer and own):
                    continue
                if prefix in covered:
                    # It has it, unless that push was lost: a tree neighbour says so (IHave),
                    # where the tree would have pushed it, so the loss costs an announcement's
                    # wait, not an anti-entropy round.
                    if eager:
                        announce.append(env_id)
                elif up and covered and peer and peer not in tree.children:
                    # A writer's own push that came from outside this node's subtree: the
                    # parent gets it along the tree from the writer's side (up from the
                    # writer, or down from above), not once from each child the writer
                    # reached. Announced, in case that path lost it, and held back: if
                    # the writer is below after all (the tree is changing), a child
                    # announces it (this node is covered), and then it goes up
                    # (:meth:`_pass_up_held`).
                    announce.append(env_id)
                    self._hold_up(env_id, covered)
                elif eager:
                    passed.setdefault(covered, []).append(env_id)
                else:
                    announce.append(env_id)
            if announce:
                self._queue_announce(session, announce)
            pushes.extend((ids, covered) for covered, ids in passed.items())
            if pushes:
                self.stats.pushes += 1
            for ids, covered in pushes:
                self._push_page(session, ids, covered)

    def _hold_up(self, env_id: bytes, covered: tuple[bytes, ...]) -> None:
        held = self._held_up
        if len(held) >= _HELD_UP_MAX:
            del held[next(iter(held))]  # the oldest: by now its copy would have come
        held[env_id] = covered

    def _pass_up_held(self, from_children: Iterable[bytes]) -> None:
        """Envelopes held back from the parent (:meth:`_push`) that a child then announced:
        the writer is below this node after all, which is on the way up, so they go up now.
        (A child announces rather than pushes them: the writer's push named this node.)"""
        tree = self.tree
        parent = self.sessions.get(tree.parent) if tree.parent is not None else None
        if parent is None or parent.state is not SessionState.ACTIVE:
            return
        by_cover: dict[tuple[bytes, ...], list[bytes]] = {}
        for env_id in from_children:
            covered = self._held_up.pop(env_id, None)
            if covered is not None:
                by_cover.setdefault(covered, []).append(env_id)
        for covered, ids in by_cover.items():
            self.stats.pushes += 1
            self._push_page(parent, ids, covered)

    def _queue_announce(self, session: Session, ids: list[bytes]) -> None:
        """Announce ``ids`` to ``session`` with what else comes within ``ihave_batch_ms``."""
        batch_ms = self.limits.ihave_batch_ms
        session.announce.extend(ids)
        if not batch_ms or len(session.announce) >= IDS_PER_MESSAGE_MAX:
            self._announce(session)
        elif self._announce_due_ms is None:
            self._announce_due_ms = self._now + batch_ms

    def _floods_own(self, active: Sequence[Session]) -> bool:
        """Whether this node's own envelopes go to every active peer: when those peers are at
        least half of the other node members. Then at least half the mesh has them after one
        hop; what the push costs is an announcement to the parent of each of those peers that
        is not on the writer's side of the tree (only the writer's side passes it up:
        :meth:`_push`). In a large mesh the neighbourhood is a small part of it: one hop less
        for a handful of nodes is not worth it, and the tree alone carries the envelopes."""
        generation = self.admission.generation
        if self._members_seen[0] != generation:
            state = self.admission.membership.state
            others = sum(1 for key in state if key != self.node and self._is_node_member(key))
            self._members_seen = (generation, others)
        return bool(active) and 2 * len(active) >= self._members_seen[1]

    def _cover(self, active: Sequence[Session]) -> tuple[bytes, ...]:
        """Who a push to every active session reaches, this node included (sorted: the same
        bytes for the same sessions)."""
        prefixes = {self.node[:COVER_PREFIX_BYTES]}
        prefixes.update(s.node[:COVER_PREFIX_BYTES] for s in active if s.node is not None)
        return tuple(sorted(prefixes))[:COVERED_MAX]

    def _push_page(self, session: Session, ids: list[bytes], covered: tuple[bytes, ...]) -> None:
        """Send ``ids`` to ``session`` as eager pushes, paged by frame, each confirming the
        push before it on the link (``Envelopes.confirms``; :meth:`_fetch_lost_push`), or,
        when no push follows within ``confirm_wait_ms``, confirmed on its own (:meth:`_confirm`)."""
        while ids:
            confirms = tuple(session.pushed)
            sent: list[bytes] = []
            items, _ = self._page(ids, len(confirms) * _CONFIRM_BYTES, sent)
            if not items and confirms:  # pragma: no cover - frames have room for both
                confirms = ()
                items, _ = self._page(ids, 0, sent)
            if not items:  # pragma: no cover - an admitted envelope always fits a frame
                break
            self._send(session, Envelopes(0, items, False, covered, confirms), sent)
            session.pushed = sent[-CONFIRMS_MAX:]
            session.confirm_due_ms = self._now + self.limits.confirm_wait_ms
            if self._confirm_due_ms is None:  # dues only grow: the first is the earliest
                self._confirm_due_ms = session.confirm_due_ms
            ids = ids[ids.index(sent[-1]) + 1 :]

    # -- plumbing -----------------------------------------------------------------------------

    def _own_last_hlc(self) -> int:
        ids = self.admission.logs.get(LogId(self.node, self.epoch), [])
        return self.admission.records[ids[-1]].envelope.hlc if ids else 0

    def _send(
        self, session: Session, message: Message, envelope_ids: list[bytes] | None = None
    ) -> None:
        """Encode ``message`` for ``session``; ``envelope_ids``: for ``Envelopes``, the ids of
        its items in order (:attr:`Send.envelope_ids`)."""
        data = encode_message(message)
        kind = type(message).__name__
        self.stats.messages_sent[kind] = self.stats.messages_sent.get(kind, 0) + 1
        self.stats.bytes_sent[kind] = self.stats.bytes_sent.get(kind, 0) + len(data)
        if envelope_ids is None:
            self._out.append(Send(session.peer, data, kind))
        else:
            assert isinstance(message, Envelopes) and len(envelope_ids) == len(message.items)
            pushed = message.req == 0
            self._out.append(Send(session.peer, data, kind, tuple(envelope_ids), pushed))

    def _notify(self, notice: Notice) -> None:
        self._out.append(Notify(notice))


_Handler = Callable[[MeshCore, Session, Any], None]

_TABLE: dict[tuple[SessionState, type[Message]], _Handler] = {
    (SessionState.HELLO, Hello): MeshCore._on_hello,
    (SessionState.HELLO, Bye): MeshCore._on_bye,
    (SessionState.AUTH, Auth): MeshCore._on_auth,
    (SessionState.AUTH, Bye): MeshCore._on_bye,
    (SessionState.ACTIVE, Frontier): MeshCore._on_frontier,
    (SessionState.ACTIVE, NothingToSend): MeshCore._on_nothing,
    (SessionState.ACTIVE, GetRange): MeshCore._on_get_range,
    (SessionState.ACTIVE, GetIds): MeshCore._on_get_ids,
    (SessionState.ACTIVE, Envelopes): MeshCore._on_envelopes,
    (SessionState.ACTIVE, Bye): MeshCore._on_bye,
    (SessionState.ACTIVE, Prune): MeshCore._on_prune,
    (SessionState.ACTIVE, Graft): MeshCore._on_graft,
    (SessionState.ACTIVE, Shuffle): MeshCore._on_shuffle,
    (SessionState.ACTIVE, IHave): MeshCore._on_ihave,
    (SessionState.ACTIVE, Beacon): MeshCore._on_beacon,
}
"""Which message each session state accepts, and its handler. Anything else is a protocol
error on the peer's side: ``Bye(unexpected_message)`` and disconnect (``MeshCore._fail``)."""
