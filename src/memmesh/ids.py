"""Identifiers and hashing: SHA-256 with domain separation, log ids, short ids for humans."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = [
    "HASH_BYTES",
    "ZERO_ID",
    "Head",
    "LogId",
    "short_id",
    "tagged_hash",
]

HASH_BYTES = 32
ZERO_ID = bytes(HASH_BYTES)
"""The all-zero id: "no previous envelope". No SHA-256 output is expected to equal it."""

_TAG_PREFIX = b"memmesh/"


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """SHA-256 of ``b"memmesh/" + tag + b"\\x00" + data``.

    Every hash in the protocol names its purpose, so bytes hashed for one purpose can never be
    presented as a hash for another. Tags are ASCII without NUL, so the encoding is unambiguous.
    """
    start = _started.get(tag)
    if start is None:
        assert b"\x00" not in tag, "tags must not contain NUL"
        start = hashlib.sha256(_TAG_PREFIX + tag + b"\x00")
        if len(_started) < _STARTED_MAX:
            _started[tag] = start
    h = start.copy()  # the prefix is hashed once per tag, not once per call
    h.update(data)
    return h.digest()


_STARTED_MAX = 256
_started: dict[bytes, hashlib._Hash] = {}
"""Each tag's hash state after its prefix (the protocol has a few dozen tags; bounded anyway)."""


def short_id(value: bytes, chars: int = 12) -> str:
    """A short hex prefix of an id or key, for logs and terminals (never for comparisons)."""
    return value.hex()[:chars]


class LogId(NamedTuple):
    """A replication log: one author key and one epoch. Orders by author bytes, then epoch."""

    author: bytes
    epoch: int

    def __str__(self) -> str:
        return f"{short_id(self.author)}@{self.epoch}"


class Head(NamedTuple):
    """The last envelope of a log: its seq and its id."""

    seq: int
    id: bytes
