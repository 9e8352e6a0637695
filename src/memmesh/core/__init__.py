"""The sans-IO core: the sync protocol as ``handle(input, now_ms) -> effects``.

No I/O, clock or global randomness in here (``tests/unit/test_layering.py`` checks the imports):
the runtime and the simulator feed inputs and carry out effects.
"""

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
from .node import MeshCore, SyncStats
from .sessions import Rng, Session, SessionState, SyncLimits

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
    "MeshCore",
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
    "Rng",
    "Send",
    "Session",
    "SessionState",
    "SyncLimits",
    "SyncStats",
    "Throttled",
    "Timer",
    "WriteAcked",
    "WriteFailed",
]
