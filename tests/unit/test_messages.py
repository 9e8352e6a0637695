"""The sync wire messages (``memmesh.core.messages``, docs/PROTOCOL.md section 13).

Every kind round-trips for any valid value (Hypothesis). Every bound of the tables in §13 is
checked from both sides, and every way a frame can be wrong is refused with ``Rejected`` and the
expected reason. Arbitrary bytes, arbitrary MessagePack values and mutated valid frames only ever
raise ``Rejected``. The ```message-vector blocks of §13.5 decode to the documented messages and
re-encode to the same bytes.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.core.messages import (
    ADDRESS_BYTES_MAX,
    ADDRESSES_PER_RECORD_MAX,
    CHAIN_LINK_BYTES_MAX,
    CHAIN_LINKS_MAX,
    CONFIRMS_MAX,
    COVERED_MAX,
    DETAIL_BYTES_MAX,
    ENVELOPE_BYTES_MAX,
    ENVELOPES_PER_MESSAGE_MAX,
    FORKS_PER_MESSAGE_MAX,
    HEADS_PER_MESSAGE_MAX,
    IDS_PER_MESSAGE_MAX,
    REASON_BYTES_MAX,
    RECORDS_PER_MESSAGE_MAX,
    VERSIONS_MAX,
    Auth,
    Beacon,
    Bye,
    Envelopes,
    ForkEntry,
    Frontier,
    GetIds,
    GetRange,
    Graft,
    HeadEntry,
    Hello,
    IHave,
    Message,
    NothingToSend,
    PeerRecord,
    Prune,
    Shuffle,
    decode_message,
    encode_message,
)
from memmesh.errors import Reason, Rejected
from memmesh.testing import scaled

REASON_MAX = REASON_BYTES_MAX
DETAIL_MAX = DETAIL_BYTES_MAX
ITEM_MAX = ENVELOPE_BYTES_MAX
FRAME = 1 << 20
BIG_FRAME = 4 << 20
U32_MAX = (1 << 32) - 1
SEQ_MAX = (1 << 63) - 1
KINDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Hello,
        Frontier,
        NothingToSend,
        GetRange,
        GetIds,
        Envelopes,
        Bye,
        Auth,
        Prune,
        Graft,
        Shuffle,
        IHave,
        Beacon,
    )
}
TAGS = {name: cls.__struct_config__.tag for name, cls in KINDS.items()}

MESH = b"\x11" * 32
NODE = b"\x22" * 32
A = b"\x33" * 32
B = b"\x55" * 32
ID1 = b"\x44" * 32
ID2 = b"\x66" * 32
NONCE = b"\x33" * 32
SIGNATURE = b"\x44" * 64
LINK = b"\x77" * 40  # a chain link: the decoder never looks inside (admission checks it)


def _decode(data: bytes, frame: int = FRAME) -> Message:
    return decode_message(data, frame_bytes_max=frame)


def _raw(message: Message) -> list[Any]:
    """The message as plain MessagePack values: ``[tag, field, ...]``, records as lists."""
    value = msgspec.msgpack.decode(encode_message(message))
    assert isinstance(value, list)
    return value


def _pack(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


def _refused(data: bytes, reason: Reason = Reason.BAD_MESSAGE, frame: int = FRAME) -> Rejected:
    with pytest.raises(Rejected) as info:
        _decode(data, frame)
    assert info.value.reason is reason, info.value
    return info.value


def _only_rejected(data: bytes, frame: int = FRAME) -> None:
    """Decode ``data``: it must be refused with a framing reason, or survive a round trip."""
    try:
        message = _decode(data, frame)
    except Rejected as exc:
        assert exc.reason in (Reason.BAD_MESSAGE, Reason.TOO_LARGE), exc
        return
    again = encode_message(message)
    assert _decode(again, max(frame, len(again))) == message


# -- strategies ------------------------------------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
u32s = st.integers(0, U32_MAX)
reqs = st.integers(1, U32_MAX)
epochs = st.integers(1, U32_MAX)
seqs = st.integers(1, SEQ_MAX)
addresses = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
# Up to 16 code points of at most 4 UTF-8 bytes each: at most 64 bytes (or plain ASCII to 64).
reasons = st.text(min_size=1, max_size=16) | st.text(
    st.characters(max_codepoint=0x7F), min_size=1, max_size=REASON_MAX
)
details = st.text(max_size=DETAIL_MAX // 4) | st.text(
    st.characters(max_codepoint=0x7F), max_size=DETAIL_MAX
)


@st.composite
def heads(draw: st.DrawFn) -> list[HeadEntry]:
    logs = draw(
        st.lists(st.tuples(ids | st.sampled_from([A, B]), epochs), unique=True, max_size=24)
    )
    return [HeadEntry(author, epoch, draw(seqs), draw(ids)) for author, epoch in sorted(logs)]


@st.composite
def forks(draw: st.DrawFn) -> list[ForkEntry]:
    pairs = draw(st.lists(st.lists(ids, min_size=2, max_size=2, unique=True), max_size=8))
    return [ForkEntry(*sorted(pair)) for pair in pairs]


@st.composite
def get_ranges(draw: st.DrawFn) -> GetRange:
    start, end = sorted((draw(seqs), draw(seqs)))
    return GetRange(draw(reqs), draw(ids), draw(epochs), start, end)


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "Hello": st.builds(
        Hello,
        st.lists(u32s, min_size=1, max_size=VERSIONS_MAX),
        ids,
        ids,
        ids,
        st.lists(st.binary(min_size=1, max_size=300), max_size=CHAIN_LINKS_MAX),
    ),
    "Auth": st.builds(Auth, st.binary(min_size=64, max_size=64)),
    "Prune": st.just(Prune()),
    "Graft": st.just(Graft()),
    "IHave": st.builds(IHave, st.lists(ids, min_size=1, max_size=IDS_PER_MESSAGE_MAX)),
    "Beacon": st.builds(
        Beacon,
        ids,
        st.integers(1, (1 << 63) - 1),
        st.integers(0, 255),
        st.binary(min_size=64, max_size=64),
    ),
    "Shuffle": st.builds(
        Shuffle,
        st.lists(
            st.builds(
                PeerRecord,
                ids,
                st.integers(0, (1 << 63) - 1),
                st.lists(addresses, min_size=1, max_size=ADDRESSES_PER_RECORD_MAX),
                st.binary(min_size=64, max_size=64),
            ),
            max_size=RECORDS_PER_MESSAGE_MAX,
        ),
        st.booleans(),
    ),
    "Frontier": st.builds(
        Frontier,
        u32s,
        heads(),
        forks(),
        st.booleans(),
        st.booleans(),
        st.lists(ids, max_size=8),
    ),
    "NothingToSend": st.builds(NothingToSend, u32s),
    "GetRange": get_ranges(),
    "GetIds": st.builds(GetIds, reqs, st.lists(ids, min_size=1, max_size=IDS_PER_MESSAGE_MAX)),
    "Envelopes": st.builds(
        Envelopes,
        u32s,
        st.lists(st.binary(min_size=1, max_size=300), max_size=12),
        st.booleans(),
        st.lists(st.binary(min_size=8, max_size=8), max_size=10).map(tuple),
        st.lists(ids, max_size=6).map(tuple),
    ),
    "Bye": st.builds(Bye, reasons, details),
}
messages = st.one_of(*STRATEGIES.values())


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=scaled(500))
@given(data=st.data())
def test_every_kind_round_trips(kind: str, data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[kind], label=kind)
    frame = encode_message(message)
    decoded = _decode(frame, len(frame))
    assert type(decoded) is KINDS[kind]
    assert decoded == message
    assert encode_message(decoded) == frame
    # The layout of §13.1: one array, the tag, then the fields in declaration order.
    raw = _raw(message)
    assert raw[0] == TAGS[kind]
    fields = len(msgspec.structs.fields(KINDS[kind]))
    if isinstance(message, Envelopes) and not message.confirms:
        fields -= 1 if message.covered else 2  # trailing empty fields are left out (§13.1)
    assert len(raw) == 1 + fields
    _refused(frame, Reason.TOO_LARGE, len(frame) - 1)


def test_the_tags_are_those_of_the_document() -> None:
    assert TAGS == {
        "Hello": 1,
        "Frontier": 2,
        "NothingToSend": 3,
        "GetRange": 4,
        "GetIds": 5,
        "Envelopes": 6,
        "Bye": 7,
        "Auth": 8,
        "Prune": 9,
        "Graft": 10,
        "Shuffle": 11,
        "IHave": 12,
        "Beacon": 13,
    }
    assert set(KINDS.values()) == set(typing.get_args(Message))  # none left out here


def _sorted_heads(n: int) -> list[HeadEntry]:
    return [HeadEntry(i.to_bytes(32, "big"), 1 + i % 3, 1, ID1) for i in range(n)]


def _sorted_forks(n: int) -> list[ForkEntry]:
    return [ForkEntry(i.to_bytes(32, "big"), (i + 1).to_bytes(32, "big")) for i in range(n)]


BOUNDARY_MESSAGES: dict[str, Message] = {
    "hello-max-versions": Hello([0, 1, U32_MAX, 7, 7, 2, 3, 4], MESH, NODE, NONCE, []),
    "hello-one-link": Hello([1], MESH, NODE, NONCE, [LINK]),
    "hello-links-of-one-byte": Hello([1], MESH, NODE, NONCE, [b"\x00"] * CHAIN_LINKS_MAX),
    "hello-max-chain": Hello(
        [U32_MAX] * VERSIONS_MAX,
        MESH,
        NODE,
        b"\xff" * 32,
        [b"\xab" * CHAIN_LINK_BYTES_MAX] * CHAIN_LINKS_MAX,
    ),
    "auth-zeros": Auth(bytes(64)),
    "auth-ones": Auth(b"\xff" * 64),
    "frontier-empty": Frontier(0, [], [], True, False, []),
    "frontier-max": Frontier(
        U32_MAX,
        _sorted_heads(HEADS_PER_MESSAGE_MAX),
        _sorted_forks(FORKS_PER_MESSAGE_MAX),
        False,
        True,
        [i.to_bytes(32, "big") for i in range(FORKS_PER_MESSAGE_MAX)],
    ),
    "frontier-one-author-several-epochs": Frontier(
        1,
        [HeadEntry(A, 1, 9, ID1), HeadEntry(A, 2, 1, ID2), HeadEntry(B, 1, 1, ID1)],
        [],
        True,
        False,
        [],
    ),
    "nothing-max-round": NothingToSend(U32_MAX),
    "range-of-one": GetRange(1, A, 1, 5, 5),
    "range-maxima": GetRange(U32_MAX, A, U32_MAX, SEQ_MAX, SEQ_MAX),
    "range-whole-log": GetRange(1, A, 1, 1, SEQ_MAX),
    "ids-max": GetIds(U32_MAX, [i.to_bytes(32, "big") for i in range(IDS_PER_MESSAGE_MAX)]),
    "ids-one": GetIds(1, [ID1]),
    "push-empty": Envelopes(0, [], False),
    "push-covered-max": Envelopes(0, [b"\x01"], False, tuple(bytes([i]) * 8 for i in range(64))),
    "push-confirms-max": Envelopes(
        0, [b"\x01"], False, (), tuple(i.to_bytes(32, "big") for i in range(CONFIRMS_MAX))
    ),
    "push-covered-and-confirms": Envelopes(0, [b"\x01"], False, (b"\x0a" * 8,), (ID1,)),
    "items-max-count": Envelopes(1, [b"\x01"] * ENVELOPES_PER_MESSAGE_MAX, True),
    "reason-64-ascii": Bye("r" * REASON_MAX, "d" * DETAIL_MAX),
    "reason-64-bytes-utf8": Bye("\U0001f600" * (REASON_MAX // 4), "\u00e9" * (DETAIL_MAX // 2)),
    "bye-empty-detail": Bye("x", ""),
    "shuffle-empty": Shuffle([], True),
    "shuffle-max": Shuffle(
        [
            PeerRecord(
                i.to_bytes(32, "big"),
                (1 << 63) - 1,
                ["w" * ADDRESS_BYTES_MAX] * ADDRESSES_PER_RECORD_MAX,
                b"\xee" * 64,
            )
            for i in range(RECORDS_PER_MESSAGE_MAX)
        ],
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(BOUNDARY_MESSAGES))
def test_messages_at_their_bounds_round_trip(name: str) -> None:
    message = BOUNDARY_MESSAGES[name]
    frame = encode_message(message)
    assert _decode(frame, len(frame)) == message


def test_an_item_of_the_largest_envelope_size_fits_with_14_bytes_of_overhead() -> None:
    """§13.1: a frame limit of envelope_bytes_max + 14 carries any single admissible envelope."""
    message = Envelopes(U32_MAX, [b"\xab" * ITEM_MAX], True)
    frame = encode_message(message)
    assert len(frame) == ITEM_MAX + 14
    assert _decode(frame, ITEM_MAX + 14) == message
    _refused(_pack([6, 0, [b"\xab" * (ITEM_MAX + 1)], False]), frame=BIG_FRAME)


def test_a_push_without_covered_is_the_frame_of_before_and_with_it_one_more_field() -> None:
    """An empty ``covered`` is left out, so frames without it are what they were; a frame
    that has it decodes to it, and one without decodes to an empty one."""
    bare = encode_message(PUSH)
    assert _raw(PUSH) == [6, 0, [b"\x01\x02\x03"], False]
    assert _decode(bare) == PUSH and PUSH.covered == ()
    covered = Envelopes(0, [b"\x01\x02\x03"], False, (b"\x0a" * 8, b"\x0b" * 8))
    assert _raw(covered) == [6, 0, [b"\x01\x02\x03"], False, [b"\x0a" * 8, b"\x0b" * 8]]
    assert _decode(encode_message(covered)) == covered
    assert _decode(_pack([6, 0, [b"\x01\x02\x03"], False, []])) == PUSH


def test_a_push_confirms_after_covered_and_only_when_it_confirms_something() -> None:
    """``confirms`` comes after ``covered`` (written empty when only ``confirms`` has ids) and
    is left out when empty, so a push that confirms nothing is the frame it was before."""
    confirming = Envelopes(0, [b"\x01\x02\x03"], False, (), (ID1, ID2))
    assert _raw(confirming) == [6, 0, [b"\x01\x02\x03"], False, [], [ID1, ID2]]
    assert _decode(encode_message(confirming)) == confirming
    both = Envelopes(0, [b"\x01"], False, (b"\x0a" * 8,), (ID1,))
    assert _raw(both) == [6, 0, [b"\x01"], False, [b"\x0a" * 8], [ID1]]
    assert _decode(encode_message(both)) == both
    assert _decode(_pack([6, 0, [b"\x01\x02\x03"], False, [], []])) == PUSH


def test_the_largest_hello_is_65_733_bytes() -> None:
    """§13.1: 16 links of 4 KiB, 8 versions of 2^32 - 1: the largest frame a Hello can be, far
    under any frame limit a node accepts."""
    message = BOUNDARY_MESSAGES["hello-max-chain"]
    frame = encode_message(message)
    assert len(frame) == 65_733
    assert _decode(frame, len(frame)) == message
    _refused(frame, Reason.TOO_LARGE, len(frame) - 1)


def test_wider_integer_encodings_are_the_same_message() -> None:
    """§13.1: decoders accept any integer form; encoders write the shortest."""
    assert _decode(bytes.fromhex("9203d005")) == NothingToSend(5)
    assert _decode(bytes.fromhex("9203cf0000000000000005")) == NothingToSend(5)
    assert _decode(bytes.fromhex("dc00020305")) == NothingToSend(5)
    assert encode_message(NothingToSend(5)) == bytes.fromhex("920305")


# -- explicit rejections ---------------------------------------------------------------------------


def test_a_frame_over_the_limit_is_too_large_before_anything_is_decoded() -> None:
    frame = encode_message(Hello([1], MESH, NODE, NONCE, []))
    assert _decode(frame, len(frame)) == Hello([1], MESH, NODE, NONCE, [])
    _refused(frame, Reason.TOO_LARGE, len(frame) - 1)
    # Garbage over the limit is refused for its size, not for its content.
    _refused(b"\xc1" * 101, Reason.TOO_LARGE, 100)
    _refused(b"\xc1" * 100, Reason.BAD_MESSAGE, 100)
    _refused(b"", Reason.BAD_MESSAGE, 0)


@pytest.mark.parametrize(
    "message",
    [
        Hello([1], MESH, NODE, NONCE, []),
        Hello([1, 2], MESH, NODE, NONCE, [LINK, b"\x01"]),
        Auth(SIGNATURE),
        BOUNDARY_MESSAGES["frontier-one-author-several-epochs"],
        GetRange(7, A, 1, 1, 100),
        GetIds(3, [ID1, ID2]),
        Envelopes(0, [b"\x01\x02\x03", b"xyz"], True),
        Bye("bad_message", "d\u00e9tail"),
        NothingToSend(70_000),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_truncation_of_a_frame_is_refused(message: Message) -> None:
    frame = encode_message(message)
    for cut in range(len(frame)):
        _refused(frame[:cut])


@pytest.mark.parametrize("trailer", [b"\x00", b"\xc0", b"\x90", encode_message(NothingToSend(1))])
def test_trailing_bytes_after_the_array_are_refused(trailer: bytes) -> None:
    """msgspec's ``Decoder.decode`` refuses trailing data itself; nothing is ignored."""
    for message in (
        Hello([1], MESH, NODE, NONCE, [LINK]),
        Auth(SIGNATURE),
        NothingToSend(1),
        Envelopes(0, [b"\x01"], False),
    ):
        error = _refused(encode_message(message) + trailer)
        assert "trailing" in error.detail


def _replaced(message: Message, path: tuple[int, ...], value: object) -> bytes:
    """The message's frame with the element at ``path`` (indices into nested arrays) replaced."""
    raw = _raw(message)
    node: Any = raw
    for index in path[:-1]:
        node = node[index]
    node[path[-1]] = value
    return _pack(raw)


def _appended(message: Message, path: tuple[int, ...], value: object) -> bytes:
    raw = _raw(message)
    node: Any = raw
    for index in path:
        node = node[index]
    node.append(value)
    return _pack(raw)


def _dropped(message: Message, path: tuple[int, ...]) -> bytes:
    raw = _raw(message)
    node: Any = raw
    for index in path[:-1]:
        node = node[index]
    del node[path[-1]]
    return _pack(raw)


HELLO = Hello([1], MESH, NODE, NONCE, [])
HELLO_CHAIN = Hello([1], MESH, NODE, NONCE, [LINK, LINK])
AUTH = Auth(SIGNATURE)
FRONTIER = Frontier(
    3,
    [HeadEntry(A, 1, 5, ID1), HeadEntry(B, 1, 1, ID2)],
    [ForkEntry(ID1, ID2)],
    False,
    True,
    [ID2],
)
NOTHING = NothingToSend(3)
RANGE = GetRange(7, A, 1, 1, 100)
GET_IDS = GetIds(3, [ID1, ID2])
PUSH = Envelopes(0, [b"\x01\x02\x03"], False)
BYE = Bye("bad_message", "detail")
RECORD = PeerRecord(NODE, 5, ["ws://127.0.0.1:7400/v1/sync"], SIGNATURE)
SHUFFLE = Shuffle([RECORD], True)
EVERY_KIND: list[Message] = [
    HELLO,
    AUTH,
    FRONTIER,
    NOTHING,
    RANGE,
    GET_IDS,
    PUSH,
    BYE,
    Prune(),
    Graft(),
    SHUFFLE,
    IHave([ID1, ID2]),
    Beacon(NODE, 7, 2, SIGNATURE),
]

BAD_FRAMES: dict[str, bytes] = {
    # Not one array with a known tag.
    "nil": _pack(None),
    "int": _pack(1),
    "bin": _pack(b"\x01"),
    "map": _pack({"versions": [1], "mesh": MESH, "node": NODE, "nonce": NONCE, "chain": []}),
    "map-with-tag": _pack({"type": 1}),
    "empty-array": _pack([]),
    "only-the-tag": _pack([1]),
    "invalid-opcode": b"\xc1",
    "tag-0": _replaced(HELLO, (0,), 0),
    "tag-14": _replaced(HELLO, (0,), 14),
    "beacon-seq-0": _pack([13, NODE, 0, 0, SIGNATURE]),
    "beacon-hops-256": _pack([13, NODE, 1, 256, SIGNATURE]),
    "beacon-short-signature": _pack([13, NODE, 1, 0, SIGNATURE[:63]]),
    "beacon-root-31": _pack([13, NODE[:31], 1, 0, SIGNATURE]),
    "ihave-empty": _pack([12, []]),
    "ihave-257": _pack([12, [ID1] * (IDS_PER_MESSAGE_MAX + 1)]),
    "ihave-id-31": _pack([12, [ID1[:31]]]),
    "prune-with-a-field": _pack([9, 1]),
    "graft-with-a-field": _pack([10, b""]),
    "tag-255": _replaced(HELLO, (0,), 255),
    "tag-minus-1": _replaced(HELLO, (0,), -1),
    "tag-2^64-1": _replaced(HELLO, (0,), (1 << 64) - 1),
    "tag-as-str": _replaced(HELLO, (0,), "1"),
    "tag-as-bool": _replaced(HELLO, (0,), True),
    "tag-as-float": _replaced(HELLO, (0,), 1.0),
    "tag-of-another-kind": _replaced(HELLO, (0,), 4),
    "hello-with-the-auth-tag": _replaced(HELLO, (0,), 8),
    "auth-with-the-hello-tag": _replaced(AUTH, (0,), 1),
    # Arrays longer or shorter than the struct, at the top and inside records.
    "hello-extra-field": _appended(HELLO, (), 0),
    "hello-missing-field": _dropped(HELLO, (3,)),
    "hello-missing-chain": _dropped(HELLO, (5,)),
    "hello-without-nonce-and-chain": _pack([1, [1], MESH, NODE]),
    "hello-chain-before-nonce": _pack([1, [1], MESH, NODE, [], NONCE]),
    "auth-extra-field": _appended(AUTH, (), SIGNATURE),
    "auth-missing-field": _dropped(AUTH, (1,)),
    "frontier-extra-field": _appended(FRONTIER, (), True),
    "frontier-missing-field": _dropped(FRONTIER, (5,)),
    "nothing-extra-field": _appended(NOTHING, (), 0),
    "range-extra-field": _appended(RANGE, (), 100),
    "range-missing-field": _dropped(RANGE, (5,)),
    "ids-extra-field": _appended(GET_IDS, (), []),
    "envelopes-extra-field": _appended(PUSH, (), False),
    "bye-extra-field": _appended(BYE, (), ""),
    "bye-missing-field": _dropped(BYE, (2,)),
    "head-extra-field": _appended(FRONTIER, (2, 0), ID1),
    "head-missing-field": _dropped(FRONTIER, (2, 0, 3)),
    "fork-extra-field": _appended(FRONTIER, (3, 0), ID2),
    "fork-missing-field": _dropped(FRONTIER, (3, 0, 1)),
    # Wrong types.
    "versions-not-array": _replaced(HELLO, (1,), 1),
    "version-bool": _replaced(HELLO, (1,), [True]),
    "version-str": _replaced(HELLO, (1,), ["1"]),
    "mesh-as-str": _replaced(HELLO, (2,), "1" * 32),
    "mesh-as-array": _replaced(HELLO, (2,), list(MESH)),
    "mesh-nil": _replaced(HELLO, (2,), None),
    "mesh-as-ext": _replaced(HELLO, (2,), msgspec.msgpack.Ext(1, MESH)),
    "nonce-as-str": _replaced(HELLO, (4,), "3" * 32),
    "nonce-nil": _replaced(HELLO, (4,), None),
    "chain-as-bin": _replaced(HELLO, (5,), LINK),
    "chain-nil": _replaced(HELLO, (5,), None),
    "chain-as-map": _replaced(HELLO, (5,), {}),
    "chain-link-as-str": _replaced(HELLO_CHAIN, (5, 1), "w" * 40),
    "chain-link-as-int": _replaced(HELLO_CHAIN, (5, 0), 1),
    "chain-link-as-array": _replaced(HELLO_CHAIN, (5, 0), list(LINK)),
    "signature-as-str": _replaced(AUTH, (1,), "4" * 64),
    "signature-as-array": _replaced(AUTH, (1,), list(SIGNATURE)),
    "signature-nil": _replaced(AUTH, (1,), None),
    "round-str": _replaced(FRONTIER, (1,), "3"),
    "round-float": _replaced(NOTHING, (1,), 3.0),
    "heads-as-bin": _replaced(FRONTIER, (2,), b"\x00" * 32),
    "head-as-map": _replaced(FRONTIER, (2, 0), {"author": A}),
    "head-epoch-bool": _replaced(FRONTIER, (2, 0, 1), True),
    "fork-as-bin": _replaced(FRONTIER, (3, 0), ID1 + ID2),
    "last-as-int": _replaced(FRONTIER, (4,), 1),
    "reply-nil": _replaced(FRONTIER, (5,), None),
    "range-epoch-bool": _replaced(RANGE, (3,), True),
    "range-seq-float": _replaced(RANGE, (4,), 1.0),
    "range-author-str": _replaced(RANGE, (2,), "3" * 32),
    "ids-as-bin": _replaced(GET_IDS, (2,), ID1),
    "id-as-str": _replaced(GET_IDS, (2, 0), "4" * 32),
    "items-as-bin": _replaced(PUSH, (2,), b"\x01\x02\x03"),
    "item-as-str": _replaced(PUSH, (2, 0), "abc"),
    "item-as-int": _replaced(PUSH, (2, 0), 1),
    "more-as-int": _replaced(PUSH, (3,), 0),
    "req-nil": _replaced(PUSH, (1,), None),
    "reason-as-bin": _replaced(BYE, (1,), b"bad_message"),
    "detail-nil": _replaced(BYE, (2,), None),
    # Ids of 31 or 33 bytes, wherever an id goes.
    "mesh-31": _replaced(HELLO, (2,), MESH[:31]),
    "node-33": _replaced(HELLO, (3,), NODE + b"\x22"),
    "node-empty": _replaced(HELLO, (3,), b""),
    "nonce-31": _replaced(HELLO, (4,), NONCE[:31]),
    "nonce-33": _replaced(HELLO, (4,), NONCE + b"\x33"),
    "nonce-empty": _replaced(HELLO, (4,), b""),
    "nonce-64": _replaced(HELLO, (4,), NONCE * 2),
    "head-author-31": _replaced(FRONTIER, (2, 0, 0), A[:31]),
    "head-id-33": _replaced(FRONTIER, (2, 0, 3), ID1 + b"\x00"),
    "fork-a-31": _replaced(FRONTIER, (3, 0, 0), ID1[:31]),
    "fork-b-33": _replaced(FRONTIER, (3, 0, 1), ID2 + b"\xff"),
    "range-author-33": _replaced(RANGE, (2,), A + b"\x33"),
    "get-id-31": _replaced(GET_IDS, (2, 1), ID2[:31]),
    "get-id-33": _replaced(GET_IDS, (2, 0), ID1 + b"\x44"),
    # Lists and strings outside their bounds.
    "versions-none": _replaced(HELLO, (1,), []),
    "versions-9": _replaced(HELLO, (1,), [1] * (VERSIONS_MAX + 1)),
    "chain-17": _replaced(HELLO, (5,), [LINK] * (CHAIN_LINKS_MAX + 1)),
    "chain-17-links-of-one-byte": _replaced(HELLO, (5,), [b"\x01"] * (CHAIN_LINKS_MAX + 1)),
    "chain-link-empty": _replaced(HELLO_CHAIN, (5, 0), b""),
    "chain-link-4097": _replaced(HELLO_CHAIN, (5, 1), b"\x77" * (CHAIN_LINK_BYTES_MAX + 1)),
    "signature-63": _replaced(AUTH, (1,), SIGNATURE[:63]),
    "signature-65": _replaced(AUTH, (1,), SIGNATURE + b"\x44"),
    "signature-empty": _replaced(AUTH, (1,), b""),
    "signature-32": _replaced(AUTH, (1,), SIGNATURE[:32]),
    "ids-none": _replaced(GET_IDS, (2,), []),
    "ids-257": _replaced(GET_IDS, (2,), [ID1] * (IDS_PER_MESSAGE_MAX + 1)),
    "heads-4097": _replaced(
        FRONTIER, (2,), [[h.author, h.epoch, h.seq, h.id] for h in _sorted_heads(4097)]
    ),
    "forks-4097": _replaced(FRONTIER, (3,), [[ID1, ID2]] * (FORKS_PER_MESSAGE_MAX + 1)),
    "items-4097": _replaced(PUSH, (2,), [b"\x01"] * (ENVELOPES_PER_MESSAGE_MAX + 1)),
    "covered-65": _appended(PUSH, (), [b"\x01" * 8] * (COVERED_MAX + 1)),
    "covered-prefix-7": _appended(PUSH, (), [b"\x01" * 7]),
    "covered-prefix-9": _appended(PUSH, (), [b"\x01" * 9]),
    "covered-not-a-list": _appended(PUSH, (), b"\x01" * 8),
    "confirms-65": _pack([*_raw(PUSH), [], [ID1] * (CONFIRMS_MAX + 1)]),
    "confirms-id-31": _pack([*_raw(PUSH), [], [ID1[:31]]]),
    "confirms-id-33": _pack([*_raw(PUSH), [], [ID1 + b"\x01"]]),
    "confirms-not-a-list": _pack([*_raw(PUSH), [], ID1]),
    "item-empty": _replaced(PUSH, (2, 0), b""),
    "reason-empty": _replaced(BYE, (1,), ""),
    "reason-65-ascii": _replaced(BYE, (1,), "r" * (REASON_MAX + 1)),
    "reason-68-bytes-in-17-chars": _replaced(BYE, (1,), "\U0001f600" * 17),
    "reason-66-bytes-in-64-chars": _replaced(BYE, (1,), "\u00e9" * 2 + "r" * 62),
    "detail-257-ascii": _replaced(BYE, (2,), "d" * (DETAIL_MAX + 1)),
    "detail-258-bytes-in-129-chars": _replaced(BYE, (2,), "\u00e9" * 129),
    # Integers outside their bounds.
    "version-minus-1": _replaced(HELLO, (1, 0), -1),
    "version-2^32": _replaced(HELLO, (1, 0), 1 << 32),
    "round-minus-1": _replaced(FRONTIER, (1,), -1),
    "round-2^32": _replaced(NOTHING, (1,), 1 << 32),
    "head-epoch-0": _replaced(FRONTIER, (2, 0, 1), 0),
    "head-epoch-2^32": _replaced(FRONTIER, (2, 0, 1), 1 << 32),
    "head-seq-0": _replaced(FRONTIER, (2, 0, 2), 0),
    "head-seq-minus-1": _replaced(FRONTIER, (2, 0, 2), -1),
    "head-seq-2^63": _replaced(FRONTIER, (2, 0, 2), 1 << 63),
    "range-req-0": _replaced(RANGE, (1,), 0),
    "range-req-2^32": _replaced(RANGE, (1,), 1 << 32),
    "range-epoch-0": _replaced(RANGE, (3,), 0),
    "range-epoch-minus-1": _replaced(RANGE, (3,), -1),
    "range-epoch-2^32": _replaced(RANGE, (3,), 1 << 32),
    "range-start-0": _replaced(RANGE, (4,), 0),
    "range-start-minus-1": _replaced(RANGE, (4,), -1),
    "range-end-0": _replaced(RANGE, (5,), 0),
    "range-end-2^63": _replaced(RANGE, (5,), 1 << 63),
    "range-end-2^64-1": _replaced(RANGE, (5,), (1 << 64) - 1),
    "range-start-min-int64": _replaced(RANGE, (4,), -(1 << 63)),
    "ids-req-0": _replaced(GET_IDS, (1,), 0),
    "envelopes-req-minus-1": _replaced(PUSH, (1,), -1),
    "envelopes-req-2^32": _replaced(PUSH, (1,), 1 << 32),
    # Cross-field rules (§13.3).
    "range-end-before-start": _pack([4, 7, A, 1, 10, 9]),
    "range-end-1-start-max": _pack([4, 7, A, 1, SEQ_MAX, 1]),
    "heads-unsorted-by-author": _replaced(FRONTIER, (2,), [[B, 1, 1, ID2], [A, 1, 5, ID1]]),
    "heads-unsorted-by-epoch": _replaced(FRONTIER, (2,), [[A, 2, 1, ID2], [A, 1, 5, ID1]]),
    "heads-duplicate-log": _replaced(FRONTIER, (2,), [[A, 1, 1, ID1], [A, 1, 2, ID2]]),
    "heads-identical": _replaced(FRONTIER, (2,), [[A, 1, 5, ID1], [A, 1, 5, ID1]]),
    "heads-duplicate-not-adjacent": _replaced(
        FRONTIER, (2,), [[A, 1, 1, ID1], [B, 1, 1, ID1], [A, 1, 1, ID1]]
    ),
    "shuffle-33-records": _replaced(SHUFFLE, (1,), [list(_raw(SHUFFLE)[1][0])] * 33),
    "shuffle-missing-reply": _dropped(SHUFFLE, (2,)),
    "record-extra-field": _appended(SHUFFLE, (1, 0), 1),
    "record-no-address": _replaced(SHUFFLE, (1, 0, 2), []),
    "record-5-addresses": _replaced(SHUFFLE, (1, 0, 2), ["ws://a"] * 5),
    "record-empty-address": _replaced(SHUFFLE, (1, 0, 2), [""]),
    "record-address-257": _replaced(SHUFFLE, (1, 0, 2), ["w" * 257]),
    "record-address-with-space": _replaced(SHUFFLE, (1, 0, 2), ["ws://a b"]),
    "record-address-with-newline": _replaced(SHUFFLE, (1, 0, 2), ["ws://a\nb"]),
    "record-address-not-ascii": _replaced(SHUFFLE, (1, 0, 2), ["ws://\u00e9"]),
    "record-issued-minus-1": _replaced(SHUFFLE, (1, 0, 1), -1),
    "record-issued-2^63": _replaced(SHUFFLE, (1, 0, 1), 1 << 63),
    "record-signature-63": _replaced(SHUFFLE, (1, 0, 3), SIGNATURE[:63]),
    "record-node-31": _replaced(SHUFFLE, (1, 0, 0), NODE[:31]),
    "fork-a-equals-b": _replaced(FRONTIER, (3, 0), [ID1, ID1]),
    "fork-a-greater-than-b": _replaced(FRONTIER, (3, 0), [ID2, ID1]),
    # Strings that are not UTF-8 (msgspec lets these out as UnicodeDecodeError).
    "reason-not-utf8": bytes.fromhex("9307a2c328a0"),
    "reason-encoded-surrogate": bytes.fromhex("9307a3eda080a0"),
    "detail-not-utf8": bytes.fromhex("9307a178a1ff"),
    "detail-overlong-utf8": bytes.fromhex("9307a178a2c0af"),
    # Lengths that claim more than the frame holds.
    "array32-huge": bytes.fromhex("dd ffffffff 01".replace(" ", "")),
    "ids-array32-huge": bytes.fromhex("93 05 01 dd ffffffff".replace(" ", "")),
    "bin32-huge": bytes.fromhex("94 06 00 91 c6 ffffffff".replace(" ", "")),
    "str32-huge": bytes.fromhex("93 07 db ffffffff".replace(" ", "")),
}


def test_the_frames_the_bad_ones_are_made_from_are_valid() -> None:
    assert sorted(type(m).__name__ for m in EVERY_KIND) == sorted(KINDS)
    for message in [*EVERY_KIND, HELLO_CHAIN]:
        assert _decode(encode_message(message)) == message


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_bad_frames_are_refused_as_bad_messages(name: str) -> None:
    _refused(BAD_FRAMES[name], Reason.BAD_MESSAGE, BIG_FRAME)


def test_fixing_the_broken_field_makes_the_frame_valid() -> None:
    """The bad frames are one edit away from a valid one (so each tests what it names)."""
    assert _decode(_pack([4, 7, A, 1, 9, 9])) == GetRange(7, A, 1, 9, 9)
    assert _decode(_replaced(GET_IDS, (2,), [ID1] * IDS_PER_MESSAGE_MAX)) == GetIds(
        3, [ID1] * IDS_PER_MESSAGE_MAX
    )
    assert _decode(_replaced(BYE, (1,), "\U0001f600" * 16)) == Bye("\U0001f600" * 16, "detail")
    assert _decode(_replaced(FRONTIER, (3, 0), [ID1, ID2])) == FRONTIER
    assert _decode(_replaced(RANGE, (3,), U32_MAX)) == GetRange(7, A, U32_MAX, 1, 100)
    assert _decode(_replaced(HELLO, (4,), b"\x00" * 32)) == Hello([1], MESH, NODE, bytes(32), [])
    assert _decode(_replaced(HELLO, (5,), [LINK] * CHAIN_LINKS_MAX)) == Hello(
        [1], MESH, NODE, NONCE, [LINK] * CHAIN_LINKS_MAX
    )
    assert _decode(_replaced(HELLO_CHAIN, (5, 0), b"\x01")) == Hello(
        [1], MESH, NODE, NONCE, [b"\x01", LINK]
    )
    big = b"\x77" * CHAIN_LINK_BYTES_MAX
    assert _decode(_replaced(HELLO_CHAIN, (5, 1), big)) == Hello(
        [1], MESH, NODE, NONCE, [LINK, big]
    )
    assert _decode(_replaced(AUTH, (1,), b"\x00" * 64)) == Auth(bytes(64))
    confirms = [ID1] * CONFIRMS_MAX
    assert _decode(_pack([*_raw(PUSH), [], confirms])) == Envelopes(
        0, [b"\x01\x02\x03"], False, (), tuple(confirms)
    )


# -- nothing but Rejected --------------------------------------------------------------------------


@settings(max_examples=scaled(500))
@given(data=st.binary(max_size=512), frame=st.integers(0, 600))
def test_arbitrary_bytes_raise_only_rejected(data: bytes, frame: int) -> None:
    _only_rejected(data, frame)


@settings(max_examples=scaled(500))
@given(length=st.integers(0, 15), tag=st.integers(0, 9), rest=st.binary(max_size=256))
def test_arbitrary_bytes_behind_an_array_and_a_tag_raise_only_rejected(
    length: int, tag: int, rest: bytes
) -> None:
    _only_rejected(bytes([0x90 | length, tag]) + rest)


_ints = st.integers(-(1 << 63), (1 << 64) - 1) | st.sampled_from(
    [0, 1, -1, U32_MAX, 1 << 32, SEQ_MAX, 1 << 63, (1 << 64) - 1]
)
_scalars = (
    st.none()
    | st.booleans()
    | _ints
    | st.floats()
    | st.text(max_size=70)
    | st.binary(max_size=40)
    | st.sampled_from(
        [MESH, A, ID1, ID2, MESH[:31], MESH + b"\x00", SIGNATURE, SIGNATURE[:63], "bad_message"]
    )
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=24,
)


@settings(max_examples=scaled(500))
@given(tag=st.integers(-1, 9), fields=st.lists(_values, max_size=7))
def test_arbitrary_messagepack_arrays_raise_only_rejected(tag: int, fields: list[Any]) -> None:
    _only_rejected(_pack([tag, *fields]))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with up to four byte edits: flip, overwrite, insert, delete or truncate."""
    buf = bytearray(encode_message(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(buf)))
        if op == "flip" and at < len(buf):
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(buf):
            buf[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x90, 0xC0, 0xC1, 0xC4, 0xFF]))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del buf[at:]
    return bytes(buf)


@settings(max_examples=scaled(1000))
@given(data=mutated_frames(), frame=st.sampled_from([FRAME, 64]))
def test_mutated_valid_frames_raise_only_rejected(data: bytes, frame: int) -> None:
    _only_rejected(data, frame)


# -- the vectors of docs/PROTOCOL.md §13.5 ---------------------------------------------------------

PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "PROTOCOL.md"
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def _message_vectors() -> list[dict[str, str]]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    vectors = []
    for match in _FENCE.finditer(text):
        if match.group(1) != "message-vector":
            continue
        fields: dict[str, str] = {}
        for line in match.group(2).splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            assert sep, f"not a `key: value` line: {line!r}"
            key = key.strip()
            assert key not in fields, f"duplicate key {key!r}"
            fields[key] = value.strip()
        vectors.append(fields)
    return vectors


def _from_doc(info: msgspec.inspect.Type, value: Any) -> Any:
    """A field value as the document writes it (JSON, byte strings as hex) in its Python type."""
    if isinstance(info, msgspec.inspect.BytesType):
        assert isinstance(value, str)
        return bytes.fromhex(value)
    if isinstance(info, msgspec.inspect.ListType):
        assert isinstance(value, list)
        return [_from_doc(info.item_type, item) for item in value]
    if isinstance(info, msgspec.inspect.VarTupleType):
        assert isinstance(value, list)
        return tuple(_from_doc(info.item_type, item) for item in value)
    return value


def _documented_message(vector: dict[str, str]) -> Message:
    cls = KINDS[vector["kind"]]
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    # Every field in order; a field with a default may be left out at the end, as in the frame.
    given = [f for f in info.fields if f.name in vector]
    assert all(f.default is not msgspec.NODEFAULT for f in info.fields[len(given) :])
    names = [f.name for f in given]
    assert list(vector) == ["name", "kind", *names, "frame"], f"keys of {vector['name']}"
    message: Message = cls(*(_from_doc(f.type, json.loads(vector[f.name])) for f in given))
    return message


VECTORS = _message_vectors()


def test_section_13_has_the_vectors_it_describes() -> None:
    names = [v["name"] for v in VECTORS]
    assert names == [
        "hello",
        "auth",
        "get-range",
        "push",
        "push-covered",
        "push-confirms",
        "beacon",
    ]
    by_name = {v["name"]: _documented_message(v) for v in VECTORS}
    assert by_name["hello"] == Hello([1], b"\x11" * 32, b"\x22" * 32, b"\x33" * 32, [])
    assert by_name["auth"] == Auth(b"\x44" * 64)
    assert by_name["push"] == Envelopes(0, [b"\x01\x02\x03"], False)
    assert by_name["push-covered"] == Envelopes(0, [b"\x01\x02\x03"], False, (b"\x0a" * 8,))
    assert by_name["push-confirms"] == Envelopes(0, [b"\x01\x02\x03"], False, (), (b"\x55" * 32,))
    assert by_name["beacon"] == Beacon(b"\x22" * 32, 7, 2, b"\x44" * 64)
    assert isinstance(by_name["get-range"], GetRange)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_message_vector(vector: dict[str, str]) -> None:
    message = _documented_message(vector)
    frame = bytes.fromhex(vector["frame"])
    assert encode_message(message).hex() == vector["frame"]
    decoded = _decode(frame, len(frame))
    assert decoded == message
    assert encode_message(decoded) == frame
    # The layout of §13.1, read with a schema-less MessagePack decoder.
    raw = msgspec.msgpack.decode(frame)
    assert raw[0] == TAGS[vector["kind"]]
    assert len(raw) == 1 + len(vector) - 3  # the fields the vector gives (not name, kind, frame)


def test_the_element_by_element_dump_is_the_hello_vector() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    [dump] = [
        m.group(2)
        for m in _FENCE.finditer(text)
        if m.group(2).lstrip().startswith("bytes                 meaning")
    ]
    rebuilt = ""
    for line in dump.splitlines()[1:]:
        hex_part = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for token in hex_part.split():
            first, ellipsis, _ = token.partition("\u2026")  # "11…11": 32 bytes of 0x11
            rebuilt += first * 32 if ellipsis else token
    hello = next(v for v in VECTORS if v["name"] == "hello")
    assert rebuilt == hello["frame"]
