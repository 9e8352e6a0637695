"""The statement's canonical codec and strict decoder, and the DSSE envelope around it."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from memmesh.attest import (
    PAYLOAD_TYPE,
    DsseError,
    Statement,
    StatementError,
    cosign,
    decode_dsse,
    decode_statement,
    pae,
    sign_statement,
)
from memmesh.attest.dsse import DSSE_BYTES_MAX, SIGNATURES_MAX, sign_payload
from memmesh.attest.statement import (
    STATEMENT_BYTES_MAX,
    Counts,
    LogEntry,
    PolicyVersion,
    log_leaf,
    top_root_of,
)
from memmesh.canonical import canonical_bytes
from memmesh.hlc import hlc_pack
from memmesh.ids import ZERO_ID, tagged_hash
from memmesh.testing import seeded_key

SIGNER = seeded_key("statement/signer")
WITNESS = seeded_key("statement/witness")


def _h(label: str) -> bytes:
    return tagged_hash(b"test", label.encode())


def _statement(**changes: object) -> Statement:
    logs = (
        LogEntry(_h("a"), 1, 3, _h("a3"), _h("ra")),
        LogEntry(_h("b"), 2, 1, _h("b1"), _h("rb")),
    )
    logs = tuple(sorted(logs, key=lambda e: e.log))
    base = Statement(
        mesh_id=_h("mesh"),
        signer=SIGNER.public_key,
        seq=1,
        prev=ZERO_ID,
        hlc=hlc_pack(1_700_000_000_000, 7),
        logs=logs,
        evidence=tuple(sorted([_h("e1"), _h("e2")])),
        top_root=top_root_of(logs),
        claims_digest=_h("claims"),
        resolution_digest=_h("resolution"),
        policies=(PolicyVersion("lww", 1), PolicyVersion("manual", 1)),
        counts=Counts(envelopes=6, claims=9, live_claims=7, subjects=5, conflicts_open=1),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _doc(statement: Statement) -> dict[str, object]:
    loaded = json.loads(statement.to_bytes())
    assert isinstance(loaded, dict)
    return loaded


def _encode(doc: object) -> bytes:
    return canonical_bytes(doc)


def test_round_trip_and_id() -> None:
    statement = _statement()
    data = statement.to_bytes()
    assert decode_statement(data) == statement
    assert statement.id == tagged_hash(b"attestation-id/v1", data)
    assert _statement(seq=2, prev=_h("p")).id != statement.id
    doc = _doc(statement)
    assert doc["hlc"] == [1_700_000_000_000, 7]  # the packed value would exceed 2^53
    assert doc["prev"] == "00" * 32
    assert statement.frontier[0][1].seq == statement.logs[0].size
    assert len(log_leaf(statement.logs[0])) == 80


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda d: d.update(extra=1), "unknown_field"),
        (lambda d: d.pop("counts"), "missing_field"),
        (lambda d: d.update(seq="1"), "wrong_type"),
        (lambda d: d.update(seq=True), "wrong_type"),
        (lambda d: d.update(seq=0), "bad_value"),
        (lambda d: d.update(v=2), "bad_value"),
        (lambda d: d.update(mesh="AB" * 32), "bad_value"),
        (lambda d: d.update(mesh="ab" * 31), "bad_value"),
        (lambda d: d.update(mesh=None), "wrong_type"),
        (lambda d: d.update(hlc=[1, 2, 3]), "wrong_type"),
        (lambda d: d.update(hlc=[1 << 48, 0]), "bad_value"),
        (lambda d: d.update(logs={}), "wrong_type"),
        (lambda d: d["logs"].reverse(), "not_sorted"),
        (lambda d: d["logs"].append(d["logs"][0]), "not_sorted"),
        (lambda d: d["logs"][0].update(size=0), "bad_value"),
        (lambda d: d["logs"][0].update(epoch=0), "bad_value"),
        (lambda d: d["logs"][0].update(epoch=1 << 32), "bad_value"),
        (lambda d: d["logs"][0].update(color="red"), "unknown_field"),
        (lambda d: d["logs"][0].pop("root"), "missing_field"),
        (lambda d: d["evidence"].reverse(), "not_sorted"),
        (lambda d: d.update(evidence=[0]), "wrong_type"),
        (lambda d: d["policies"].reverse(), "not_sorted"),
        (lambda d: d["policies"][0].update(name="Not A Rule"), "bad_value"),
        (lambda d: d["policies"][0].update(version=-1), "bad_value"),
        (lambda d: d["counts"].update(claims=-1), "bad_value"),
        (lambda d: d["counts"].update(detected_ms=5), "unknown_field"),
    ],
)
def test_decoder_refuses_with_a_reason_code(edit: object, code: str) -> None:
    doc = _doc(_statement())
    edit(doc)  # type: ignore[operator]
    with pytest.raises(StatementError) as caught:
        decode_statement(_encode(doc))
    assert caught.value.code == code


def test_decoder_refuses_non_canonical_bytes_oversize_and_floats() -> None:
    data = _statement().to_bytes()
    for variant, code in [
        (json.dumps(json.loads(data), indent=1).encode(), "not_canonical"),
        (json.dumps(json.loads(data), sort_keys=False).encode(), "not_canonical"),
        (data + b" ", "not_canonical"),
        (data.replace(b'"seq":1', b'"seq":1.0'), "bad_json"),
        (data[:-1], "bad_json"),
        (b"[]", "wrong_type"),
        (b" " * (STATEMENT_BYTES_MAX + 1), "too_large"),
    ]:
        with pytest.raises(StatementError) as caught:
            decode_statement(variant)
        assert caught.value.code == code, variant[:60]


def test_building_an_ill_shaped_statement_is_refused() -> None:
    with pytest.raises(StatementError):
        _statement(seq=0)
    with pytest.raises(StatementError):
        _statement(mesh_id=b"short")
    with pytest.raises(StatementError):
        _statement(evidence=(_h("z"), _h("z")))


# -- DSSE -----------------------------------------------------------------------------------


def test_pae_matches_the_dsse_specification() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_sign_verify_and_cosign() -> None:
    statement = _statement()
    dsse = sign_statement(statement, SIGNER)
    envelope = decode_dsse(dsse)
    assert envelope.payload_type == PAYLOAD_TYPE
    assert decode_statement(envelope.payload) == statement
    own = envelope.signature_by(SIGNER.public_key)
    assert own is not None and envelope.valid(own)
    doc = json.loads(dsse)
    assert doc["signatures"][0]["keyid"] == SIGNER.public_key.hex()
    assert base64.b64decode(doc["payload"]) == statement.to_bytes()
    cosigned = decode_dsse(cosign(dsse, WITNESS))
    assert [s.keyid for s in cosigned.signatures] == [SIGNER.public_key, WITNESS.public_key]
    assert all(cosigned.valid(s) for s in cosigned.signatures)
    with pytest.raises(ValueError):
        cosign(cosign(dsse, WITNESS), WITNESS)
    with pytest.raises(ValueError):
        sign_statement(statement, WITNESS)  # not the statement's signer
    # A signature covers the payload type too.
    other_type = dataclasses.replace(envelope, payload_type="application/json")
    assert not other_type.valid(envelope.signatures[0])
    tampered = dataclasses.replace(
        envelope, payload=envelope.payload.replace(b'"seq":1', b'"seq":2')
    )
    assert not tampered.valid(envelope.signatures[0])


def test_dsse_tolerates_reformatting_but_nothing_else() -> None:
    dsse = sign_statement(_statement(), SIGNER)
    pretty = json.dumps(json.loads(dsse), indent=2).encode()
    assert decode_dsse(pretty) == decode_dsse(dsse)


def _dsse_doc() -> dict[str, object]:
    loaded = json.loads(sign_statement(_statement(), SIGNER))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda d: d.update(extra=1), "unknown_field"),
        (lambda d: d.pop("payloadType"), "missing_field"),
        (lambda d: d.update(payload=5), "wrong_type"),
        (lambda d: d.update(payload="not base64!"), "bad_base64"),
        (lambda d: d.update(payload=d["payload"][:-1]), "bad_base64"),
        (
            lambda d: d.update(payload=d["payload"].replace("+", "-").replace("/", "_") + "-_"),
            "bad_base64",
        ),
        (lambda d: d.update(payloadType=""), "bad_value"),
        (lambda d: d.update(payloadType=["x"]), "wrong_type"),
        (lambda d: d.update(signatures=[]), "count_exceeds_limit"),
        (lambda d: d.update(signatures={}), "wrong_type"),
        (lambda d: d["signatures"].append(d["signatures"][0]), "duplicate_keyid"),
        (lambda d: d["signatures"][0].update(keyid="ABCD"), "bad_value"),
        (lambda d: d["signatures"][0].update(keyid=None), "wrong_type"),
        (
            lambda d: d["signatures"][0].update(sig=base64.b64encode(b"x" * 63).decode()),
            "bad_value",
        ),
        (lambda d: d["signatures"][0].pop("sig"), "missing_field"),
        (lambda d: d["signatures"][0].update(extra=""), "unknown_field"),
        (
            lambda d: d.update(
                signatures=[
                    {"keyid": f"{i:064x}", "sig": d["signatures"][0]["sig"]}
                    for i in range(SIGNATURES_MAX + 1)
                ]
            ),
            "count_exceeds_limit",
        ),
    ],
)
def test_dsse_decoder_refuses_with_a_reason_code(edit: object, code: str) -> None:
    doc = _dsse_doc()
    edit(doc)  # type: ignore[operator]
    with pytest.raises(DsseError) as caught:
        decode_dsse(json.dumps(doc).encode())
    assert caught.value.code == code


def test_dsse_decoder_refuses_bad_json_and_oversize() -> None:
    good = sign_statement(_statement(), SIGNER)
    for variant, code in [
        (good[:-1], "bad_json"),
        (b"\xff" + good, "bad_json"),
        (good.replace(b'"payloadType"', b'"payload"'), "bad_json"),  # duplicate member
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (b'{"payload": 1.5}', "bad_json"),
        (b"[]", "wrong_type"),
        (b" " * (DSSE_BYTES_MAX + 1), "too_large"),
    ]:
        with pytest.raises(DsseError) as caught:
            decode_dsse(variant)
        assert caught.value.code == code


def test_sign_payload_signs_exactly_the_pae() -> None:
    envelope = sign_payload(b"body", SIGNER, "text/plain")
    from memmesh.crypto import verify

    assert verify(
        SIGNER.public_key, b"", b"DSSEv1 10 text/plain 4 body", envelope.signatures[0].sig
    )
