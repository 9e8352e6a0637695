"""Fixed-width big-endian fields and bounded reads (docs/PROTOCOL.md §2.1)."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memmesh.errors import Reason, Rejected
from memmesh.wire import Reader, Writer, crc32, pack_u32, pack_u64, unpack_u32, unpack_u64

READS: dict[str, tuple[int, Callable[[Reader], object]]] = {
    "u8": (1, lambda r: r.u8("field")),
    "u16": (2, lambda r: r.u16("field")),
    "u32": (4, lambda r: r.u32("field")),
    "u64": (8, lambda r: r.u64("field")),
    "raw5": (5, lambda r: r.raw(5, "field")),
    "raw32": (32, lambda r: r.raw(32, "field")),
}


@pytest.mark.parametrize("method", sorted(READS))
def test_every_short_read_is_truncated(method: str) -> None:
    size, read = READS[method]
    for available in range(size):
        reader = Reader(bytes(range(available)), "thing")
        with pytest.raises(Rejected) as info:
            read(reader)
        assert info.value.reason == Reason.TRUNCATED
        assert "thing" in info.value.detail
        assert "field" in info.value.detail
        assert reader.position == 0  # a failed read consumes nothing
        assert reader.remaining == available


@pytest.mark.parametrize("method", sorted(READS))
def test_short_read_after_earlier_reads(method: str) -> None:
    size, read = READS[method]
    reader = Reader(bytes(3 + size - 1), "thing")
    reader.raw(3, "prefix")
    with pytest.raises(Rejected) as info:
        read(reader)
    assert info.value.reason == Reason.TRUNCATED
    assert "offset 3" in info.value.detail


@pytest.mark.parametrize("method", sorted(READS))
def test_exact_read_succeeds_and_consumes(method: str) -> None:
    size, read = READS[method]
    reader = Reader(bytes(size), "thing")
    read(reader)
    assert reader.remaining == 0
    assert reader.position == size
    reader.expect_end()


def test_raw_refuses_lengths_beyond_the_input() -> None:
    reader = Reader(b"abc", "thing")
    with pytest.raises(Rejected) as info:
        reader.raw(2**32, "huge")
    assert info.value.reason == Reason.TRUNCATED
    assert reader.raw(0, "empty") == b""
    assert reader.raw(3, "all") == b"abc"


def test_expect_end_refuses_trailing_bytes() -> None:
    reader = Reader(b"\x01\x02\x03", "thing")
    reader.u8("first")
    with pytest.raises(Rejected) as info:
        reader.expect_end()
    assert info.value.reason == Reason.TRAILING_BYTES
    assert "2 unexpected bytes" in info.value.detail
    reader.u16("rest")
    reader.expect_end()
    Reader(b"", "empty").expect_end()


def test_big_endian_layout() -> None:
    w = Writer()
    w.u8(0x01)
    w.u16(0x0203)
    w.u32(0x04050607)
    w.u64(0x08090A0B0C0D0E0F)
    w.raw(b"\x10\x11")
    assert w.getvalue() == bytes(range(1, 0x12))
    assert len(w) == 17
    assert pack_u32(0x01020304) == b"\x01\x02\x03\x04"
    assert pack_u64(1) == bytes(7) + b"\x01"
    assert unpack_u32(b"\x00\x00\x01\x00") == 256
    assert unpack_u64(b"\xff" * 8) == 2**64 - 1


@given(
    st.integers(min_value=0, max_value=0xFF),
    st.integers(min_value=0, max_value=0xFFFF),
    st.integers(min_value=0, max_value=0xFFFF_FFFF),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=64),
)
def test_writer_reader_round_trip(a: int, b: int, c: int, d: int, raw: bytes) -> None:
    w = Writer()
    w.u8(a)
    w.u16(b)
    w.u32(c)
    w.u64(d)
    w.raw(raw)
    data = w.getvalue()
    assert len(data) == len(w) == 15 + len(raw)
    r = Reader(data, "round trip")
    assert r.u8("a") == a
    assert r.u16("b") == b
    assert r.u32("c") == c
    assert r.u64("d") == d
    assert r.raw(len(raw), "raw") == raw
    r.expect_end()
    assert unpack_u32(pack_u32(c)) == c
    assert unpack_u64(pack_u64(d)) == d


@pytest.mark.parametrize("value", [-1, 256])
def test_writer_refuses_out_of_range_u8(value: int) -> None:
    with pytest.raises(ValueError):
        Writer().u8(value)


@given(st.lists(st.binary(max_size=100), max_size=8))
def test_crc32_of_parts_is_crc32_of_the_concatenation(parts: list[bytes]) -> None:
    assert crc32(*parts) == zlib.crc32(b"".join(parts))


def test_crc32_known_values() -> None:
    assert crc32() == 0
    assert crc32(b"123456789") == 0xCBF43926  # the standard CRC-32 check value
    assert crc32(b"1234", b"", b"56789") == 0xCBF43926
