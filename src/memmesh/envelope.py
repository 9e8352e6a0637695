"""Signed envelopes: the replication unit (DESIGN §4), one canonical binary layout.

Layout (all integers unsigned big-endian; byte-by-byte in ``docs/PROTOCOL.md``)::

    version u8 | kind u8 | mesh_id 32 | author 32 | epoch u32 | seq u64 | prev 32
    | deps_count u16 | deps 32*n | hlc u64 | claims_root 32 | payload_len u32 | payload
    | signature 64

The body is every byte before the signature. The signature is Ed25519 by ``author`` over
``SIGNATURE_DOMAIN + body``; the id is ``tagged_hash(b"envelope-id/v1", body)``. One object has
exactly one encoding: deps are strictly increasing, no field has slack, nothing trails.

Decoding checks the total size first, then every length and count against the bytes that remain,
before any allocation depends on it; every refusal is a :class:`~memmesh.errors.Rejected` with a
reason code. Decoding is structural only; :func:`open_envelope` adds the signature and mesh checks
in the admission order of DESIGN §4 rule 3.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .crypto import SIGNATURE_BYTES, SigningKey, verify
from .errors import Reason, Rejected
from .ids import HASH_BYTES, ZERO_ID, Head, LogId, short_id, tagged_hash
from .wire import Layout, Writer

__all__ = [
    "ENVELOPE_VERSION",
    "HEADER_BYTES_MIN",
    "ID_TAG",
    "SIGNATURE_DOMAIN",
    "Envelope",
    "EnvelopeDetached",
    "EnvelopeKind",
    "EnvelopeLimits",
    "decode_envelope",
    "encode_body",
    "envelope_author",
    "envelope_id",
    "open_envelope",
    "payload_bytes_max",
    "seal",
    "verify_envelope",
]

ENVELOPE_VERSION = 1
SIGNATURE_DOMAIN = b"memmesh/envelope/v1\x00"
ID_TAG = b"envelope-id/v1"
SEQ_MAX = (1 << 63) - 1
EPOCH_MAX = (1 << 32) - 1

HEADER_BYTES_MIN = 1 + 1 + 32 + 32 + 4 + 8 + 32 + 2 + 8 + 32 + 4
"""Bytes of a body with no deps and an empty payload."""
_ENVELOPE_BYTES_MIN = HEADER_BYTES_MIN + SIGNATURE_BYTES
_FRONT = Layout(">BB32s32sIQ32sH")
"""Version, kind, mesh id, author, epoch, seq, prev, deps count: the fixed front of a body."""
_TAIL = Layout(">Q32sI")
"""hlc, claims root, payload length: what follows the deps."""

_FIXED_TAIL_BYTES = 8 + HASH_BYTES + 4 + SIGNATURE_BYTES
"""hlc, claims root, payload length and signature: what must follow the deps."""


class EnvelopeKind(enum.IntEnum):
    """What the payload is. Unknown kinds are refused, never skipped."""

    UPDATE = 1
    """A Yjs v1 update following the document grammar (DESIGN §4)."""


_KINDS = {kind.value: kind for kind in EnvelopeKind}
assert _FRONT.size + _FIXED_TAIL_BYTES == _ENVELOPE_BYTES_MIN  # the front is always there


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    """Bounds every decoder checks before it trusts a length or a count."""

    envelope_bytes_max: int = 1 << 20
    deps_max: int = 64


DEFAULT_LIMITS = EnvelopeLimits()


class EnvelopeDetached(LookupError):
    """The bytes of an envelope that a node no longer holds in memory were asked of the envelope
    itself; they are in the store (``Admission.envelope_bytes``)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded, structurally valid envelope. ``raw`` is its exact canonical encoding, held
    until the envelope is :meth:`detached` (a stored envelope whose bytes stay in the store)."""

    kind: EnvelopeKind
    mesh_id: bytes
    author: bytes
    epoch: int
    seq: int
    prev: bytes
    deps: tuple[bytes, ...]
    hlc: int
    claims_root: bytes
    payload_start: int
    """Where the payload begins in ``raw`` (it ends before the signature)."""
    signature: bytes
    held: bytes | None = field(compare=False, repr=False)
    """The envelope's bytes, or None once detached."""
    id: bytes
    size: int
    """``len(raw)``, known when the bytes are not held."""
    log: LogId = field(init=False, repr=False, compare=False)
    """``LogId(author, epoch)``: made once here, since admission, views and stores ask for it
    many times an envelope (a named tuple costs a Python call each time)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", LogId(self.author, self.epoch))

    @property
    def raw(self) -> bytes:
        held = self.held
        if held is None:
            raise EnvelopeDetached(f"envelope {short_id(self.id)}: its bytes are in the store")
        return held

    def detached(self) -> Envelope:
        """The same envelope without its bytes (``raw`` then raises ``EnvelopeDetached``)."""
        return self.holding(None)

    def holding(self, held: bytes | None) -> Envelope:
        """The same envelope holding ``held`` as its bytes (None: detached). Made through the
        slots' setters (:func:`_decoded`): ``dataclasses.replace`` goes through ``__init__``
        and cost a node's start about 5 us an envelope, twice for each one it let go of."""
        values = [get(self) for get in _ENVELOPE_GETTERS]
        values[_HELD_AT] = held
        return _decoded(values)

    @property
    def payload(self) -> bytes:
        """A slice of ``raw`` made when asked: a stored envelope keeps its bytes once."""
        return self.raw[self.payload_start : len(self.raw) - SIGNATURE_BYTES]

    @property
    def head(self) -> Head:
        return Head(self.seq, self.id)

    @property
    def body(self) -> bytes:
        return self.raw[:-SIGNATURE_BYTES]

    def __repr__(self) -> str:
        return (
            f"Envelope({short_id(self.id)} {self.log} seq={self.seq} "
            f"deps={len(self.deps)} payload={self.size - self.payload_start - SIGNATURE_BYTES}B)"
        )


def encode_body(
    *,
    kind: int,
    mesh_id: bytes,
    author: bytes,
    epoch: int,
    seq: int,
    prev: bytes,
    deps: Sequence[bytes],
    hlc: int,
    claims_root: bytes,
    payload: bytes,
    version: int = ENVELOPE_VERSION,
    deps_count: int | None = None,
    payload_len: int | None = None,
) -> bytes:
    """Encode the signed body exactly as given, without judging it.

    ``deps_count`` and ``payload_len`` override the length fields; they exist so tests can build
    (and validly sign) bodies whose lengths lie, and check that the decoder refuses them.
    """
    w = Writer()
    w.u8(version)
    w.u8(kind)
    w.raw(mesh_id)
    w.raw(author)
    w.u32(epoch)
    w.u64(seq)
    w.raw(prev)
    w.u16(len(deps) if deps_count is None else deps_count)
    for dep in deps:
        w.raw(dep)
    w.u64(hlc)
    w.raw(claims_root)
    w.u32(len(payload) if payload_len is None else payload_len)
    w.raw(payload)
    return w.getvalue()


def payload_bytes_max(limits: EnvelopeLimits = DEFAULT_LIMITS) -> int:
    """The largest payload an envelope within ``limits`` carries whatever its deps (up to
    ``deps_max`` of them): what a writer packing claims into one envelope may fill."""
    return limits.envelope_bytes_max - _ENVELOPE_BYTES_MIN - HASH_BYTES * limits.deps_max


def seal(
    key: SigningKey,
    *,
    mesh_id: bytes,
    epoch: int,
    seq: int,
    prev: bytes,
    deps: Sequence[bytes] = (),
    hlc: int,
    claims_root: bytes = ZERO_ID,
    payload: bytes,
    kind: EnvelopeKind = EnvelopeKind.UPDATE,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
) -> Envelope:
    """Build and sign an envelope authored by ``key``; deps are sorted into canonical order.

    The result goes through the same decoder as remote input, so a node can never produce an
    envelope that its peers would refuse for its structure.
    """
    body = encode_body(
        kind=kind,
        mesh_id=mesh_id,
        author=key.public_key,
        epoch=epoch,
        seq=seq,
        prev=prev,
        deps=sorted(set(deps)),
        hlc=hlc,
        claims_root=claims_root,
        payload=payload,
    )
    return decode_envelope(body + key.sign(SIGNATURE_DOMAIN, body), limits)


def decode_envelope(
    data: bytes, limits: EnvelopeLimits = DEFAULT_LIMITS, *, known_id: bytes | None = None
) -> Envelope:
    """Structural decode: size, every field, canonical form. Does not check the signature.

    ``known_id``: :func:`envelope_id` of ``data``, when the caller has just computed it (the
    id is the hash of the body, and a decoded body is all but the last 64 bytes)."""
    data = bytes(data)  # fields are slices of it: make them immutable, hashable bytes
    if len(data) > limits.envelope_bytes_max:
        raise Rejected(
            Reason.TOO_LARGE,
            f"envelope of {len(data)} bytes exceeds envelope_bytes_max={limits.envelope_bytes_max}",
        )
    if len(data) < _ENVELOPE_BYTES_MIN:
        raise Rejected(
            Reason.TRUNCATED,
            f"envelope of {len(data)} bytes is shorter than the minimum {_ENVELOPE_BYTES_MIN}",
        )
    # The minimum size covers the fixed front (header, position, deps count): one unpack.
    version, kind_code, mesh_id, author, epoch, seq, prev, deps_count = _FRONT.unpack_from(data)
    if version != ENVELOPE_VERSION:
        raise Rejected(Reason.BAD_VERSION, f"envelope version {version}, expected 1")
    kind = _KINDS.get(kind_code)
    if kind is None:
        raise Rejected(Reason.UNKNOWN_KIND, f"envelope kind {kind_code}")
    _check_position(epoch, seq, prev)
    deps = _read_deps(data, deps_count, limits)
    at = _FRONT.size + deps_count * HASH_BYTES
    hlc, claims_root, payload_len = _TAIL.unpack_from(data, at)
    payload_start = at + _TAIL.size
    remaining = len(data) - payload_start
    if payload_len + SIGNATURE_BYTES != remaining:
        too_long = payload_len + SIGNATURE_BYTES > remaining
        reason = Reason.TRUNCATED if too_long else Reason.TRAILING_BYTES
        raise Rejected(
            reason,
            f"payload_len {payload_len} + signature {SIGNATURE_BYTES} != {remaining} "
            f"remaining bytes",
        )
    body_end = len(data) - SIGNATURE_BYTES
    env_id = tagged_hash(ID_TAG, data[:body_end]) if known_id is None else known_id
    # Every field, in declaration order (see _decoded).
    return _decoded(
        (kind, mesh_id, author, epoch, seq, prev, deps, hlc, claims_root, payload_start,
         data[body_end:], data, env_id, len(data), LogId(author, epoch))
    )  # fmt: skip


def _decoded(values: Sequence[Any]) -> Envelope:
    """An ``Envelope`` of ``values``, one for each field in declaration order (``log``
    included), set through the slots' own setters: a frozen dataclass's ``__init__`` calls
    ``object.__setattr__`` once a field, a cost every received envelope paid. A test holds the
    result equal, field by field, to the constructor's."""
    envelope: Envelope = _new_object(Envelope)
    for put, value in zip(_ENVELOPE_SETTERS, values, strict=True):
        put(envelope, value)
    return envelope


_new_object = object.__new__
_ENVELOPE_SETTERS: tuple[Callable[[Envelope, Any], None], ...] = tuple(
    getattr(Envelope, f.name).__set__ for f in dataclasses.fields(Envelope)
)
_ENVELOPE_GETTERS: tuple[Callable[[Envelope], Any], ...] = tuple(
    getattr(Envelope, f.name).__get__ for f in dataclasses.fields(Envelope)
)
_HELD_AT = [f.name for f in dataclasses.fields(Envelope)].index("held")


def envelope_author(data: bytes) -> bytes | None:
    """The author field of an encoded envelope, read without decoding or checking anything
    else (None when ``data`` is too short to be an envelope). For bookkeeping before admission,
    never for a decision about validity."""
    if len(data) < _ENVELOPE_BYTES_MIN:
        return None
    return bytes(data[34:66])


def envelope_id(data: bytes) -> bytes:
    """The id an envelope's bytes would have if they decode (the hash of all but the signature)."""
    return tagged_hash(ID_TAG, data[:-SIGNATURE_BYTES])


def verify_envelope(envelope: Envelope) -> None:
    """Raise ``Rejected(BAD_SIGNATURE)`` unless ``author`` signed this body."""
    if not verify(envelope.author, SIGNATURE_DOMAIN, envelope.body, envelope.signature):
        raise Rejected(
            Reason.BAD_SIGNATURE,
            f"envelope {short_id(envelope.id)} is not signed by {short_id(envelope.author)}",
        )


def open_envelope(
    data: bytes,
    *,
    mesh_id: bytes | None = None,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
    verify_signature: bool = True,
    known_id: bytes | None = None,
) -> Envelope:
    """Decode, authenticate and scope-check bytes from outside: size, structure, signature, mesh.

    The cheapest checks come first (DESIGN §4 rule 3); nothing is allocated by a length before
    the length is checked against the bytes that remain. ``verify_signature=False`` is for a
    caller that verified the signature itself, never for bytes straight from a peer.
    ``known_id``: as for :func:`decode_envelope`.
    """
    envelope = decode_envelope(data, limits, known_id=known_id)
    if verify_signature:
        verify_envelope(envelope)
    if mesh_id is not None and envelope.mesh_id != mesh_id:
        raise Rejected(
            Reason.WRONG_MESH,
            f"envelope {short_id(envelope.id)} belongs to mesh {short_id(envelope.mesh_id)}, "
            f"not {short_id(mesh_id)}",
        )
    return envelope


def _check_position(epoch: int, seq: int, prev: bytes) -> None:
    """The rules that tie epoch, seq and prev together."""
    if epoch == 0:
        raise Rejected(Reason.BAD_EPOCH, "epoch 0; epochs start at 1")
    if not 1 <= seq <= SEQ_MAX:
        raise Rejected(Reason.BAD_SEQ, f"seq {seq} outside 1..2^63-1")
    if seq > 1 and prev == ZERO_ID:
        raise Rejected(Reason.BAD_PREV, f"seq {seq} must name its previous envelope")
    if seq == 1 and epoch == 1 and prev != ZERO_ID:
        raise Rejected(Reason.BAD_PREV, "the first envelope of a key has no previous envelope")


def _read_deps(data: bytes, deps_count: int, limits: EnvelopeLimits) -> tuple[bytes, ...]:
    """The deps, their count bounded by the limit and by the bytes that remain."""
    if deps_count > limits.deps_max:
        raise Rejected(
            Reason.COUNT_EXCEEDS_LIMIT, f"{deps_count} deps exceed deps_max={limits.deps_max}"
        )
    # The fixed tail (hlc, claims root, payload length, signature) must still fit after the deps.
    needed = deps_count * HASH_BYTES + _FIXED_TAIL_BYTES
    remaining = len(data) - _FRONT.size
    if needed > remaining:
        raise Rejected(
            Reason.TRUNCATED,
            f"{deps_count} deps and the fixed tail need {needed} bytes, {remaining} remain",
        )
    if not deps_count:
        return ()
    at = _FRONT.size
    deps = tuple(data[at + i * HASH_BYTES : at + (i + 1) * HASH_BYTES] for i in range(deps_count))
    for i, dep in enumerate(deps):
        if dep == ZERO_ID:
            raise Rejected(Reason.BAD_DEPS, f"dep {i} is the zero id")
        if i and deps[i - 1] >= dep:
            raise Rejected(Reason.NOT_CANONICAL, "deps must be strictly increasing")
    return deps
