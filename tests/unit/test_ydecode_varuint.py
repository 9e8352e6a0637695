"""The grammar's varuint reader against a byte-at-a-time reference of the same rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.errors import Reason, Rejected
from memmesh.testing import scaled
from memmesh.ydecode import (
    _Reader,
    encode_update_at,
    encode_varuint,
    update_frame_bytes_max,
    update_item_bytes,
)

_MAX = 2**53 - 1


def _reference(data: bytes) -> tuple[int, int] | Reason:
    """(value, bytes read) or the reason: minimal LEB128, at most 8 bytes, at most 2^53 - 1."""
    value = 0
    for i in range(8):
        if i >= len(data):
            return Reason.TRUNCATED
        byte = data[i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                return Reason.BAD_VARINT
            if value > _MAX:
                return Reason.BAD_VARINT
            return value, i + 1
    return Reason.BAD_VARINT


def _read(data: bytes) -> tuple[int, int] | Reason:
    reader = _Reader(data)
    try:
        value = reader.varuint("field")
    except Rejected as exc:
        return exc.reason
    return value, reader.position


_continuations = st.lists(st.integers(0x80, 0xFF), max_size=9).map(bytes)


@settings(max_examples=scaled(3000), deadline=None)
@given(
    head=_continuations,
    tail=st.binary(max_size=3),
)
def test_the_varuint_reader_follows_the_reference(head: bytes, tail: bytes) -> None:
    data = head + tail
    assert _read(data) == _reference(data)


@settings(max_examples=scaled(1000), deadline=None)
@given(st.integers(0, _MAX))
def test_every_value_round_trips_in_its_minimal_encoding(value: int) -> None:
    out = bytearray()
    rest = value
    while True:
        low, rest = rest & 0x7F, rest >> 7
        out.append(low | (0x80 if rest else 0))
        if not rest:
            break
    assert _read(bytes(out) + b"\x07") == (value, len(out))
    assert encode_varuint(value) == bytes(out)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**21, _MAX])
def test_the_encoder_writes_the_minimal_encoding_at_each_length(value: int) -> None:
    encoded = encode_varuint(value)
    assert _read(encoded) == (value, len(encoded))
    assert len(encoded) == max(1, -(-value.bit_length() // 7))


@pytest.mark.parametrize("value", [-1, _MAX + 1])
def test_the_encoder_refuses_what_the_grammar_cannot_hold(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_varuint(value)


def test_the_edges_have_their_reasons() -> None:
    assert _read(b"") is Reason.TRUNCATED
    assert _read(b"\x80") is Reason.TRUNCATED
    assert _read(b"\x80\x00") is Reason.BAD_VARINT  # non-minimal
    assert _read(b"\xff" * 8) is Reason.BAD_VARINT  # longer than 8 bytes
    assert _read(b"\xff" * 7 + b"\x7f") is Reason.BAD_VARINT  # above 2^53 - 1
    assert _read(b"\xff" * 7 + b"\x0f") == (_MAX, 8)


@settings(max_examples=scaled(200))
@given(
    client=st.integers(0, _MAX),
    start=st.integers(0, _MAX),
    sizes=st.lists(st.integers(0, 70_000), min_size=1, max_size=40),
)
def test_an_updates_size_is_its_frame_and_its_items(
    client: int, start: int, sizes: list[int]
) -> None:
    """What a writer packs by (the items' bytes, the frame at its largest) against the encoder:
    exact for the items, and the frame's bound is met when the start clock takes 8 bytes."""
    pairs = [(bytes([i % 256]) * 32, bytes(size)) for i, size in enumerate(sizes)]
    payload, offsets = encode_update_at(client, start, pairs)
    items = [update_item_bytes(client, size) for size in sizes]
    slack = 8 - len(encode_varuint(start))
    assert len(payload) == update_frame_bytes_max(client, len(sizes)) - slack + sum(items)
    ends = [at + size for at, size in zip(offsets, sizes, strict=True)]
    assert [b - a for a, b in itertools.pairwise(ends)] == items[1:]
