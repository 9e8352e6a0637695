"""Bundles: a signed attestation with everything needed to check it offline.

A bundle holds the DSSE JSON of the attestation, the mesh genesis, and the raw bytes of every
envelope of the attested set: each log's envelopes from seq 1 up to the statement's head
(membership operations included: they are claims in those envelopes), then the envelopes named
in the statement's ``evidence``. Binary layout (integers unsigned big-endian)::

    magic "MMBUNDLE" (8) | version u8 (=1)
    | dsse_len u32 | dsse JSON
    | genesis_len u32 | genesis bytes
    | count u32 | count * (envelope_len u32 | envelope bytes)

Envelopes come in the statement's log order, each log in seq order, then the evidence in id
order; the reader does not rely on the order (the verifier finds each log's chain from its head).

:func:`decode_bundle` is strict and bounded by :class:`BundleLimits`: total size, DSSE and genesis
sizes, envelope count (checked against the bytes that remain before anything is allocated) and
each envelope's size; nothing may follow the last envelope. Refusals raise :class:`BundleError`
with a code: ``too_large``, ``bad_magic``, ``bad_version``, ``truncated``, ``trailing_bytes``,
``count_exceeds_limit``, ``length_exceeds_limit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..admission import Admission
from ..crypto import SIGNATURE_BYTES
from ..envelope import HEADER_BYTES_MIN, EnvelopeLimits
from ..errors import Rejected
from ..membership import GENESIS_BYTES_MAX
from ..wire import Reader, Writer
from .dsse import DSSE_BYTES_MAX, decode_dsse
from .errors import BundleError
from .statement import Statement, decode_statement

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "Bundle",
    "BundleLimits",
    "bundle_frames",
    "bundle_head",
    "closure_ids",
    "decode_bundle",
    "encode_bundle",
    "make_bundle",
]

BUNDLE_MAGIC = b"MMBUNDLE"
BUNDLE_VERSION = 1
_ENVELOPE_BYTES_MIN = HEADER_BYTES_MIN + SIGNATURE_BYTES


@dataclass(frozen=True, slots=True)
class BundleLimits:
    bundle_bytes_max: int = 1 << 31
    envelopes_max: int = 1 << 22
    envelope_bytes_max: int = EnvelopeLimits().envelope_bytes_max
    dsse_bytes_max: int = DSSE_BYTES_MAX
    genesis_bytes_max: int = GENESIS_BYTES_MAX


DEFAULT_BUNDLE_LIMITS = BundleLimits()


@dataclass(frozen=True, slots=True)
class Bundle:
    dsse: bytes
    genesis: bytes
    envelopes: tuple[bytes, ...]


def encode_bundle(bundle: Bundle) -> bytes:
    head = bundle_head(bundle.dsse, bundle.genesis, len(bundle.envelopes))
    return head + bundle_frames(bundle.envelopes)


def bundle_head(dsse: bytes, genesis: bytes, count: int) -> bytes:
    """A bundle's bytes before its envelopes (:func:`bundle_frames`): a bundle can be written
    a part at a time, every part joined to :func:`encode_bundle`'s bytes."""
    w = Writer()
    w.raw(BUNDLE_MAGIC)
    w.u8(BUNDLE_VERSION)
    for part in (dsse, genesis):
        w.u32(len(part))
        w.raw(part)
    w.u32(count)
    return w.getvalue()


def bundle_frames(envelopes: Sequence[bytes]) -> bytes:
    """The frames of some of a bundle's envelopes, in order (each its length, then its bytes)."""
    w = Writer()
    for raw in envelopes:
        w.u32(len(raw))
        w.raw(raw)
    return w.getvalue()


def decode_bundle(data: bytes, limits: BundleLimits = DEFAULT_BUNDLE_LIMITS) -> Bundle:
    """Decode a bundle's framing strictly; the contents are checked by the verifier."""
    data = bytes(data)
    if len(data) > limits.bundle_bytes_max:
        raise BundleError("too_large", f"bundle of {len(data)} bytes exceeds the limit")
    try:
        return _decode(data, limits)
    except Rejected as exc:
        raise BundleError(exc.reason.value, exc.detail) from None


def _decode(data: bytes, limits: BundleLimits) -> Bundle:
    r = Reader(data, "bundle")
    if r.raw(len(BUNDLE_MAGIC), "magic") != BUNDLE_MAGIC:
        raise BundleError("bad_magic", "not a memmesh attestation bundle")
    version = r.u8("version")
    if version != BUNDLE_VERSION:
        raise BundleError("bad_version", f"bundle version {version}, expected {BUNDLE_VERSION}")
    dsse = _part(r, "dsse", limits.dsse_bytes_max)
    genesis = _part(r, "genesis", limits.genesis_bytes_max)
    count = r.u32("count")
    if count > limits.envelopes_max:
        raise BundleError("count_exceeds_limit", f"{count} envelopes exceed the limit")
    if count * (4 + _ENVELOPE_BYTES_MIN) > r.remaining:
        raise BundleError("truncated", f"{count} envelopes cannot fit in {r.remaining} bytes")
    envelopes = tuple(_part(r, "envelope", limits.envelope_bytes_max) for _ in range(count))
    r.expect_end()
    return Bundle(dsse, genesis, envelopes)


def _part(r: Reader, what: str, limit: int) -> bytes:
    length = r.u32(f"{what} length")
    if length > limit:
        raise BundleError("length_exceeds_limit", f"{what} of {length} bytes exceeds {limit}")
    return r.raw(length, what)


def closure_ids(admission: Admission, statement: Statement) -> list[bytes]:
    """The ids of the attested set, in bundle order; ``ValueError`` if ``admission`` does not
    hold the statement's state (a log shorter than its entry, another head, a missing
    evidence envelope)."""
    out: list[bytes] = []
    for entry in statement.logs:
        ids = admission.chain(entry.log, entry.size, entry.head)
        if ids is None:
            raise ValueError(f"this admission does not hold log {entry.log} up to its head")
        out.extend(ids)
    for env_id in statement.evidence:
        if admission.records.get(env_id) is None:
            raise ValueError(f"evidence envelope {env_id.hex()} is not held")
        out.append(env_id)
    return out


def make_bundle(
    admission: Admission, dsse: bytes, *, envelopes: Sequence[bytes] | None = None
) -> bytes:
    """The bundle of the attestation ``dsse`` from the envelopes ``admission`` holds.

    The admission may have moved on since the attestation: it still holds every envelope the
    attestation named (a log cut at a fork found since keeps its envelopes off the log).
    ``envelopes`` overrides the envelope list (tests use it to build damaged bundles).
    """
    statement = decode_statement(decode_dsse(dsse).payload)
    if envelopes is None:
        ids = closure_ids(admission, statement)
        envelopes = [admission.envelope_bytes(env_id) for env_id in ids]
    return encode_bundle(Bundle(dsse, admission.genesis.raw, tuple(envelopes)))
