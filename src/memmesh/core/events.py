"""What goes into the sans-IO core and what comes out of it.

Inputs are fed to :meth:`memmesh.core.MeshCore.handle` with the current time; effects are what
the caller must carry out, in order. ``peer`` is the caller's handle for one connection (any
string it likes: a connection number, an address); the core learns the peer's node key from its
``Hello``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from ..claims import Claim
from ..errors import Reason

__all__ = [
    "Advertise",
    "CancelWrite",
    "Dial",
    "Disconnect",
    "Effect",
    "EvidenceFound",
    "Flush",
    "Input",
    "Integrated",
    "LocalWrite",
    "Notice",
    "Notify",
    "PeerConnected",
    "PeerGone",
    "PeerKnown",
    "PeerReady",
    "PeerRefused",
    "Persist",
    "Received",
    "RejectedEnvelope",
    "Send",
    "Throttled",
    "Timer",
    "WriteAcked",
    "WriteFailed",
]

# -- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A connection to ``peer`` is open (``outbound``: we dialled it). ``nonce`` is the 32
    random bytes the peer must sign in the handshake: the runtime passes ``os.urandom(32)``;
    without one the core draws it from its seeded generator (fine for simulation only)."""

    peer: str
    outbound: bool = False
    nonce: bytes | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One whole frame from ``peer``."""

    peer: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerGone:
    """The connection to ``peer`` closed. ``reason`` is the ``Reason`` value the peer gave when
    it closed (a websocket close reason), if any: a final refusal is not redialled."""

    peer: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PeerKnown:
    """An address the core should keep a connection to; it dials it (and redials with jittered
    exponential backoff) until told otherwise with ``forget=True``."""

    peer: str
    forget: bool = False


@dataclass(frozen=True, slots=True)
class Timer:
    """The deadline the core asked for (or any later moment) has come."""


@dataclass(frozen=True, slots=True)
class LocalWrite:
    """Claims to write in this node's log. Acknowledged by ``WriteAcked`` once durable and
    integrated, or answered by ``WriteFailed``; many writes share one envelope and one commit."""

    token: int
    claims: Sequence[Claim]


@dataclass(frozen=True, slots=True)
class CancelWrite:
    """Withdraw a local write not yet committed (its caller gave up waiting); answered by
    ``WriteFailed(error="Cancelled")``, or by nothing when it was already acknowledged."""

    token: int


@dataclass(frozen=True, slots=True)
class Flush:
    """Commit what the core has staged (one group commit), then integrate and forward it. Feed it
    after ``Persist``, once the inputs that were ready have been fed, so one commit covers them."""


@dataclass(frozen=True, slots=True)
class Advertise:
    """The addresses peers can dial this node at (at most 4): the core signs a fresh peer record
    with them and passes it on in shuffles, so nodes that were not told of it can find it."""

    addresses: tuple[str, ...]


Input: TypeAlias = (
    PeerConnected
    | Received
    | PeerGone
    | PeerKnown
    | Timer
    | LocalWrite
    | CancelWrite
    | Flush
    | Advertise
)

# -- notices (what happened, for the caller to report or act on) --------------------------------


@dataclass(frozen=True, slots=True)
class WriteAcked:
    token: int
    envelope_id: bytes
    seq: int
    claim_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class WriteFailed:
    token: int
    error: str
    """The exception's class name: ``NotAMember``, ``StorageFull``, ``LocalError``..."""
    detail: str


@dataclass(frozen=True, slots=True)
class Integrated:
    """Envelopes this node stored and integrated, from ``peer`` ("" for local writes)."""

    peer: str
    envelope_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RejectedEnvelope:
    peer: str
    envelope_id: bytes | None
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """``dropped`` envelopes of member ``author`` that ``peer`` pushed past the author's push
    budget (``SyncLimits.author_pushes_per_s``) were dropped unread; anti-entropy fetches them
    later. A member that keeps coming up here signs more than its share."""

    peer: str
    author: bytes
    dropped: int


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    """New equivocation evidence (keys in the store's evidence table)."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerReady:
    """The session with ``peer`` passed its hello; ``node`` is the key it announced."""

    peer: str
    node: bytes


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """A session ended on a refusal (sent by us: ``by_us``, or by the peer)."""

    peer: str
    reason: str
    detail: str
    by_us: bool


Notice: TypeAlias = (
    WriteAcked
    | WriteFailed
    | Integrated
    | RejectedEnvelope
    | Throttled
    | EvidenceFound
    | PeerReady
    | PeerRefused
)

# -- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    peer: str
    data: bytes
    kind: str = field(default="", compare=False)
    """The message kind, for metrics and traces."""
    envelope_ids: tuple[bytes, ...] = field(default=(), compare=False)
    """For an ``Envelopes`` message: the ids of the envelopes it carries, in order (for
    metrics and traces: a driver need not decode the frame and hash them again)."""
    pushed: bool = field(default=False, compare=False)
    """For an ``Envelopes`` message: an eager push (``req`` 0), not an answer to a fetch."""


@dataclass(frozen=True, slots=True)
class Dial:
    peer: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    peer: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Persist:
    """Work is staged: feed ``Flush`` soon (after the other inputs that are ready)."""


@dataclass(frozen=True, slots=True)
class Notify:
    notice: Notice


Effect: TypeAlias = Send | Dial | Disconnect | Persist | Notify
