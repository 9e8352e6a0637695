"""One root error, split by whose fault it is, with machine-readable reason codes.

``LocalError``: the caller, the local configuration or the local machine is at fault (a key file
readable by others, a full disk, a data dir another process holds). ``RemoteError``: bytes that
came from somewhere else are at fault (a forged or malformed envelope). Every rejection of input
carries a :class:`Reason`, so operators can count and alert on them by code, not by message text.
"""

from __future__ import annotations

import enum

__all__ = [
    "CorruptRecord",
    "DataDirLocked",
    "KeyFileError",
    "LocalError",
    "LogConflict",
    "MemmeshError",
    "Reason",
    "Rejected",
    "RemoteError",
    "StorageError",
    "StorageFull",
    "StoreClosed",
]


class Reason(enum.StrEnum):
    """Why an input was refused. Values are stable: they appear in logs, metrics and the API."""

    # Framing, shared by every bounded decoder.
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    COUNT_EXCEEDS_LIMIT = "count_exceeds_limit"
    LENGTH_EXCEEDS_LIMIT = "length_exceeds_limit"
    NOT_CANONICAL = "not_canonical"
    BAD_JSON = "bad_json"
    # Envelope header fields.
    BAD_VERSION = "bad_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_EPOCH = "bad_epoch"
    BAD_SEQ = "bad_seq"
    BAD_PREV = "bad_prev"
    BAD_DEPS = "bad_deps"
    # Claims and membership.
    BAD_CLAIM = "bad_claim"
    BAD_CLAIMS_ROOT = "bad_claims_root"
    BAD_GENESIS = "bad_genesis"
    BAD_MEMBERSHIP_OP = "bad_membership_op"
    # Exclusion (stored, but out of the live set) and admission outcomes.
    NOT_MEMBER = "not_member"
    REVOKED = "revoked"
    EQUIVOCATION = "equivocation"
    INTEGRATION_FAILED = "integration_failed"
    CAUSAL_BUFFER_FULL = "causal_buffer_full"
    PENDING_BUFFER_FULL = "pending_buffer_full"
    # The document grammar (strict Yjs v1 decoder).
    BAD_VARINT = "bad_varint"
    EMPTY_UPDATE = "empty_update"
    WRONG_CLIENT = "wrong_client"
    CLOCK_GAP = "clock_gap"
    CLOCK_OVERLAP = "clock_overlap"
    HAS_ORIGIN = "has_origin"
    NESTED_TYPE = "nested_type"
    BAD_CONTENT = "bad_content"
    NOT_MAP_ENTRY = "not_map_entry"
    SECOND_ROOT = "second_root"
    FOREIGN_KEY = "foreign_key"
    BAD_KEY = "bad_key"
    CLAIM_ID_MISMATCH = "claim_id_mismatch"
    HAS_DELETES = "has_deletes"
    DUPLICATE_CLAIM = "duplicate_claim"
    # Authentication and scope.
    BAD_SIGNATURE = "bad_signature"
    BAD_CLAIM_SIGNATURE = "bad_claim_signature"
    WRONG_MESH = "wrong_mesh"
    # Sync sessions (a peer's messages; every one closes the session with a ``Bye``).
    BAD_MESSAGE = "bad_message"
    UNEXPECTED_MESSAGE = "unexpected_message"
    NO_COMMON_VERSION = "no_common_version"
    SELF_CONNECTION = "self_connection"
    DUPLICATE_SESSION = "duplicate_session"
    VIEW_FULL = "view_full"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    FRONTIER_TOO_LARGE = "frontier_too_large"
    SHUTDOWN = "shutdown"
    TOO_MANY_INVALID = "too_many_invalid"
    BANNED = "banned"


class MemmeshError(Exception):
    """Root of every error this package raises on purpose."""


class LocalError(MemmeshError):
    """The local side is at fault: caller misuse, configuration, or this machine's resources."""


class RemoteError(MemmeshError):
    """Input from outside (a peer, a file someone handed us) is at fault."""


class Rejected(RemoteError):
    """Input refused by a decoder or a check: ``reason`` is the stable code, ``detail`` prose."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class KeyFileError(LocalError):
    """A key file is missing, malformed, or readable by other users."""


class StorageError(LocalError):
    """The store could not do what was asked; nothing acknowledged has been lost."""


class StorageFull(StorageError):
    """The map reached its configured maximum or the disk itself is full; the write was not made."""


class DataDirLocked(StorageError):
    """Another process already writes this data dir (one writer per node key, DESIGN §4 rule 1)."""


class StoreClosed(StorageError):
    """The store was used after ``close()``."""


class CorruptRecord(StorageError):
    """A stored record failed its checksum: the bytes at rest changed after they were written."""


class LogConflict(StorageError):
    """A write would reuse a seq with different content, leave a gap, or break the hash chain.

    The store refuses it whole; equivocation evidence belongs in the evidence table, never in a log.
    """
