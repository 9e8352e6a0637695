"""Claims and the document grammar: round trips, pycrdt compatibility, refusals."""

from __future__ import annotations

import dataclasses
import json
import unicodedata

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.canonical import canonical_bytes, check_json, parse_canonical
from memmesh.claims import (
    CLAIM_ID_TAG,
    Claim,
    _body_fields,
    _check_body,
    _checked_claim,
    _common_body_fields,
    _plain_body,
    decode_claim,
    make_claim,
)
from memmesh.errors import Reason, Rejected
from memmesh.ids import tagged_hash
from memmesh.membership import Role, decode_genesis, make_genesis, parse_op
from memmesh.testing import MeshFixture, scaled, seeded_key
from memmesh.ydecode import ROOT_NAME, client_id, decode_update, encode_update, item_key

MESH = MeshFixture("grammar")
AGENT = MESH.writers[0]


def _claim(**overrides: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "mesh_id": MESH.mesh_id,
        "aseq": 1,
        "hlc": (1_700_000_000_000, 3),
        "namespace": ("team", "facts"),
        "key": "ceo",
        "type": "fact",
        "value": {"name": "Ada"},
    }
    fields.update(overrides)
    return make_claim(AGENT, **fields)  # type: ignore[arg-type]


def test_claim_round_trip_and_id() -> None:
    claim = _claim(source="web", confidence=9000, supersedes=[b"\x02" * 32, b"\x01" * 32])
    again = decode_claim(claim.raw, mesh_id=MESH.mesh_id)
    assert again == claim
    assert claim.id == tagged_hash(CLAIM_ID_TAG, claim.raw)
    assert claim.supersedes == (b"\x01" * 32, b"\x02" * 32)
    assert claim.subject == (("team", "facts"), "ceo")


def test_the_fast_constructor_sets_every_field_as_the_dataclass_does() -> None:
    claim = _claim(source="web", confidence=9000, supersedes=[b"\x02" * 32])
    fields = _check_body(json.loads(claim.raw[5:-64]))
    made = Claim(**fields, id=claim.id, held=claim.raw)
    fast = _checked_claim(fields, claim.id, claim.raw)
    assert fast == made == claim
    for f in dataclasses.fields(Claim):
        assert getattr(fast, f.name) == getattr(made, f.name), f.name
    buffer = b"xy" + claim.raw
    assert _checked_claim(fields, claim.id, buffer, 2).raw == claim.raw


class _Label(str):
    """A ``str`` subclass: a value a caller may pass that a peer decodes as plain ``str``."""


_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=scaled(200), deadline=None)
@given(
    value=_json_values,
    key=st.sampled_from(["k", "\ue001x", _Label("sub")]),
    labels=st.sampled_from([("a",), ("a", _Label("b")), ("\U0001f600",)]),
    source=st.sampled_from([None, "web", _Label("cli")]),
    aseq=st.sampled_from([1, 7, True]),
)
def test_a_made_claim_is_what_a_peer_decodes(
    value: object, key: str, labels: tuple[str, ...], source: str | None, aseq: int
) -> None:
    """``make_claim`` checks plain inputs in place and others by decoding its own bytes; either
    way the claim equals the peer's decoding, member order of the value included, and holds no
    object of the caller's."""
    try:
        claim = _claim(value=value, key=key, namespace=labels, source=source, aseq=aseq)
    except ValueError:
        assume_not_nfc = any(
            isinstance(s, str) and not unicodedata.is_normalized("NFC", s) for s in _strings(value)
        )
        assert assume_not_nfc
        return
    except Rejected as exc:
        assert aseq is True and exc.reason is Reason.BAD_CLAIM
        return
    peer = decode_claim(claim.raw, mesh_id=MESH.mesh_id)
    assert peer == claim
    assert json.dumps(peer.value) == json.dumps(claim.value)
    assert all(type(label) is str for label in claim.namespace)
    assert type(claim.key) is str and (claim.source is None or type(claim.source) is str)
    if isinstance(value, list | tuple | dict):
        assert claim.value is not value


_nfc_text = st.text(max_size=12).map(lambda t: unicodedata.normalize("NFC", t)).filter(bool)
_hex_ids = st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(
    lambda ids: sorted({i.hex() for i in ids})
)
_opt_ints = st.none() | st.integers(0, 2**53)


@settings(max_examples=scaled(300), deadline=None)
@given(
    value=_json_values,
    key=_nfc_text,
    type_=_nfc_text,
    labels=st.lists(_nfc_text, min_size=1, max_size=3),
    source=st.none() | _nfc_text,
    ints=st.tuples(st.integers(1, 2**53), st.integers(0, 2**48), st.integers(0, 2**16)),
    optional=st.tuples(_opt_ints, _opt_ints, _opt_ints),
    refs=st.tuples(_hex_ids, _hex_ids, _hex_ids),
)
def test_the_fast_body_encoder_writes_the_canonical_bytes(
    *,
    value: object,
    key: str,
    type_: str,
    labels: list[str],
    source: str | None,
    ints: tuple[int, int, int],
    optional: tuple[int | None, int | None, int | None],
    refs: tuple[list[str], list[str], list[str]],
) -> None:
    """``make_claim`` writes a plain body member by member; the bytes must be exactly the
    canonical encoder's (RFC 8785), whatever the strings hold (quotes, controls, characters
    past U+E000 and U+FFFF) and whatever the value is."""
    try:
        check_json(value)
    except ValueError:
        return  # a value outside the subset never reaches the fast encoder
    doc = {
        "v": 1,
        "mesh": MESH.mesh_id.hex(),
        "agent": AGENT.public_key.hex(),
        "aseq": ints[0],
        "hlc": [ints[1], ints[2]],
        "ns": labels,
        "key": key,
        "type": type_,
        "value": value,
        "valid_at": optional[0],
        "invalid_at": optional[1],
        "source": source,
        "derived_from": refs[0],
        "based_on": refs[1],
        "confidence": optional[2],
        "supersedes": refs[2],
    }
    assert _plain_body(doc) == canonical_bytes(doc)


def _old_body_fields(body: bytes) -> dict[str, object]:
    return _check_body(parse_canonical(body, what="claim body", bytes_max=1 << 16))


_EDIT_BYTES = b' {}[]",:0123456789.e-+ntrufalsvx\\'


_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=6)
_ids = st.lists(st.binary(min_size=32, max_size=32), max_size=3)


@settings(max_examples=scaled(1000), deadline=None)
@given(
    value=_json_values,
    shape=st.fixed_dictionaries(
        {
            "key": _ascii,
            "type": st.sampled_from(["fact", "note.v2", "a_b-c"]),
            "namespace": st.lists(_ascii, min_size=1, max_size=3).map(tuple),
            "source": st.none() | _ascii,
            "supersedes": _ids,
            "derived_from": _ids,
            "based_on": _ids,
            "confidence": st.none() | st.integers(0, 10_000),
            "valid_at": st.none() | st.integers(0, 2**40),
            "aseq": st.integers(1, 2**53),
            "hlc": st.tuples(st.integers(0, 2**48 - 1), st.integers(0, 2**16 - 1)),
        }
    ),
    edits=st.lists(
        st.tuples(
            st.integers(0, 1 << 16),
            st.sampled_from(["insert", "delete", "replace"]),
            st.sampled_from(list(_EDIT_BYTES)),
        ),
        max_size=3,
    ),
)
def test_the_fast_body_decoder_decides_as_the_general_one(
    value: object, shape: dict[str, object], edits: list[tuple[int, str, int]]
) -> None:
    """A claim body of any shape, well formed or edited byte by byte: the fast decoders (the
    common-shape expression, then decode-and-write-back) accept exactly what the general
    canonical decoder accepts, with the same fields, and refuse the rest with the same reason
    code."""
    try:
        body = bytearray(_claim(value=value, **shape).raw[5:-64])
    except (ValueError, Rejected):
        return
    for at, how, byte in edits:
        if how == "insert":
            body.insert(at % (len(body) + 1), byte)
        elif how == "delete" and len(body) > 1:
            del body[at % len(body)]
        else:
            body[at % len(body)] = byte
    expected: object
    try:
        expected = _old_body_fields(bytes(body))
    except Rejected as exc:
        expected = exc.reason
    got: object
    try:
        got = _body_fields(bytes(body))
    except Rejected as exc:
        got = exc.reason
    assert got == expected
    common = _common_body_fields(bytes(body))
    assert common is None or common == expected


@pytest.mark.parametrize(
    "value", [0, -7, 2**53, "done", "", None, True, [1, "a"], {"b": [None], "a": 1}]
)
def test_the_common_shape_is_read_by_the_expression(value: object) -> None:
    """The expression path is the one a typical claim takes (not a test of the fallback)."""
    claim = _claim(
        value=value,
        source="web",
        confidence=9000,
        valid_at=5,
        invalid_at=9,
        namespace=("team", "facts"),
        supersedes=[b"\x02" * 32, b"\x01" * 32],
        based_on=[b"\x03" * 32],
    )
    body = claim.raw[5:-64]
    common = _common_body_fields(body)
    assert common is not None
    assert common == _old_body_fields(body)
    assert decode_claim(claim.raw, mesh_id=MESH.mesh_id) == claim


def test_numbers_the_general_decoder_refuses_are_not_taken_by_the_expression() -> None:
    body = _claim(value=5).raw[5:-64]
    for bad in (b"-0", b"05", b"9007199254740993", b"1.0", b"1e3"):
        edited = body.replace(b'"value":5}', b'"value":' + bad + b"}")
        assert _common_body_fields(edited) is None
        with pytest.raises(Rejected):
            _body_fields(edited)
    too_big = body.replace(b'"aseq":1,', b'"aseq":9007199254740993,')
    assert _common_body_fields(too_big) is None


_LOW, _HIGH = "01" * 32, "02" * 32


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"aseq":1,', b'"aseq":0,', Reason.BAD_CLAIM),
        (b'"hlc":[1700000000000,3]', b'"hlc":[281474976710656,3]', Reason.BAD_CLAIM),
        (b'"hlc":[1700000000000,3]', b'"hlc":[1700000000000,65536]', Reason.BAD_CLAIM),
        (b'"confidence":9000', b'"confidence":10001', Reason.BAD_CLAIM),
        (b'"invalid_at":9', b'"invalid_at":5', Reason.BAD_CLAIM),
        (b'"valid_at":5', b'"valid_at":9007199254740993', Reason.BAD_JSON),
        (b'"type":"fact"', b'"type":"Fact"', Reason.BAD_CLAIM),
        (b'"key":"ceo"', b'"key":"' + b"k" * 513 + b'"', Reason.BAD_CLAIM),
        (b'"source":"web"', b'"source":""', Reason.BAD_CLAIM),
        (b'"ns":["team","facts"]', b'"ns":["team",""]', Reason.BAD_CLAIM),
        (b'"ns":["team","facts"]', b'"ns":["team",{"a":1}]', Reason.BAD_CLAIM),  # fuzz finding
        (b'"ns":["team","facts"]', b'"ns":[["team"]]', Reason.BAD_CLAIM),
        (b'"ns":["team","facts"]', b'"ns":[' + b'"a",' * 16 + b'"b"]', Reason.BAD_CLAIM),
        (
            f'"supersedes":["{_LOW}","{_HIGH}"]'.encode(),
            f'"supersedes":["{_HIGH}","{_LOW}"]'.encode(),
            Reason.NOT_CANONICAL,
        ),
        (
            f'"supersedes":["{_LOW}","{_HIGH}"]'.encode(),
            f'"supersedes":["{_LOW}","{_LOW}"]'.encode(),
            Reason.NOT_CANONICAL,
        ),
        (b'"v":1', b'"v":2', Reason.BAD_CLAIM),
    ],
)
def test_member_rules_hold_on_the_expression_path(old: bytes, new: bytes, reason: Reason) -> None:
    """Each rule of :func:`_check_body` that the expression cannot express is checked on its
    path too: the body is left to the general decoder, which names the rule."""
    claim = _claim(
        source="web",
        confidence=9000,
        valid_at=5,
        invalid_at=9,
        supersedes=[b"\x01" * 32, b"\x02" * 32],
    )
    body = claim.raw[5:-64]
    assert _common_body_fields(body) is not None
    assert old in body
    edited = body.replace(old, new)
    assert _common_body_fields(edited) is None
    with pytest.raises(Rejected) as info:
        _body_fields(edited)
    assert info.value.reason is reason


def _strings(value: object) -> list[object]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [value]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aseq": 0}, Reason.BAD_CLAIM),
        ({"type": "Fact!"}, Reason.BAD_CLAIM),
        ({"namespace": ()}, Reason.BAD_CLAIM),
        ({"namespace": ("",)}, Reason.BAD_CLAIM),
        ({"key": ""}, Reason.BAD_CLAIM),
        ({"confidence": 10_001}, Reason.BAD_CLAIM),
        ({"valid_at": 5, "invalid_at": 5}, Reason.BAD_CLAIM),
        ({"hlc": (1 << 48, 0)}, Reason.BAD_CLAIM),
        ({"mesh_id": b"\x01" * 31}, Reason.BAD_CLAIM),
    ],
)
def test_local_claims_outside_the_rules_are_refused(
    overrides: dict[str, object], reason: Reason
) -> None:
    with pytest.raises(Rejected) as info:
        _claim(**overrides)
    assert info.value.reason is reason


def test_claim_from_another_mesh_and_forged_signature() -> None:
    claim = _claim()
    with pytest.raises(Rejected) as info:
        decode_claim(claim.raw, mesh_id=b"\x00" * 32)
    assert info.value.reason is Reason.WRONG_MESH
    forged = bytearray(claim.raw)
    forged[-5] ^= 0x10
    with pytest.raises(Rejected) as info:
        decode_claim(bytes(forged))
    assert info.value.reason is Reason.BAD_CLAIM_SIGNATURE


def test_every_truncation_of_a_claim_is_refused() -> None:
    raw = _claim().raw
    for n in range(len(raw)):
        with pytest.raises(Rejected):
            decode_claim(raw[:n])


@settings(max_examples=scaled(60))
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=12), st.integers(0, 10_000))
def test_encoded_updates_decode_and_apply_in_pycrdt(values: list[int], start: int) -> None:
    claims = [_claim(value=v, aseq=i + 1) for i, v in enumerate(dict.fromkeys(values))]
    author = seeded_key("grammar-author").public_key
    client = client_id(author, 1)
    update = encode_update(client, start, [(c.id, c.raw) for c in claims])
    items = decode_update(update, client=client, start_clock=start)
    assert [i.clock for i in items] == list(range(start, start + len(claims)))
    assert [i.claim_id for i in items] == [c.id for c in claims]
    if start == 0:  # pycrdt integrates a log from its beginning
        doc: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc()
        root = doc.get(ROOT_NAME, type=pycrdt.Map)
        doc.apply_update(update)
        assert {k: bytes(v) for k, v in root.items()} == {
            item_key(client, c.id): c.raw for c in claims
        }


def test_client_ids_fit_javascript_numbers_and_differ_by_epoch() -> None:
    key = seeded_key("x").public_key
    ids = {client_id(key, epoch) for epoch in range(1, 50)}
    assert len(ids) == 49
    assert all(0 <= i < 2**53 for i in ids)


def test_genesis_round_trip_and_refusals() -> None:
    node = seeded_key("n").public_key
    genesis = make_genesis(MESH.admin, "m", [(node, Role.NODE)])
    assert decode_genesis(genesis.raw) == genesis
    assert genesis.mesh_id == tagged_hash(b"mesh-id/v1", genesis.raw)
    assert (MESH.admin.public_key, Role.ADMIN) in genesis.members
    forged = bytearray(genesis.raw)
    forged[-1] ^= 1
    with pytest.raises(Rejected) as info:
        decode_genesis(bytes(forged))
    assert info.value.reason is Reason.BAD_SIGNATURE
    for n in range(0, len(genesis.raw), 7):
        with pytest.raises(Rejected):
            decode_genesis(genesis.raw[:n])


def test_membership_operations_parse_and_malformed_ones_are_refused() -> None:
    target = seeded_key("t").public_key
    assert parse_op(MESH.admit(target, "writer"))[:3] == ("admit", target, Role.WRITER)
    assert parse_op(MESH.revoke_node(target, 1, 9))[3] == (1, 9)
    assert parse_op(MESH.revoke_agent(target, 4))[4] == 4
    bad = [
        MESH.claim(MESH.admin, "x", {"key": target.hex(), "role": "king"}, type="admit"),
        MESH.claim(MESH.admin, "x", {"key": "zz", "role": "writer"}, type="admit"),
        MESH.claim(MESH.admin, "x", {"key": target.hex(), "cutoff": {"seq": 1}}, type="revoke"),
        MESH.claim(MESH.admin, "x", {"key": target.hex()}, type="revoke"),
    ]
    for claim in bad:
        with pytest.raises(Rejected) as info:
            parse_op(claim)
        assert info.value.reason is Reason.BAD_MEMBERSHIP_OP
