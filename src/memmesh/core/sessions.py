"""Per-peer sync state, kept apart from the document (automerge's ``SyncState`` idea).

A session knows what it asked its peer and when that expires, what it still means to ask, which
anti-entropy round it is in, and the part of the peer's frontier received so far. It holds no
envelopes: those belong to admission, whatever session brought them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ..ids import LogId
from .messages import ForkEntry, HeadEntry

__all__ = ["FetchIds", "FetchRange", "Rng", "Session", "SessionState", "SyncLimits"]

_T = TypeVar("_T")


class Rng(Protocol):
    """The randomness the core draws, injected: a seeded ``random.Random`` fits. The core never
    touches the ``random`` module, so one seed reproduces a run."""

    def random(self) -> float: ...

    def randrange(self, stop: int, /) -> int: ...

    def choice(self, seq: Sequence[_T], /) -> _T: ...


class SessionState(enum.Enum):
    HELLO = "hello"
    """Connected; our hello is sent, the peer's has not arrived."""
    AUTH = "auth"
    """The peer's hello was accepted and our proof sent; the peer's proof has not arrived."""
    ACTIVE = "active"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """Every bound of the sync protocol; units last in each name."""

    frame_bytes_max: int = (1 << 20) + (64 << 10)
    """Largest frame sent or accepted; an envelope of the admission limit must fit in one."""
    frontier_logs_max: int = 1 << 16
    """Most heads (and, separately, forks and tips) a peer's frontier may name over all its
    pages: what one frontier may cost in memory (about 200 bytes per entry)."""
    requests_in_flight_max: int = 8
    """Requests outstanding per session; the rest wait in the session's queue."""
    wants_max: int = 1 << 16
    """Requests queued per session before the oldest are dropped (the next round asks again)."""
    request_timeout_ms: int = 10_000
    handshake_timeout_ms: int = 5_000
    anti_entropy_interval_ms: int = 1_000
    dial_backoff_initial_ms: int = 100
    dial_backoff_max_ms: int = 30_000
    dial_backoff_alone_max_ms: int = 2_000
    """Longest wait between dials while this node has no session at all: being alone is the
    worst state, a dial costs little, and a node cut off until its peers' backoffs ran out
    (up to ``dial_backoff_max_ms``) would stay behind long after a partition healed."""
    local_claims_per_envelope_max: int = 4096
    flush_envelopes_max: int = 256
    """Received envelopes one ``Flush`` admits; the rest wait for the next (another
    ``Persist`` is emitted), so one input never holds the caller's event loop for long."""
    flush_local_envelopes_max: int = 2
    """This node's own envelopes one ``Flush`` writes (each up to 1 MiB, about 15 ms of work);
    the writes past them wait for the next, for the same reason."""
    staged_bytes_max: int = 16 << 20
    """Received envelope bytes held for the next ``Flush``; past it no new page is asked for
    until a flush, so the side that verifies paces the transfer whatever the caller does."""
    active_view_target: int = 5
    """Sessions this node dials towards: it dials known peers while it has fewer (HyParView's
    active view size)."""
    active_view_max: int = 8
    """Most sessions held at once: a handshake past it is refused with ``view_full``. The room
    above the target lets nodes that lack peers in, so full nodes never wall off a group."""
    passive_view_max: int = 30
    """Signed records of inactive peers kept in reserve, to replace a lost session."""
    shuffle_interval_ms: int = 10_000
    """How often a node swaps a sample of peer records with a random active peer."""
    shuffle_records_max: int = 8
    discover_peers: bool = True
    """Dial peers learned from shuffled records; False keeps the node to the addresses it was
    given (a fixed topology, or peers whose advertised addresses it cannot reach)."""
    beacon_interval_ms: int = 1_000
    """How often the push tree's root signs a beacon (``memmesh.core.tree``)."""
    root_timeout_ms: int = 3_500
    """A root not heard for this long is dropped, and the next claim takes over."""
    ihave_wait_ms: int = 300
    """How long an id announced by ``IHave`` may take to arrive by push before the envelope is
    asked of the announcing peer."""
    fetch_hedge_ms: int = 2_000
    """An envelope or log asked of one peer this long ago, and still missing, may be asked of
    another in an anti-entropy round, without waiting for ``request_timeout_ms``: a lost
    request (or answer) then holds what depends on it for about this long, not ten seconds."""
    dep_refetch_ms: int = 500
    """A missing dep that envelopes here wait for, asked of a peer this long ago and still
    missing, is asked again of the peer whose envelope waits for it (which holds it: it
    admitted that envelope). A lost request or answer then holds everything newer for about
    this long, not ``fetch_hedge_ms``; a slow answer costs a second copy. Once that peer has
    answered a request, the wait is its retransmission timeout instead (``Session.rto_ms``:
    smoothed round trip plus four deviations, as TCP's), kept between ``dep_refetch_min_ms``
    and this."""
    dep_refetch_min_ms: int = 50
    """The shortest wait before a missing dep is asked again, however fast the peer answered
    before: below it, a burst of work at either end would cost copies for nothing."""
    ihave_batch_ms: int = 50
    """How long the ids of new envelopes wait to be announced on the links they were not pushed
    on, so one ``IHave`` carries all that arrived meanwhile (0: one ``IHave`` per flush). It
    only delays the repair of a lost push, by at most this much; it saves most announcements
    when many writers write at once."""
    confirm_wait_ms: int = 50
    """How long the ids of a push on a tree link wait for the next push to confirm them
    (``Envelopes.confirms``) before they are confirmed in a push of their own: the longest a
    lost push goes unnoticed by the node it was for."""
    announced_ids_max: int = 1 << 16
    """Announced ids waiting for their push, at most; past it new announcements are ignored
    (anti-entropy still finds the envelopes)."""
    causal_wait_max_ms: int = 60_000
    """How long a received envelope may wait for its causal past before this node gives up on
    it and stops asking for that past (a member can sign deps that exist nowhere). Nothing is
    lost: if the past turns up, sync fetches the envelope again from a peer that holds it."""
    invalid_envelopes_max: int = 32
    """Envelopes a peer may send that this node rejects (for their own bytes, not for lack of
    room here) before it is disconnected with ``too_many_invalid`` and banned: an honest peer
    only relays what it admitted, and admission is the same everywhere."""
    ban_initial_ms: int = 10_000
    """How long such a peer's node key is refused (``banned``) and not dialled, doubling with
    each ban up to ``ban_max_ms``."""
    ban_max_ms: int = 600_000
    author_pushes_per_s: int = 1_000
    """Envelopes of one author node that peers may push to this node a second, whoever relays
    them (0: no budget). Honest nodes batch their claims into few envelopes, so only a member
    that signs spam itself comes near it. Past the budget (and ``author_push_burst`` saved up)
    the rest of a push is dropped before it is decoded, counted and reported (``Throttled``);
    those envelopes come later by anti-entropy, which this node asks for at its own pace."""
    author_push_burst: int = 5_000
    view_rotation_interval_ms: int = 60_000
    """How often a node with a full view dials one more known peer and then drops one of its
    lazy links (0: never). Slow rewiring keeps the overlay random and merges groups of full
    nodes that would otherwise never meet."""

    def __post_init__(self) -> None:
        if self.frame_bytes_max < (1 << 20) + 1024:
            raise ValueError("frame_bytes_max must leave room for a 1 MiB envelope")
        for name in (
            "requests_in_flight_max",
            "wants_max",
            "request_timeout_ms",
            "handshake_timeout_ms",
            "anti_entropy_interval_ms",
            "dial_backoff_initial_ms",
            "dial_backoff_alone_max_ms",
            "local_claims_per_envelope_max",
            "staged_bytes_max",
            "flush_envelopes_max",
            "flush_local_envelopes_max",
            "active_view_target",
            "passive_view_max",
            "shuffle_interval_ms",
            "shuffle_records_max",
            "ihave_wait_ms",
            "confirm_wait_ms",
            "fetch_hedge_ms",
            "dep_refetch_ms",
            "dep_refetch_min_ms",
            "beacon_interval_ms",
            "root_timeout_ms",
            "announced_ids_max",
            "causal_wait_max_ms",
            "invalid_envelopes_max",
            "ban_initial_ms",
            "ban_max_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.active_view_max < self.active_view_target:
            raise ValueError("active_view_max must be >= active_view_target")
        if self.dep_refetch_min_ms > self.dep_refetch_ms:
            raise ValueError("dep_refetch_min_ms must be <= dep_refetch_ms")
        if self.ihave_batch_ms < 0:
            raise ValueError("ihave_batch_ms must be >= 0")
        if self.author_pushes_per_s < 0 or self.author_push_burst < 1:
            raise ValueError("author_pushes_per_s must be >= 0 and author_push_burst >= 1")
        if self.view_rotation_interval_ms < 0:
            raise ValueError("view_rotation_interval_ms must be >= 0")
        if self.shuffle_records_max > 32:
            raise ValueError("shuffle_records_max must be <= 32 (one Shuffle message)")
        if self.dial_backoff_max_ms < self.dial_backoff_initial_ms:
            raise ValueError("dial_backoff_max_ms must be >= dial_backoff_initial_ms")


@dataclass(frozen=True, slots=True)
class FetchRange:
    log: LogId
    start_seq: int
    end_seq: int


@dataclass(frozen=True, slots=True)
class FetchIds:
    ids: tuple[bytes, ...]


@dataclass(slots=True)
class InFlight:
    fetch: FetchRange | FetchIds
    deadline_ms: int


@dataclass(slots=True)
class Session:
    peer: str
    outbound: bool
    state: SessionState
    deadline_ms: int | None
    """When the handshake gives up (only in ``HELLO``)."""
    node: bytes | None = None
    """The key the peer announced (proven once the session is active)."""
    nonce: bytes = b""
    """Ours, for the peer to sign."""
    peer_nonce: bytes = b""
    peer_alone: bool = False
    """The peer's hello said it has no other session (see ``Hello.alone``)."""
    requests: dict[int, InFlight] = field(default_factory=dict)
    wants: deque[FetchRange | FetchIds] = field(default_factory=deque)
    round: int = 0
    """The last anti-entropy round this side started."""
    awaiting_round: int | None = None
    """A round we started whose answer (frontier or nothing-to-send) has not come."""
    round_deadline_ms: int | None = None
    """When that answer is given up on (a lost frame); the next round starts afresh."""
    peer_heads: list[HeadEntry] = field(default_factory=list)
    peer_forks: list[ForkEntry] = field(default_factory=list)
    peer_tips: list[bytes] = field(default_factory=list)
    in_sync: bool = False
    """The peer's last answer was ``NothingToSend`` and we found nothing to ask of it."""
    announce: list[bytes] = field(default_factory=list)
    """Ids of new envelopes to announce to this (lazy) peer in the next ``IHave``."""
    pushed: list[bytes] = field(default_factory=list)
    """Ids of the last push to this peer, for the next push to confirm (``Envelopes.confirms``)."""
    confirm_due_ms: int | None = None
    """When those ids go in a push of their own if no push has carried them by then."""
    pruned_seq: int = -1
    """The beacon seq in which this node last told the peer it is not its child."""
    invalid: int = 0
    """Envelopes from this peer that admission rejected for their own bytes."""
    activated: bool = False
    """The session reached ``ACTIVE`` (so closing it may leave a hole in the push tree)."""
    srtt_ms: int | None = None
    """Smoothed time this peer took to answer a request (None until it first answers)."""
    rttvar_ms: int = 0
    """Smoothed deviation of those times."""

    def note_rtt(self, sample_ms: int) -> None:
        """One more answer time (Jacobson's estimator, as TCP keeps it; integers only)."""
        sample_ms = max(sample_ms, 0)
        if self.srtt_ms is None:
            self.srtt_ms, self.rttvar_ms = sample_ms, sample_ms // 2
            return
        self.rttvar_ms = (3 * self.rttvar_ms + abs(self.srtt_ms - sample_ms)) // 4
        self.srtt_ms = (7 * self.srtt_ms + sample_ms) // 8

    @property
    def rto_ms(self) -> int | None:
        """How long an answer from this peer may take before it is likely lost."""
        return None if self.srtt_ms is None else self.srtt_ms + 4 * self.rttvar_ms

    @property
    def busy(self) -> bool:
        return bool(self.requests or self.wants or self.awaiting_round is not None)
