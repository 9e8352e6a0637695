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
    # Envelope header fields.
    BAD_VERSION = "bad_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_EPOCH = "bad_epoch"
    BAD_SEQ = "bad_seq"
    BAD_PREV = "bad_prev"
    BAD_DEPS = "bad_deps"
    # Authentication and scope.
    BAD_SIGNATURE = "bad_signature"
    WRONG_MESH = "wrong_mesh"


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
