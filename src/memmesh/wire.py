"""The only module that packs and unpacks bytes.

All integers are unsigned big-endian of fixed width. :class:`Reader` checks every read against the
bytes that remain and raises :class:`~memmesh.errors.Rejected` with a reason code, never
``struct.error`` or ``IndexError``, so a decoder built on it cannot be crashed by its input.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from .errors import Reason, Rejected

__all__ = [
    "Layout",
    "Reader",
    "Writer",
    "crc32",
    "pack_u32",
    "pack_u64",
    "unpack_u32",
    "unpack_u64",
]

Layout = struct.Struct
"""A precompiled fixed-width layout, e.g. ``Layout(">BB32s")``, read with :meth:`Reader.fields`."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Writer:
    """Appends fixed-width fields to a growing buffer."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> None:
        self._buf.append(value)

    def u16(self, value: int) -> None:
        self._buf += _U16.pack(value)

    def u32(self, value: int) -> None:
        self._buf += _U32.pack(value)

    def u64(self, value: int) -> None:
        self._buf += _U64.pack(value)

    def raw(self, value: bytes) -> None:
        self._buf += value

    def __len__(self) -> int:
        return len(self._buf)

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class Reader:
    """Reads fixed-width fields from ``data``; ``what`` names the object in error details."""

    __slots__ = ("_data", "_pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def _take(self, n: int, field: str) -> bytes:
        if n > self.remaining:
            raise Rejected(
                Reason.TRUNCATED,
                f"{self.what}: {field} needs {n} bytes at offset {self._pos}, "
                f"{self.remaining} remain",
            )
        start = self._pos
        self._pos = start + n
        return self._data[start : self._pos]

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = _U16.unpack(self._take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack(self._take(4, field))[0]
        return value

    def u64(self, field: str) -> int:
        value: int = _U64.unpack(self._take(8, field))[0]
        return value

    def raw(self, n: int, field: str) -> bytes:
        return self._take(n, field)

    def fields(self, layout: Layout, field: str) -> tuple[Any, ...]:
        """Several fixed-width fields at once (one bounds check, one C call)."""
        values = layout.unpack_from(self._take(layout.size, field))
        return tuple(values)

    def expect_end(self) -> None:
        if self.remaining:
            raise Rejected(
                Reason.TRAILING_BYTES,
                f"{self.what}: {self.remaining} unexpected bytes after offset {self._pos}",
            )


def pack_u32(value: int) -> bytes:
    return _U32.pack(value)


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u32(data: bytes | memoryview) -> int:
    value: int = _U32.unpack(data)[0]
    return value


def unpack_u64(data: bytes) -> int:
    value: int = _U64.unpack(data)[0]
    return value


def crc32(*parts: bytes | memoryview) -> int:
    """CRC-32 (zlib) over the concatenation of ``parts``: detects accidental damage at rest."""
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value
