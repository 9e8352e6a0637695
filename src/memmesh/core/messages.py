"""Sync wire messages, version 1: typed, bounded, one MessagePack array per frame.

Control messages are unsigned and encoded with msgspec's MessagePack codec: each message is an
array whose first element is its kind (a small integer tag), then its fields in declaration order.
Signed objects inside them (envelopes) travel as their exact canonical bytes, so a signature is
checked over exactly what its author signed. The layout of every message is in
``docs/PROTOCOL.md`` section 13.

:func:`decode_message` is bounded before it allocates: the frame length is checked first, then
msgspec validates every field's type, length and range while it decodes; anything else is
``Rejected`` with a reason code. Semantic checks that span fields (a range's end before its
start) are made here too, so the core only ever sees well-formed messages.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec

from ..errors import Reason, Rejected

__all__ = [
    "CONFIRMS_MAX",
    "COVERED_MAX",
    "COVER_PREFIX_BYTES",
    "ENVELOPES_PER_MESSAGE_MAX",
    "FORKS_PER_MESSAGE_MAX",
    "HEADS_PER_MESSAGE_MAX",
    "IDS_PER_MESSAGE_MAX",
    "PROTOCOL_VERSION",
    "Auth",
    "Beacon",
    "Bye",
    "Envelopes",
    "ForkEntry",
    "Frontier",
    "GetIds",
    "GetRange",
    "Graft",
    "HeadEntry",
    "Hello",
    "IHave",
    "Message",
    "NothingToSend",
    "PeerRecord",
    "Prune",
    "Shuffle",
    "decode_message",
    "encode_message",
]

PROTOCOL_VERSION: Final = 1
VERSIONS_MAX: Final = 8
HEADS_PER_MESSAGE_MAX: Final = 4096
FORKS_PER_MESSAGE_MAX: Final = 4096
IDS_PER_MESSAGE_MAX: Final = 256
ENVELOPES_PER_MESSAGE_MAX: Final = 4096
REASON_BYTES_MAX: Final = 64
DETAIL_BYTES_MAX: Final = 256
CHAIN_LINKS_MAX: Final = 16
CHAIN_LINK_BYTES_MAX: Final = 4096
"""An admit claim is about 500 bytes; 16 links of 4 KiB keep a Hello far below any frame."""
RECORDS_PER_MESSAGE_MAX: Final = 32
ADDRESSES_PER_RECORD_MAX: Final = 4
ADDRESS_BYTES_MAX: Final = 256
COVER_PREFIX_BYTES: Final = 8
"""How much of a node key names it in a push's ``covered`` list (a shared prefix costs one
push that was not needed, or one that was not made and anti-entropy repairs)."""
COVERED_MAX: Final = 64
CONFIRMS_MAX: Final = 64
"""Most ids one push confirms (``Envelopes.confirms``): those of the push before it on the link."""
ENVELOPE_BYTES_MAX: Final = 1 << 20
"""The largest envelope any frame may carry (the admission limit is checked again later)."""

Id32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 32) - 1)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=(1 << 63) - 1)]
Epoch = Annotated[int, msgspec.Meta(ge=1, le=(1 << 32) - 1)]


class HeadEntry(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One log's main-branch head: ``[author, epoch, seq, id]``."""

    author: Id32
    epoch: Epoch
    seq: Seq
    id: Id32


class ForkEntry(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The lowest known equivocation of one log: the two envelope ids, smaller first."""

    a: Id32
    b: Id32


CoverPrefix = Annotated[
    bytes, msgspec.Meta(min_length=COVER_PREFIX_BYTES, max_length=COVER_PREFIX_BYTES)
]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=ADDRESS_BYTES_MAX)]


class PeerRecord(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Where a node can be dialled, signed by that node: ``[node, issued, addresses, signature]``.

    ``issued`` is the node's hybrid logical clock when it signed, so a newer record replaces an
    older one. The signature (``memmesh.core.peers``) covers the mesh id too, so a record cannot
    be replayed into another mesh. Addresses are printable ASCII without spaces; which schemes a
    dialer accepts is the runtime's business (``ws://`` and ``wss://``).
    """

    node: Id32
    issued: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
    addresses: Annotated[
        list[Address], msgspec.Meta(min_length=1, max_length=ADDRESSES_PER_RECORD_MAX)
    ]
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


class _Message(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    pass


class Hello(_Message, tag=1, frozen=True):
    """First message each way: the versions the sender speaks, its mesh, its node key, a fresh
    nonce for the peer to sign, the admit claims from a genesis admin to its key (empty for a
    genesis member), so a peer that holds only the genesis can recognise it, and whether it has
    no other session."""

    versions: Annotated[list[U32], msgspec.Meta(min_length=1, max_length=VERSIONS_MAX)]
    mesh: Id32
    node: Id32
    nonce: Id32
    chain: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=1, max_length=CHAIN_LINK_BYTES_MAX)]],
        msgspec.Meta(max_length=CHAIN_LINKS_MAX),
    ]
    alone: bool = False
    """The sender holds no other active session: a full view lets it in by dropping a link of
    its own (HyParView's high-priority join) instead of refusing it with ``view_full``."""


class Auth(_Message, tag=8, frozen=True):
    """Second message each way: the sender's signature over the handshake transcript (both
    keys, both nonces, the mesh and the version), proving it holds the key it announced."""

    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


class Frontier(_Message, tag=2, frozen=True):
    """One page of the sender's frontier: main-branch heads sorted by log, the lowest fork of
    every equivocating log, and the tips of the branches it keeps off their logs.

    ``round`` names an anti-entropy round; ``last`` ends the frontier; ``reply`` asks the
    receiver to answer with its own frontier, or with ``NothingToSend`` when it holds nothing the
    sender lacks. Holding an envelope means holding its whole causal past, so a head or a tip
    names everything below it.
    """

    round: U32
    heads: Annotated[list[HeadEntry], msgspec.Meta(max_length=HEADS_PER_MESSAGE_MAX)]
    forks: Annotated[list[ForkEntry], msgspec.Meta(max_length=FORKS_PER_MESSAGE_MAX)]
    last: bool
    reply: bool
    tips: Annotated[list[Id32], msgspec.Meta(max_length=FORKS_PER_MESSAGE_MAX)]


class NothingToSend(_Message, tag=3, frozen=True):
    """The explicit answer to a frontier: the receiver of that frontier holds nothing its
    sender lacks, so the round is over from this side."""

    round: U32


class GetRange(_Message, tag=4, frozen=True):
    """Ask for the main-branch envelopes ``start_seq..end_seq`` of one log; answered by exactly
    one ``Envelopes`` page, a prefix of the range that fits one frame."""

    req: Annotated[int, msgspec.Meta(ge=1, le=(1 << 32) - 1)]
    author: Id32
    epoch: Epoch
    start_seq: Seq
    end_seq: Seq


class GetIds(_Message, tag=5, frozen=True):
    """Ask for envelopes by id (missing deps, the other branch of a fork); answered by exactly
    one ``Envelopes`` page holding those the sender has that fit one frame."""

    req: Annotated[int, msgspec.Meta(ge=1, le=(1 << 32) - 1)]
    ids: Annotated[list[Id32], msgspec.Meta(min_length=1, max_length=IDS_PER_MESSAGE_MAX)]


class Envelopes(_Message, tag=6, frozen=True):
    """Signed envelopes, each its exact canonical bytes. ``req`` is the request this answers,
    0 for an eager push; ``more`` says the answer was cut at the frame limit.

    ``covered``: on a push, the first ``COVER_PREFIX_BYTES`` bytes of the node keys its writer
    pushed the envelopes to (itself included), passed on unchanged along the tree: receivers
    need not push them to those. Empty otherwise (and may be left out). It can only make
    receivers skip the nodes it names, which harms no more than a sender that does not
    forward.

    ``confirms``: on a push, the ids of the envelopes the sender pushed in its previous push on
    this link (at most ``CONFIRMS_MAX``). A link delivers in order, so a receiver that holds
    none of them lost that push, and asks this sender for them at once, from its place in the
    push tree. Empty otherwise (and may be left out)."""

    req: U32
    items: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=1, max_length=ENVELOPE_BYTES_MAX)]],
        msgspec.Meta(max_length=ENVELOPES_PER_MESSAGE_MAX),
    ]
    more: bool
    covered: Annotated[tuple[CoverPrefix, ...], msgspec.Meta(max_length=COVERED_MAX)] = ()
    confirms: Annotated[tuple[Id32, ...], msgspec.Meta(max_length=CONFIRMS_MAX)] = ()


class Bye(_Message, tag=7, frozen=True):
    """The one error path: why the sender closes the session (a ``Reason`` value), then it
    disconnects. A refusal of who the peer is (wrong mesh, no common version) is final."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=REASON_BYTES_MAX)]
    detail: Annotated[str, msgspec.Meta(max_length=DETAIL_BYTES_MAX)]


class Prune(_Message, tag=9, frozen=True):
    """The sender is no longer the receiver's child in the push tree (it chose another parent):
    stop pushing new envelopes to it, announce them instead. Anti-entropy still runs."""


class Graft(_Message, tag=10, frozen=True):
    """The sender chose the receiver as its parent in the push tree: push new envelopes to
    it at once."""


class Shuffle(_Message, tag=11, frozen=True):
    """Peer records for the receiver's passive view: the sender's own and a random sample of
    those it knows. ``reply`` asks the receiver to answer with a sample of its own (the periodic
    shuffle); a new session sends one without it."""

    records: Annotated[list[PeerRecord], msgspec.Meta(max_length=RECORDS_PER_MESSAGE_MAX)]
    reply: bool


class IHave(_Message, tag=12, frozen=True):
    """Lazy push (Plumtree): the ids of new envelopes the sender holds and did not push on this
    link. A receiver still lacking one after a short wait grafts the link and asks for it."""

    ids: Annotated[list[Id32], msgspec.Meta(min_length=1, max_length=IDS_PER_MESSAGE_MAX)]


class Beacon(_Message, tag=13, frozen=True):
    """The push tree's root says it is alive (``memmesh.core.tree``): ``root`` signs ``seq``
    (increasing) with its node key; ``hops`` is the sender's own distance from the root, which
    each node sets when it forwards the beacon and which is not signed."""

    root: Id32
    seq: Annotated[int, msgspec.Meta(ge=1, le=(1 << 63) - 1)]
    hops: Annotated[int, msgspec.Meta(ge=0, le=255)]
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


Message: TypeAlias = (
    Hello
    | Frontier
    | NothingToSend
    | GetRange
    | GetIds
    | Envelopes
    | Bye
    | Auth
    | Prune
    | Graft
    | Shuffle
    | IHave
    | Beacon
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


class _BareEnvelopes(_Message, tag=6, frozen=True):
    """``Envelopes`` as sent when ``covered`` and ``confirms`` are empty: without them, so a
    frame carrying one envelope of ``envelope_bytes_max`` still fits in that plus 14 bytes
    (13.1). msgspec writes every field of an array-like struct, defaults included (msgspec
    issue 720)."""

    req: int
    items: list[bytes]
    more: bool


class _CoveredEnvelopes(_Message, tag=6, frozen=True):
    """``Envelopes`` as sent when only ``confirms`` is empty: without it."""

    req: int
    items: list[bytes]
    more: bool
    covered: tuple[bytes, ...]


def encode_message(message: Message) -> bytes:
    if type(message) is Envelopes and not message.confirms:
        if not message.covered:
            return _encoder.encode(_BareEnvelopes(message.req, message.items, message.more))
        return _encoder.encode(
            _CoveredEnvelopes(message.req, message.items, message.more, message.covered)
        )
    return _encoder.encode(message)


def decode_message(data: bytes, *, frame_bytes_max: int) -> Message:
    """Decode one frame; ``Rejected`` (never another exception) for anything malformed."""
    if len(data) > frame_bytes_max:
        raise Rejected(Reason.TOO_LARGE, f"frame of {len(data)} bytes exceeds {frame_bytes_max}")
    try:
        message: Message = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.BAD_MESSAGE, f"invalid message: {str(exc)[:200]}") from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_MESSAGE, f"malformed frame: {str(exc)[:200]}") from None
    except UnicodeDecodeError:  # msgspec lets a str that is not UTF-8 through as this
        raise Rejected(Reason.BAD_MESSAGE, "malformed frame: a str that is not UTF-8") from None
    if isinstance(message, Bye) and (
        len(message.reason.encode()) > REASON_BYTES_MAX
        or len(message.detail.encode()) > DETAIL_BYTES_MAX
    ):  # the Meta bounds count code points; the limits are in UTF-8 bytes
        raise Rejected(Reason.BAD_MESSAGE, "a bye's reason or detail is too long")
    if isinstance(message, GetRange) and message.end_seq < message.start_seq:
        raise Rejected(Reason.BAD_MESSAGE, "range ends before it starts")
    if isinstance(message, Frontier) and any(
        (a.author, a.epoch) >= (b.author, b.epoch)
        for a, b in zip(message.heads, message.heads[1:], strict=False)
    ):
        raise Rejected(Reason.BAD_MESSAGE, "frontier heads must be sorted by log, each once")
    if isinstance(message, Shuffle) and not all(
        _printable(a) for r in message.records for a in r.addresses
    ):
        raise Rejected(Reason.BAD_MESSAGE, "a peer address must be printable ASCII, no spaces")
    if isinstance(message, Frontier) and any(f.a >= f.b for f in message.forks):
        raise Rejected(Reason.BAD_MESSAGE, "a fork names two different ids, smaller first")
    return message


def _printable(address: str) -> bool:
    return address.isascii() and address.isprintable() and " " not in address
