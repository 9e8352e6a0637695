"""Envelope encoding, decoding and admission checks (docs/PROTOCOL.md §3).

The decoder must refuse every malformed input with ``Rejected`` and a ``Reason``, and nothing
else: every single-byte mutation, every truncation, lying length fields that are validly signed,
and fuzzed input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memmesh.crypto import SigningKey, verify
from memmesh.envelope import (
    ENVELOPE_VERSION,
    HEADER_BYTES_MIN,
    ID_TAG,
    SIGNATURE_DOMAIN,
    Envelope,
    EnvelopeDetached,
    EnvelopeKind,
    EnvelopeLimits,
    decode_envelope,
    encode_body,
    envelope_id,
    open_envelope,
    payload_bytes_max,
    seal,
)
from memmesh.errors import Reason, Rejected, RemoteError
from memmesh.hlc import hlc_pack
from memmesh.ids import ZERO_ID, Head, LogId, tagged_hash
from memmesh.testing import scaled

KEY = SigningKey(bytes(range(32)))
OTHER_KEY = SigningKey(bytes([7] * 32))
MESH = hashlib.sha256(b"test mesh").digest()
OTHER_MESH = hashlib.sha256(b"another mesh").digest()


def _h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# A valid envelope touching every field: 2 deps, a 40-byte payload, nothing zero.
BASE: dict[str, Any] = {
    "kind": EnvelopeKind.UPDATE,
    "mesh_id": MESH,
    "author": KEY.public_key,
    "epoch": 3,
    "seq": 5,
    "prev": _h("prev"),
    "deps": sorted([_h("dep a"), _h("dep b")]),
    "hlc": hlc_pack(1_767_225_600_000, 42),
    "claims_root": _h("claims"),
    "payload": b"a forty byte payload for the envelope!!!",
}
assert len(BASE["payload"]) == 40

N_DEPS = 2
PAYLOAD_LEN = 40
# Field spans of BASE's encoding, from the layout table of PROTOCOL.md §3.1.
SPANS: dict[str, range] = {
    "version": range(0, 1),
    "kind": range(1, 2),
    "mesh_id": range(2, 34),
    "author": range(34, 66),
    "epoch": range(66, 70),
    "seq": range(70, 78),
    "prev": range(78, 110),
    "deps_count": range(110, 112),
    "deps": range(112, 112 + 32 * N_DEPS),
    "hlc": range(112 + 32 * N_DEPS, 120 + 32 * N_DEPS),
    "claims_root": range(120 + 32 * N_DEPS, 152 + 32 * N_DEPS),
    "payload_len": range(152 + 32 * N_DEPS, 156 + 32 * N_DEPS),
    "payload": range(156 + 32 * N_DEPS, 156 + 32 * N_DEPS + PAYLOAD_LEN),
    "signature": range(156 + 32 * N_DEPS + PAYLOAD_LEN, 220 + 32 * N_DEPS + PAYLOAD_LEN),
}


def signed(key: SigningKey = KEY, **overrides: Any) -> bytes:
    """Encode BASE with ``overrides`` exactly as given (no validation) and sign it with ``key``."""
    fields = {**BASE, "author": key.public_key, **overrides}
    body = encode_body(**fields)
    signature = key.sign(SIGNATURE_DOMAIN, body)
    assert verify(fields["author"], SIGNATURE_DOMAIN, body, signature) == (
        fields["author"] == key.public_key
    )
    return body + signature


VALID = signed()


def rejected_reason(data: bytes, **kwargs: Any) -> Reason:
    """The reason ``open_envelope`` gives; fails the test if it accepts or raises anything else."""
    with pytest.raises(Rejected) as info:
        open_envelope(data, **kwargs)
    assert isinstance(info.value.reason, Reason)
    assert isinstance(info.value, RemoteError)
    assert info.value.detail
    return info.value.reason


# --- valid envelopes ----------------------------------------------------------------------------


def test_spans_cover_the_base_envelope_exactly() -> None:
    assert len(VALID) == 220 + 32 * N_DEPS + PAYLOAD_LEN
    covered = [i for span in SPANS.values() for i in span]
    assert covered == list(range(len(VALID)))
    assert HEADER_BYTES_MIN + 64 == 220


def test_open_envelope_accepts_a_valid_envelope_and_decodes_every_field() -> None:
    envelope = open_envelope(VALID, mesh_id=MESH)
    assert envelope.kind is EnvelopeKind.UPDATE
    assert envelope.mesh_id == MESH
    assert envelope.author == KEY.public_key
    assert envelope.epoch == 3
    assert envelope.seq == 5
    assert envelope.prev == BASE["prev"]
    assert envelope.deps == tuple(BASE["deps"])
    assert envelope.hlc == BASE["hlc"]
    assert envelope.claims_root == BASE["claims_root"]
    assert envelope.payload == BASE["payload"]
    assert envelope.signature == VALID[-64:]
    assert envelope.raw == VALID
    assert envelope.body == VALID[:-64]
    assert envelope.id == tagged_hash(ID_TAG, VALID[:-64])
    assert envelope.log == LogId(KEY.public_key, 3)
    assert envelope.head == Head(5, envelope.id)
    assert open_envelope(VALID) == envelope  # no mesh given: no mesh check


def test_seal_round_trip_sorts_and_deduplicates_deps() -> None:
    deps = [_h("z"), _h("a"), _h("m"), _h("a")]
    envelope = seal(KEY, mesh_id=MESH, epoch=1, seq=2, prev=_h("p"), deps=deps, hlc=7, payload=b"x")
    assert envelope.deps == tuple(sorted(set(deps)))
    assert envelope.claims_root == ZERO_ID
    assert envelope.kind is EnvelopeKind.UPDATE
    assert decode_envelope(envelope.raw) == envelope
    assert open_envelope(envelope.raw, mesh_id=MESH) == envelope


def test_seal_matches_the_hand_signed_encoding() -> None:
    fields = {k: v for k, v in BASE.items() if k not in ("author", "kind")}
    assert seal(KEY, **fields).raw == VALID


@pytest.mark.parametrize(
    "overrides",
    [
        {"epoch": 1, "seq": 1, "prev": ZERO_ID},
        {"epoch": 2, "seq": 1, "prev": ZERO_ID},
        {"epoch": 2, "seq": 1, "prev": _h("old head")},
        {"epoch": 2**32 - 1, "seq": 2**63 - 1},
        {"deps": [], "payload": b""},
        {"deps": [bytes(31) + b"\x01"]},
        {"hlc": 0, "claims_root": ZERO_ID},
        {"hlc": 2**64 - 1, "claims_root": b"\xff" * 32},
    ],
    ids=lambda o: ",".join(sorted(o)),
)
def test_boundary_values_are_accepted(overrides: dict[str, Any]) -> None:
    data = signed(**overrides)
    envelope = open_envelope(data, mesh_id=MESH)
    for name, value in overrides.items():
        expected = tuple(value) if name == "deps" else value
        assert getattr(envelope, name) == expected


def test_minimum_size_envelope_is_220_bytes() -> None:
    data = signed(deps=[], payload=b"")
    assert len(data) == 220
    assert open_envelope(data).payload == b""


# --- every single-byte mutation -----------------------------------------------------------------

# What each field may turn into after one changed byte (BASE has epoch 3, seq 5, non-zero prev).
MUTATION_REASONS: dict[str, set[Reason]] = {
    "version": {Reason.BAD_VERSION},
    "kind": {Reason.UNKNOWN_KIND},
    "mesh_id": {Reason.BAD_SIGNATURE},
    "author": {Reason.BAD_SIGNATURE},
    "epoch": {Reason.BAD_SIGNATURE, Reason.BAD_EPOCH},
    "seq": {Reason.BAD_SIGNATURE, Reason.BAD_SEQ},
    "prev": {Reason.BAD_SIGNATURE},
    "deps_count": {
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.TRUNCATED,
        Reason.TRAILING_BYTES,
        Reason.NOT_CANONICAL,
        Reason.BAD_DEPS,
    },
    "deps": {Reason.BAD_SIGNATURE, Reason.NOT_CANONICAL},
    "hlc": {Reason.BAD_SIGNATURE},
    "claims_root": {Reason.BAD_SIGNATURE},
    "payload_len": {Reason.TRUNCATED, Reason.TRAILING_BYTES},
    "payload": {Reason.BAD_SIGNATURE},
    "signature": {Reason.BAD_SIGNATURE},
}


def _field_at(offset: int) -> str:
    return next(name for name, span in SPANS.items() if offset in span)


def _replacements(offset: int, original: int) -> list[int]:
    rng = random.Random(offset)
    values = [original ^ 0x01, original ^ 0xFF, original ^ 0x80]
    if (original - 1) % 256 not in values:
        values.append((original - 1) % 256)
    while len(values) < 5:
        candidate = rng.randrange(256)
        if candidate != original and candidate not in values:
            values.append(candidate)
    return values


def test_every_single_byte_mutation_is_rejected_with_the_fields_reason() -> None:
    seen: dict[str, set[Reason]] = {name: set() for name in SPANS}
    for offset in range(len(VALID)):
        field = _field_at(offset)
        for value in _replacements(offset, VALID[offset]):
            mutated = bytearray(VALID)
            mutated[offset] = value
            reason = rejected_reason(bytes(mutated), mesh_id=MESH)
            assert reason in MUTATION_REASONS[field], (offset, field, value, reason)
            seen[field].add(reason)
    # Structural checks fire where they should, not only the signature check.
    assert seen["version"] == {Reason.BAD_VERSION}
    assert seen["kind"] == {Reason.UNKNOWN_KIND}
    assert seen["signature"] == {Reason.BAD_SIGNATURE}
    assert seen["payload"] == {Reason.BAD_SIGNATURE}
    assert Reason.BAD_SEQ in seen["seq"]  # the top bit of seq
    assert Reason.COUNT_EXCEEDS_LIMIT in seen["deps_count"]
    assert Reason.NOT_CANONICAL in seen["deps"]
    assert seen["payload_len"] == {Reason.TRUNCATED, Reason.TRAILING_BYTES}


def test_id_covers_the_body_and_excludes_the_signature() -> None:
    original = decode_envelope(VALID)
    payload_offset = SPANS["payload"].start
    changed_body = bytearray(VALID)
    changed_body[payload_offset] ^= 0x01
    assert decode_envelope(bytes(changed_body)).id != original.id

    other_signature = VALID[:-64] + bytes(64)
    assert decode_envelope(other_signature).id == original.id  # same body, same envelope
    assert rejected_reason(other_signature) == Reason.BAD_SIGNATURE
    # The id a receiver computes before decoding (to skip copies it holds) is the decoded one.
    assert envelope_id(VALID) == original.id
    assert decode_envelope(VALID, known_id=envelope_id(VALID)) == original


def test_the_decoder_sets_every_field_as_the_dataclass_does() -> None:
    decoded = decode_envelope(VALID)
    fields = {f.name: getattr(decoded, f.name) for f in dataclasses.fields(Envelope) if f.init}
    made = Envelope(**fields)
    assert made == decoded
    for f in dataclasses.fields(Envelope):
        assert getattr(made, f.name) == getattr(decoded, f.name), f.name
    assert decoded.log == LogId(decoded.author, decoded.epoch)


def test_an_envelope_holding_other_bytes_is_the_same_envelope_field_by_field() -> None:
    """``holding`` (and ``detached``) copy through the slots' setters, not ``__init__``: every
    field but the bytes stays, and a detached envelope refuses ``raw``."""
    decoded = decode_envelope(VALID)
    for held in (None, VALID, bytes(VALID)):
        copy = decoded.holding(held)
        assert copy is not decoded and copy.held is held
        assert copy == dataclasses.replace(decoded, held=held)
        for f in dataclasses.fields(Envelope):
            if f.name != "held":
                assert getattr(copy, f.name) is getattr(decoded, f.name), f.name
    gone = decoded.detached()
    assert gone.held is None and gone.size == len(VALID) and gone.id == decoded.id
    with pytest.raises(EnvelopeDetached):
        gone.raw  # noqa: B018 - the property raises


# --- truncation and trailing bytes --------------------------------------------------------------


def test_every_truncation_is_rejected_as_truncated() -> None:
    for length in range(len(VALID)):
        assert rejected_reason(VALID[:length]) == Reason.TRUNCATED, length
        with pytest.raises(Rejected) as info:
            decode_envelope(VALID[:length])
        assert info.value.reason == Reason.TRUNCATED


@pytest.mark.parametrize("extra", [b"\x00", b"\xff", bytes(64), VALID])
def test_trailing_bytes_are_rejected(extra: bytes) -> None:
    assert rejected_reason(VALID + extra) == Reason.TRAILING_BYTES


# --- lying length fields, validly signed --------------------------------------------------------

# Controlled byte values so that what the decoder reads after a lying count is predictable.
D1, D2 = b"\x11" * 32, b"\x22" * 32
PLAIN: dict[str, Any] = {
    "deps": [D1, D2],
    "hlc": 0x3333_3333_3333_3333,
    "claims_root": b"\x44" * 32,
    "payload": b"\x55" * 40,
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # One dep too many: the third "dep" is hlc + claims root; payload_len then lands in the
        # payload (0x55555555) and asks for more bytes than remain.
        ({"deps_count": 3}, Reason.TRUNCATED),
        # ... unless that third "dep" sorts below the second one,
        ({"deps_count": 3, "hlc": 0x0033_3333_3333_3333}, Reason.NOT_CANONICAL),
        # ... or is all zero.
        ({"deps_count": 3, "hlc": 0, "claims_root": bytes(24) + b"\x44" * 8}, Reason.BAD_DEPS),
        # One dep too few: payload_len is read from the claims root.
        ({"deps_count": 1}, Reason.TRUNCATED),
        ({"deps_count": 1, "claims_root": ZERO_ID}, Reason.TRAILING_BYTES),
        # No deps announced although two are there: payload_len is read from the second dep.
        ({"deps_count": 0}, Reason.TRUNCATED),
        (
            {"deps_count": 0, "deps": [D1, b"\x22" * 8 + bytes(4) + b"\x22" * 20]},
            Reason.TRAILING_BYTES,
        ),
        # Counts beyond the limit are refused before anything is read.
        ({"deps_count": 65535}, Reason.COUNT_EXCEEDS_LIMIT),
        ({"deps_count": 65}, Reason.COUNT_EXCEEDS_LIMIT),
        # Within the limit but far more deps than bytes.
        ({"deps_count": 64}, Reason.TRUNCATED),
        ({"deps_count": 4}, Reason.TRUNCATED),
        # Payload length off by one either way, zero, and the maximum u32.
        ({"payload_len": 41}, Reason.TRUNCATED),
        ({"payload_len": 39}, Reason.TRAILING_BYTES),
        ({"payload_len": 0}, Reason.TRAILING_BYTES),
        ({"payload_len": 2**32 - 1}, Reason.TRUNCATED),
    ],
    ids=lambda v: repr(v) if isinstance(v, Reason) else ",".join(f"{k}" for k in v),
)
def test_lying_lengths_are_rejected_even_when_validly_signed(
    overrides: dict[str, Any], expected: Reason
) -> None:
    data = signed(**{**PLAIN, **overrides})
    with pytest.raises(Rejected) as info:
        decode_envelope(data)
    assert info.value.reason == expected, info.value.detail
    assert rejected_reason(data, mesh_id=MESH) == expected
    # The same fields with honest lengths are accepted: only the lie is refused.
    honest = {
        k: v for k, v in {**PLAIN, **overrides}.items() if k not in ("deps_count", "payload_len")
    }
    if honest["deps"] == sorted(set(honest["deps"])) and ZERO_ID not in honest["deps"]:
        assert open_envelope(signed(**honest), mesh_id=MESH).deps == tuple(honest["deps"])


def test_a_consistent_lie_is_simply_another_envelope() -> None:
    """Bytes have one reading: a count that lies consistently just encodes different fields."""
    # With deps_count 1 the decoder reads hlc and the start of the claims root from D2, and
    # payload_len from the first 4 bytes of the real claims root: make those say 72, which is
    # exactly what remains before the signature.
    claims_root = (72).to_bytes(4, "big") + b"\x44" * 28
    data = signed(**{**PLAIN, "deps_count": 1, "claims_root": claims_root})
    envelope = open_envelope(data, mesh_id=MESH)  # the author signed exactly these bytes
    assert envelope.deps == (D1,)
    assert envelope.hlc == 0x2222_2222_2222_2222
    assert envelope.claims_root == b"\x22" * 24 + (0x3333_3333_3333_3333).to_bytes(8, "big")
    assert envelope.payload == claims_root[4:] + (40).to_bytes(4, "big") + PLAIN["payload"]
    assert len(envelope.payload) == 72


def test_deps_limit_is_configurable_and_enforced() -> None:
    assert open_envelope(VALID, limits=EnvelopeLimits(deps_max=2)).deps == tuple(BASE["deps"])
    assert rejected_reason(VALID, limits=EnvelopeLimits(deps_max=1)) == Reason.COUNT_EXCEEDS_LIMIT
    many = [_h(f"dep {i}") for i in range(65)]
    with pytest.raises(Rejected) as info:
        seal(KEY, mesh_id=MESH, epoch=1, seq=2, prev=_h("p"), deps=many, hlc=1, payload=b"")
    assert info.value.reason == Reason.COUNT_EXCEEDS_LIMIT
    at_limit = seal(
        KEY, mesh_id=MESH, epoch=1, seq=2, prev=_h("p"), deps=many[:64], hlc=1, payload=b""
    )
    assert len(at_limit.deps) == 64
    assert open_envelope(at_limit.raw).deps == at_limit.deps


# --- size limit ---------------------------------------------------------------------------------


def test_too_large_is_checked_before_anything_else() -> None:
    blob = bytes(2 << 20)  # 2 MiB of zeros: would be BAD_VERSION if size were not checked first
    assert rejected_reason(blob) == Reason.TOO_LARGE
    with pytest.raises(Rejected) as info:
        decode_envelope(blob)
    assert info.value.reason == Reason.TOO_LARGE
    assert rejected_reason(bytes(1000)) == Reason.BAD_VERSION


def test_size_limit_boundary_is_inclusive() -> None:
    limit = EnvelopeLimits().envelope_bytes_max
    assert limit == 1 << 20
    fixed = 220 + 32 * N_DEPS
    at_limit = signed(payload=bytes(limit - fixed))
    assert len(at_limit) == limit
    assert len(open_envelope(at_limit, mesh_id=MESH).payload) == limit - fixed
    over = signed(payload=bytes(limit - fixed + 1))
    assert rejected_reason(over) == Reason.TOO_LARGE
    assert rejected_reason(VALID, limits=EnvelopeLimits(envelope_bytes_max=len(VALID) - 1)) == (
        Reason.TOO_LARGE
    )


@pytest.mark.parametrize("limits", [EnvelopeLimits(), EnvelopeLimits(1 << 16, deps_max=8)])
def test_payload_bytes_max_fits_with_every_dep_and_not_one_byte_more(
    limits: EnvelopeLimits,
) -> None:
    deps = [_h(f"dep {i}") for i in range(limits.deps_max)]
    room = payload_bytes_max(limits)
    fields = {"mesh_id": MESH, "epoch": 1, "seq": 2, "prev": _h("p"), "deps": deps, "hlc": 1}
    full = seal(KEY, **fields, payload=bytes(room), limits=limits)
    assert len(full.raw) == limits.envelope_bytes_max
    with pytest.raises(Rejected) as info:
        seal(KEY, **fields, payload=bytes(room + 1), limits=limits)
    assert info.value.reason == Reason.TOO_LARGE


# --- header field rules, validly signed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"version": 0}, Reason.BAD_VERSION),
        ({"version": 2}, Reason.BAD_VERSION),
        ({"version": 255}, Reason.BAD_VERSION),
        ({"kind": 0}, Reason.UNKNOWN_KIND),
        ({"kind": 2}, Reason.UNKNOWN_KIND),
        ({"kind": 255}, Reason.UNKNOWN_KIND),
        ({"epoch": 0}, Reason.BAD_EPOCH),
        ({"epoch": 0, "seq": 1, "prev": ZERO_ID}, Reason.BAD_EPOCH),
        ({"seq": 0}, Reason.BAD_SEQ),
        ({"seq": 2**63}, Reason.BAD_SEQ),
        ({"seq": 2**64 - 1}, Reason.BAD_SEQ),
        ({"seq": 2, "prev": ZERO_ID}, Reason.BAD_PREV),
        ({"epoch": 7, "seq": 9, "prev": ZERO_ID}, Reason.BAD_PREV),
        ({"epoch": 1, "seq": 1, "prev": _h("anything")}, Reason.BAD_PREV),
        ({"deps": [D2, D1]}, Reason.NOT_CANONICAL),
        ({"deps": [D1, D1]}, Reason.NOT_CANONICAL),
        ({"deps": [D1, D2, D2]}, Reason.NOT_CANONICAL),
        ({"deps": [ZERO_ID, D1]}, Reason.BAD_DEPS),
        ({"deps": [D1, ZERO_ID]}, Reason.BAD_DEPS),
        ({"deps": [ZERO_ID]}, Reason.BAD_DEPS),
    ],
    ids=lambda v: repr(v) if isinstance(v, Reason) else ",".join(f"{k}" for k in v),
)
def test_header_rules(overrides: dict[str, Any], expected: Reason) -> None:
    data = signed(**overrides)
    assert rejected_reason(data, mesh_id=MESH) == expected
    with pytest.raises(Rejected) as info:
        decode_envelope(data)
    assert info.value.reason == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"epoch": 0}, Reason.BAD_EPOCH),
        ({"seq": 0}, Reason.BAD_SEQ),
        ({"seq": 2, "prev": ZERO_ID}, Reason.BAD_PREV),
        ({"epoch": 1, "seq": 1}, Reason.BAD_PREV),
        ({"deps": [ZERO_ID]}, Reason.BAD_DEPS),
    ],
)
def test_seal_refuses_what_peers_would_refuse(overrides: dict[str, Any], expected: Reason) -> None:
    fields = {k: v for k, v in BASE.items() if k not in ("author", "kind")}
    with pytest.raises(Rejected) as info:
        seal(KEY, **{**fields, **overrides})
    assert info.value.reason == expected


# --- authentication and scope -------------------------------------------------------------------


def test_wrong_mesh_is_rejected() -> None:
    assert rejected_reason(VALID, mesh_id=OTHER_MESH) == Reason.WRONG_MESH
    assert open_envelope(VALID, mesh_id=MESH).mesh_id == MESH


def test_signature_by_another_key_is_rejected() -> None:
    forged = signed(OTHER_KEY, author=KEY.public_key)
    assert decode_envelope(forged).author == KEY.public_key  # structurally fine
    assert rejected_reason(forged, mesh_id=MESH) == Reason.BAD_SIGNATURE
    # The signature is checked before the mesh: a forgery never reports as a mesh mismatch.
    assert rejected_reason(forged, mesh_id=OTHER_MESH) == Reason.BAD_SIGNATURE


def test_signature_under_another_domain_is_rejected() -> None:
    body = VALID[:-64]
    for domain in (b"", b"memmesh/envelope/v2\x00", b"memmesh/envelope/v1"):
        assert rejected_reason(body + KEY.sign(domain, body)) == Reason.BAD_SIGNATURE


def test_envelope_from_another_author_is_valid_under_its_own_key() -> None:
    data = signed(OTHER_KEY)
    envelope = open_envelope(data, mesh_id=MESH)
    assert envelope.author == OTHER_KEY.public_key
    assert envelope.id != decode_envelope(VALID).id


# --- fuzzing ------------------------------------------------------------------------------------


def _outcome(data: bytes) -> Envelope | Reason:
    """Decode ``data`` from outside: an Envelope or a Reason; any other exception fails."""
    try:
        envelope = open_envelope(data, mesh_id=MESH)
    except Rejected as exc:
        assert isinstance(exc.reason, Reason)
        return exc.reason
    assert envelope.raw == data
    assert decode_envelope(envelope.raw) == envelope
    return envelope


_HEADER_PREFIX = VALID[: SPANS["deps_count"].start]


@settings(max_examples=scaled(1000), deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.binary(min_size=200, max_size=2000),
        st.binary(max_size=600).map(lambda tail: _HEADER_PREFIX + tail),
    )
)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    result = _outcome(data)
    assert isinstance(result, Reason)  # nobody forges an Ed25519 signature by chance


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete"]),
        st.integers(min_value=0, max_value=len(VALID) + 8),
        st.integers(min_value=0, max_value=255),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=scaled(1500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EDITS)
def test_fuzz_mutations_of_a_valid_envelope(edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(VALID)
    for op, position, value in edits:
        if op == "insert":
            data.insert(position % (len(data) + 1), value)
        elif data and op == "delete":
            del data[position % len(data)]
        elif data:
            data[position % len(data)] = value
    result = _outcome(bytes(data))
    if isinstance(result, Envelope):
        assert bytes(data) == VALID  # only the original itself can still be valid
    else:
        assert bytes(data) != VALID


# --- properties over valid field values ---------------------------------------------------------

_ID = st.binary(min_size=32, max_size=32)
_NONZERO_ID = _ID.filter(lambda b: b != ZERO_ID)


@st.composite
def envelope_fields(draw: st.DrawFn) -> dict[str, Any]:
    epoch = draw(st.integers(min_value=1, max_value=2**32 - 1))
    seq = draw(st.one_of(st.just(1), st.integers(min_value=1, max_value=2**63 - 1)))
    if epoch == 1 and seq == 1:
        prev = ZERO_ID
    elif seq > 1:
        prev = draw(_NONZERO_ID)
    else:
        prev = draw(_ID)
    return {
        "seed": draw(_ID),
        "mesh_id": draw(_ID),
        "epoch": epoch,
        "seq": seq,
        "prev": prev,
        "deps": draw(st.lists(_NONZERO_ID, max_size=5, unique=True)),
        "hlc": draw(st.integers(min_value=0, max_value=2**64 - 1)),
        "claims_root": draw(_ID),
        "payload": draw(st.binary(max_size=300)),
    }


def _seal(fields: dict[str, Any]) -> Envelope:
    args = {k: v for k, v in fields.items() if k != "seed"}
    return seal(SigningKey(fields["seed"]), **args)


@settings(max_examples=scaled(300), deadline=None)
@given(envelope_fields())
def test_property_seal_then_decode_gives_back_the_fields(fields: dict[str, Any]) -> None:
    envelope = _seal(fields)
    assert envelope.author == SigningKey(fields["seed"]).public_key
    for name in ("mesh_id", "epoch", "seq", "prev", "hlc", "claims_root", "payload"):
        assert getattr(envelope, name) == fields[name]
    assert envelope.deps == tuple(sorted(fields["deps"]))
    assert len(envelope.raw) == 220 + 32 * len(fields["deps"]) + len(fields["payload"])
    again = open_envelope(envelope.raw, mesh_id=fields["mesh_id"])
    assert again == envelope
    assert decode_envelope(again.raw) == envelope
    assert envelope.id == tagged_hash(ID_TAG, envelope.raw[:-64])
    assert envelope.raw[0] == ENVELOPE_VERSION


# Fields varied one at a time; epoch >= 2 and a non-zero prev keep every combination valid.
_VARIATIONS: dict[str, st.SearchStrategy[Any]] = {
    "seed": _ID,
    "mesh_id": _ID,
    "epoch": st.integers(min_value=2, max_value=2**32 - 1),
    "seq": st.integers(min_value=1, max_value=2**63 - 1),
    "prev": _NONZERO_ID,
    "deps": st.lists(_NONZERO_ID, max_size=3, unique=True).map(sorted),
    "hlc": st.integers(min_value=0, max_value=2**64 - 1),
    "claims_root": _ID,
    "payload": st.binary(max_size=64),
}


@settings(max_examples=scaled(300), deadline=None)
@given(st.data())
def test_property_id_differs_when_any_body_field_differs(data: st.DataObject) -> None:
    base = {name: data.draw(strategy, label=name) for name, strategy in _VARIATIONS.items()}
    field = data.draw(st.sampled_from(sorted(_VARIATIONS)), label="field")
    new_value = data.draw(_VARIATIONS[field].filter(lambda v: v != base[field]), label="new")
    first = _seal(base)
    second = _seal({**base, field: new_value})
    assert first.body != second.body
    assert first.id != second.id
