"""Memory Mesh: a shared, signed, attestable memory layer for swarms of AI agents."""

from .crypto import SigningKey, read_key_file, write_key_file
from .envelope import Envelope, EnvelopeKind, EnvelopeLimits, decode_envelope, open_envelope, seal
from .errors import (
    CorruptRecord,
    DataDirLocked,
    KeyFileError,
    LocalError,
    LogConflict,
    MemmeshError,
    Reason,
    Rejected,
    RemoteError,
    StorageError,
    StorageFull,
    StoreClosed,
)
from .ids import Head, LogId

__version__ = "0.1.0.dev0"

__all__ = [
    "CorruptRecord",
    "DataDirLocked",
    "Envelope",
    "EnvelopeKind",
    "EnvelopeLimits",
    "Head",
    "KeyFileError",
    "LocalError",
    "LogConflict",
    "LogId",
    "MemmeshError",
    "Reason",
    "Rejected",
    "RemoteError",
    "SigningKey",
    "StorageError",
    "StorageFull",
    "StoreClosed",
    "__version__",
    "decode_envelope",
    "open_envelope",
    "read_key_file",
    "seal",
    "write_key_file",
]
