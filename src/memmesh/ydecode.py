"""The document grammar (DESIGN §4): a strict decoder and the matching encoder for Yjs v1 updates.

Every valid payload has exactly this shape (varuints are LEB128, minimal, at most 2^53 - 1)::

    01                              one client section
    varuint n                       n >= 1 structs
    varuint client                  = client_id(author, epoch)
    varuint clock                   = where the log's previous envelope ended
    n times:
      23                            info: content ref 3 (binary) | 0x20 (has a map key); no origins
      01 varstring "claims"         parent: the root named "claims"
      varstring "<client>/<claim id hex>"
      varuint len, len bytes        the claim's bytes, whose tagged hash is the claim id
    00                              an empty delete set

Anything else is refused with its own reason code, before pycrdt sees a byte of it. Decoding this
subset is far smaller than decoding Yjs, and it is what makes a map-key erasure, a delete, an item
in someone else's name, a nested type or a second root impossible to even express.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from .claims import CLAIM_BYTES_MAX, CLAIM_ID_TAG
from .errors import Reason, Rejected
from .ids import tagged_hash
from .wire import pack_u32

__all__ = [
    "CLIENT_ID_BITS",
    "ROOT_NAME",
    "GrammarItem",
    "check_start",
    "client_id",
    "decode_update",
    "encode_update",
    "encode_update_at",
    "encode_varuint",
    "item_key",
    "update_frame_bytes_max",
    "update_item_bytes",
]

ROOT_NAME = "claims"
CLIENT_ID_BITS = 53
"""Yjs client ids must be exact in a JavaScript number."""
ITEMS_MAX = 4096
_VARUINT_MAX = (1 << CLIENT_ID_BITS) - 1
_VARUINT_BYTES_MAX = 8  # 8 * 7 = 56 bits >= 53
_INFO = 0x23
_FLAG_ORIGIN, _FLAG_RIGHT_ORIGIN, _FLAG_KEY = 0x80, 0x40, 0x20
_CONTENT_BINARY, _CONTENT_TYPE = 3, 7
_KEY_BYTES_MAX = 16 + 1 + 64
_STRUCT_BYTES_MIN = 1 + 1 + 1 + len(ROOT_NAME) + 1 + 1 + 64 + 1
"""info, parent flag, root name, key (shortest: a one-digit client), empty value length."""
_ROOT_FIELD = bytes([len(ROOT_NAME)]) + ROOT_NAME.encode()


@functools.lru_cache(maxsize=4096)
def client_id(author: bytes, epoch: int) -> int:
    """The Yjs client id of a log: a hash of (author key, epoch), truncated to 53 bits.

    Cached: every envelope of a log asks for it, and a mesh has few logs."""
    digest = tagged_hash(b"yjs-client/v1", author + pack_u32(epoch))
    return int.from_bytes(digest[:8], "big") & _VARUINT_MAX


def item_key(client: int, claim_id: bytes) -> str:
    """The map key of a claim: owned by its author's client id, named by the claim's hash."""
    return f"{client}/{claim_id.hex()}"


@dataclass(frozen=True, slots=True)
class GrammarItem:
    """One claim item of an update: its clock, map key, claim id and the claim's bytes."""

    clock: int
    key: str
    claim_id: bytes
    value: bytes
    at: int = -1
    """Where ``value`` begins in the payload (-1: not taken from a payload)."""


def update_item_bytes(client: int, value_len: int) -> int:
    """The bytes one claim of ``value_len`` bytes takes in an update of ``client``'s: exactly
    what :func:`encode_update_at` adds for it (info, parent, map key, length, the claim)."""
    key_len = len(str(client)) + 1 + 64
    head = 2 + len(_ROOT_FIELD) + len(_varuint(key_len)) + key_len
    return head + len(_varuint(value_len)) + value_len


def update_frame_bytes_max(client: int, count: int) -> int:
    """The bytes of an update of ``client``'s around its ``count`` items, whatever clock it
    starts at: the client section, the counts and the empty delete set."""
    return 1 + len(_varuint(count)) + len(_varuint(client)) + _VARUINT_BYTES_MAX + 1


def encode_update(client: int, start_clock: int, claims: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The update that adds ``claims`` ((claim id, claim bytes) pairs) to the document.

    Built directly from the grammar, without touching any live document: a local write is a few
    bytes the node encodes itself.
    """
    return encode_update_at(client, start_clock, claims)[0]


def encode_update_at(
    client: int, start_clock: int, claims: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, list[int]]:
    """:func:`encode_update`, and where each claim's bytes begin in it."""
    if not claims:
        raise ValueError("an update carries at least one claim")
    owner = f"{client}/".encode()
    prefix = bytes([_INFO, 0x01]) + _ROOT_FIELD + _varuint(len(owner) + 64) + owner
    parts = [b"\x01", _varuint(len(claims)), _varuint(client), _varuint(start_clock)]
    at = sum(len(p) for p in parts)
    offsets: list[int] = []
    for claim_id, value in claims:
        length = _varuint(len(value))
        parts += (prefix, claim_id.hex().encode(), length, value)
        at += len(prefix) + 64 + len(length)
        offsets.append(at)
        at += len(value)
    parts.append(b"\x00")
    return b"".join(parts), offsets


def decode_update(payload: bytes, *, client: int, start_clock: int | None) -> list[GrammarItem]:
    """Decode ``payload`` under the grammar for the log whose client id is ``client`` and whose
    previous envelope ended at ``start_clock``; refuse anything else with a reason code.

    ``start_clock=None`` skips only the clock check, for an envelope whose previous envelope has
    not arrived yet: the caller checks ``items[0].clock`` once it has (:func:`check_start`).
    """
    r = _Reader(bytes(payload))
    clients = r.varuint("client count")
    if clients != 1:
        raise Rejected(
            Reason.WRONG_CLIENT if clients > 1 else Reason.EMPTY_UPDATE,
            f"update has {clients} client sections; exactly one is allowed",
        )
    count = r.varuint("struct count")
    if count == 0:
        raise Rejected(Reason.EMPTY_UPDATE, "update has no structs")
    if count > ITEMS_MAX:
        raise Rejected(Reason.COUNT_EXCEEDS_LIMIT, f"{count} structs exceed {ITEMS_MAX}")
    if count * _STRUCT_BYTES_MIN > r.remaining:
        raise Rejected(
            Reason.TRUNCATED, f"{count} structs cannot fit in the {r.remaining} bytes left"
        )
    # The author's client, compared as bytes; anything else is read, to say which or why not.
    got_client = client if r.skip(_item_prefix(client)[2]) else r.varuint("client")
    if got_client != client:
        raise Rejected(
            Reason.WRONG_CLIENT, f"items under client {got_client}, the author's is {client}"
        )
    clock = r.varuint("clock")
    if start_clock is not None:
        check_start(clock, start_clock)
    items = _items(r, client, clock, count)
    deletes = r.varuint("delete set client count")
    if deletes:
        raise Rejected(Reason.HAS_DELETES, f"update deletes items of {deletes} clients")
    if r.remaining:
        raise Rejected(Reason.TRAILING_BYTES, f"{r.remaining} bytes after the delete set")
    if len(items) > 1 and len({item.key for item in items}) != len(items):
        raise Rejected(Reason.DUPLICATE_CLAIM, "an update names one claim twice")
    return items


def check_start(clock: int, start_clock: int) -> None:
    """An update must start exactly where its log's previous envelope ended."""
    if clock > start_clock:
        raise Rejected(Reason.CLOCK_GAP, f"clock {clock}, the log ended at {start_clock}")
    if clock < start_clock:
        raise Rejected(Reason.CLOCK_OVERLAP, f"clock {clock}, the log ended at {start_clock}")
    if clock + ITEMS_MAX > _VARUINT_MAX:
        raise Rejected(Reason.BAD_VARINT, "clock too close to 2^53")


def _items(r: _Reader, client: int, clock: int, count: int) -> list[GrammarItem]:
    """Every item. Well-formed items all start with the same bytes and carry a claim whose
    length fits a one- or two-byte varuint, so a fast path checks them at once; anything else
    goes through :func:`_item`, which names the exact rule it breaks."""
    owner, prefix, _ = _item_prefix(client)
    data, size, items = r.data, len(r.data), []
    for i in range(count):
        pos = r.position
        at = pos + len(prefix) + 64  # the claim's length varuint
        if at + 2 <= size and data.startswith(prefix, pos):
            b0, b1 = data[at], data[at + 1]
            if b0 < 0x80:
                length, value_at = b0, at + 1
            elif 0 < b1 < 0x80:
                length, value_at = (b0 & 0x7F) | (b1 << 7), at + 2
            else:
                length, value_at = -1, 0
            end = value_at + length
            if length >= 0 and end <= size:
                claim_hex = data[at - 64 : at].decode("latin-1")
                value = data[value_at:end]
                claim_id = tagged_hash(CLAIM_ID_TAG, value)
                if claim_id.hex() == claim_hex:  # also proves the key is lowercase hex
                    r.skip_to(end)
                    items.append(
                        GrammarItem(clock + i, owner + claim_hex, claim_id, value, value_at)
                    )
                    continue
        items.append(_item(r, client, clock + i))
    return items


@functools.lru_cache(maxsize=4096)
def _item_prefix(client: int) -> tuple[str, bytes, bytes]:
    """The key owner (``"<client>/"``), the bytes every well-formed item of ``client`` starts
    with up to its claim id, and the client's varuint: made once per log, not once per
    envelope."""
    owner = f"{client}/"
    prefix = bytes([_INFO, 0x01]) + _ROOT_FIELD + bytes([len(owner) + 64]) + owner.encode()
    return owner, prefix, _varuint(client)


def _item(r: _Reader, client: int, clock: int) -> GrammarItem:
    info = r.byte("info")
    if info & (_FLAG_ORIGIN | _FLAG_RIGHT_ORIGIN):
        raise Rejected(Reason.HAS_ORIGIN, f"item at clock {clock} has an origin (info {info:#04x})")
    content_ref = info & 0x1F
    if content_ref == _CONTENT_TYPE:
        raise Rejected(Reason.NESTED_TYPE, f"item at clock {clock} creates a nested type")
    if content_ref != _CONTENT_BINARY:
        raise Rejected(Reason.BAD_CONTENT, f"item at clock {clock} has content ref {content_ref}")
    if not info & _FLAG_KEY:
        raise Rejected(Reason.NOT_MAP_ENTRY, f"item at clock {clock} has no map key")
    if r.varuint("parent kind") != 1:
        raise Rejected(Reason.NESTED_TYPE, f"item at clock {clock} has a nested parent")
    root = r.string("root name", 255)
    if root != ROOT_NAME:
        raise Rejected(Reason.SECOND_ROOT, f"item at clock {clock} is in root {root[:40]!r}")
    key = r.string("map key", _KEY_BYTES_MAX)
    owner, _, claim_hex = key.partition("/")
    if owner != str(client):
        raise Rejected(
            Reason.FOREIGN_KEY, f"item at clock {clock} sets key {key[:40]!r} of another author"
        )
    if len(claim_hex) != 64 or claim_hex.strip("0123456789abcdef"):
        raise Rejected(Reason.BAD_KEY, f"map key {key[:90]!r} does not name a claim id")
    value = r.blob("claim", CLAIM_BYTES_MAX)
    claim_id = tagged_hash(CLAIM_ID_TAG, value)
    if claim_id.hex() != claim_hex:
        raise Rejected(
            Reason.CLAIM_ID_MISMATCH, f"item at clock {clock}: value does not hash to its key"
        )
    return GrammarItem(clock, key, claim_id, value, r.position - len(value))


_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def encode_varuint(value: int) -> bytes:
    """A minimal LEB128 varuint, as the grammar requires."""
    return _varuint(value)


def _varuint(value: int) -> bytes:
    if 0 <= value < 0x80:  # one byte: counts, short lengths
        return _ONE_BYTE[value]
    if 0x80 <= value < 0x4000:  # two bytes: a claim's length
        return bytes((value & 0x7F | 0x80, value >> 7))
    if not 0 <= value <= _VARUINT_MAX:
        raise ValueError(f"varuint out of range: {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class _Reader:
    """LEB128 varuints and length-prefixed strings, each checked against the bytes that remain."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def position(self) -> int:
        return self._pos

    def skip_to(self, position: int) -> None:
        assert self._pos <= position <= len(self._data)
        self._pos = position

    def byte(self, field: str) -> int:
        if not self.remaining:
            raise Rejected(Reason.TRUNCATED, f"update ends before its {field}")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def skip(self, expected: bytes) -> bool:
        """Read past ``expected`` if the data continues with it; False (nothing read) if not."""
        if self._data.startswith(expected, self._pos):
            self._pos += len(expected)
            return True
        return False

    def varuint(self, field: str) -> int:
        pos, data = self._pos, self._data
        if pos < len(data) and data[pos] < 0x80:  # one byte: the common case, always minimal
            self._pos = pos + 1
            return data[pos]
        value, shift = 0, 0
        for at in range(pos, min(len(data), pos + _VARUINT_BYTES_MAX)):
            byte = data[at]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and at > pos:
                    raise Rejected(Reason.BAD_VARINT, f"{field}: non-minimal varuint")
                if value > _VARUINT_MAX:
                    raise Rejected(Reason.BAD_VARINT, f"{field}: varuint above 2^53 - 1")
                self._pos = at + 1
                return value
            shift += 7
        if len(data) - pos < _VARUINT_BYTES_MAX:
            raise Rejected(Reason.TRUNCATED, f"update ends before its {field}")
        raise Rejected(
            Reason.BAD_VARINT, f"{field}: varuint longer than {_VARUINT_BYTES_MAX} bytes"
        )

    def blob(self, field: str, bytes_max: int) -> bytes:
        length = self.varuint(f"{field} length")
        if length > bytes_max:
            raise Rejected(Reason.LENGTH_EXCEEDS_LIMIT, f"{field} of {length} bytes > {bytes_max}")
        if length > self.remaining:
            raise Rejected(Reason.TRUNCATED, f"{field} of {length} bytes, {self.remaining} left")
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def string(self, field: str, bytes_max: int) -> str:
        raw = self.blob(field, bytes_max)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(Reason.BAD_KEY, f"{field} is not UTF-8") from None
