"""Offline verification: what passes, and every way an attestation or its bundle can fail."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from typing import TYPE_CHECKING

import pytest

from memmesh.admission import Admission
from memmesh.attest import (
    AttestationBuilder,
    Bundle,
    BundleError,
    Statement,
    Verdict,
    cosign,
    decode_bundle,
    decode_dsse,
    encode_bundle,
    make_bundle,
    sign_statement,
    verify_attestation,
)
from memmesh.attest import replay as replay_module
from memmesh.attest.bundle import BUNDLE_MAGIC, BundleLimits, closure_ids
from memmesh.attest.dsse import sign_payload
from memmesh.attest.statement import PolicyVersion, log_label, top_root_of
from memmesh.crypto import SigningKey
from memmesh.envelope import seal
from memmesh.ids import ZERO_ID, tagged_hash
from memmesh.memory.view import View
from memmesh.merkle import merkle_root
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture
from memmesh.ydecode import client_id, encode_update

if TYPE_CHECKING:
    from conftest import Net


@dataclasses.dataclass
class Attested:
    net: Net
    index: int
    statement: Statement
    dsse: bytes
    bundle: bytes

    @property
    def key(self) -> SigningKey:
        return self.net.mesh.nodes[self.index]

    @property
    def admission(self) -> Admission:
        return self.net.nodes[self.index].admission


def _attest(net: Net, index: int) -> Attested:
    node = net.nodes[index]
    key = net.mesh.nodes[index]
    statement, dsse = AttestationBuilder(node.admission, node.view).attest(
        key, hlc=7 << 16, previous=None
    )
    return Attested(net, index, statement, dsse, make_bundle(node.admission, dsse))


@pytest.fixture(scope="module")
def att(rich: Net) -> Attested:
    return _attest(rich, 1)


def _forge(att: Attested, *, retop: bool = True, **changes: object) -> bytes:
    """The attester signing a statement that lies (its own key, so the signature is good)."""
    statement = dataclasses.replace(att.statement, **changes)  # type: ignore[arg-type]
    if retop:
        statement = dataclasses.replace(statement, top_root=top_root_of(statement.logs))
    return sign_statement(statement, att.key)


def test_every_node_attestation_verifies_with_and_without_its_bundle(rich: Net) -> None:
    for index in range(3):
        a = _attest(rich, index)
        bare = verify_attestation(a.dsse, bundle=None, pubkey=a.key.public_key)
        assert bare.verdict is Verdict.VALID and bare.exit_code == 0 and bare.ok, bare.failures
        assert not bare.bundle_checked and not bare.resolution_checked
        assert bare.statement == a.statement and bare.attestation_id == a.statement.id
        full = verify_attestation(a.dsse, bundle=a.bundle, pubkey=None)
        assert full.verdict is Verdict.VALID, full.failures
        assert full.bundle_checked and full.resolution_checked
        assert full.envelopes_verified == len(a.admission.records) == a.statement.counts.envelopes
        assert full.claims_verified == a.statement.counts.claims
        assert 0 < full.signature_seconds <= full.total_seconds


def test_signature_time_is_measured_separately(att: Attested) -> None:
    ticks = itertools.count()
    report = verify_attestation(
        att.dsse, bundle=att.bundle, pubkey=None, timer=lambda: float(next(ticks))
    )
    assert report.ok
    # Each timed check reads the timer twice, one tick apart: one tick per signature verified.
    assert report.signature_seconds == 1 + report.envelopes_verified + report.claims_verified
    assert report.total_seconds > report.signature_seconds


def test_bundle_holds_the_attested_closure(att: Attested) -> None:
    bundle = decode_bundle(att.bundle)
    assert bundle.dsse == att.dsse and bundle.genesis == att.net.mesh.genesis.raw
    ids = closure_ids(att.admission, att.statement)
    records = att.admission.records
    assert list(bundle.envelopes) == [att.admission.envelope_bytes(i) for i in ids]
    assert sorted(ids) == sorted(records)  # nothing was written since: everything is attested
    assert encode_bundle(bundle) == att.bundle


def test_pubkey_that_is_not_the_signer(att: Attested) -> None:
    other = att.net.mesh.nodes[0].public_key
    report = verify_attestation(att.dsse, bundle=None, pubkey=other)
    assert report.verdict is Verdict.INVALID and report.exit_code == 1
    assert report.codes == ["signer_mismatch"]


def test_statement_signed_by_another_key_than_its_signer(att: Attested) -> None:
    thief = att.net.mesh.nodes[0]
    dsse = sign_payload(att.statement.to_bytes(), thief).to_json()
    report = verify_attestation(dsse, bundle=None, pubkey=thief.public_key)
    assert report.codes == ["signature", "signer_mismatch"]
    assert report.witnesses == (thief.public_key,)  # a valid signature, but not the signer's
    assert verify_attestation(dsse, bundle=None, pubkey=None).codes == ["signature"]


def test_tampered_signature_and_payload(att: Attested) -> None:
    doc = json.loads(att.dsse)
    sig = bytearray(decode_dsse(att.dsse).signatures[0].sig)
    sig[5] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    assert verify_attestation(json.dumps(doc).encode(), bundle=None, pubkey=None).codes == [
        "signature"
    ]
    doc = json.loads(att.dsse)
    doc["payload"] = base64.b64encode(
        att.statement.to_bytes().replace(b'"seq":1', b'"seq":3')
    ).decode()
    report = verify_attestation(json.dumps(doc).encode(), bundle=None, pubkey=None)
    assert "signature" in report.codes and report.verdict is Verdict.INVALID


def test_witness_cosignatures(att: Attested) -> None:
    witness = att.net.mesh.nodes[0]
    cosigned = cosign(att.dsse, witness)
    report = verify_attestation(cosigned, bundle=att.bundle, pubkey=att.key.public_key)
    assert report.ok and report.witnesses == (witness.public_key,)
    doc = json.loads(cosigned)
    doc["signatures"][1]["sig"] = doc["signatures"][0]["sig"]
    report = verify_attestation(json.dumps(doc).encode(), bundle=None, pubkey=None)
    assert report.codes == [f"witness_signature:{witness.public_key.hex()}"]


def test_chain_fields(att: Attested) -> None:
    assert verify_attestation(_forge(att, prev=b"\x01" * 32), bundle=None, pubkey=None).codes == [
        "chain"
    ]
    assert verify_attestation(_forge(att, seq=2), bundle=None, pubkey=None).codes == ["chain"]
    assert verify_attestation(_forge(att, seq=2, prev=b"\x01" * 32), bundle=None, pubkey=None).ok


def test_lies_caught_without_a_bundle(att: Attested) -> None:
    s = att.statement
    cases = {
        "top_root": _forge(att, retop=False, top_root=s.claims_digest),
        "counts:envelopes": _forge(att, counts=dataclasses.replace(s.counts, envelopes=1)),
        "counts:live_claims": _forge(
            att, counts=dataclasses.replace(s.counts, live_claims=s.counts.claims + 1)
        ),
        "counts:conflicts_open": _forge(
            att, counts=dataclasses.replace(s.counts, conflicts_open=99)
        ),
    }
    for code, dsse in cases.items():
        report = verify_attestation(dsse, bundle=None, pubkey=None)
        assert report.codes == [code] and report.verdict is Verdict.INVALID


def test_lies_caught_with_the_bundle(att: Attested) -> None:
    s = att.statement
    log = s.logs[0]
    label = log_label(log.log)
    lied_root = dataclasses.replace(log, root=tagged_hash(b"lie", b"root"))
    short = dataclasses.replace(log, size=log.size - 1, head=att.admission.logs[log.log][-2])
    cases = {
        "claims_digest": dict(claims_digest=tagged_hash(b"lie", b"claims")),
        "resolution_digest": dict(resolution_digest=tagged_hash(b"lie", b"resolution")),
        "counts:claims": dict(counts=dataclasses.replace(s.counts, claims=s.counts.claims - 1)),
        "counts:subjects": dict(
            counts=dataclasses.replace(s.counts, subjects=s.counts.subjects + 1)
        ),
        "counts:conflicts_open": dict(counts=dataclasses.replace(s.counts, conflicts_open=0)),
        f"log_root:{label}": dict(logs=(lied_root, *s.logs[1:])),
        "policies": dict(policies=(PolicyVersion("lww", 1),)),
    }
    for code, changes in cases.items():
        dsse = _forge(att, **changes)
        bundle = make_bundle(att.admission, dsse)
        assert verify_attestation(dsse, bundle=None, pubkey=None).ok, code  # consistent on its face
        report = verify_attestation(dsse, bundle=bundle, pubkey=att.key.public_key)
        assert code in report.codes and report.verdict is Verdict.INVALID, (code, report.codes)
    # A log root that lies makes the recomputed top root differ as well.
    dsse = _forge(att, logs=(lied_root, *s.logs[1:]))
    report = verify_attestation(dsse, bundle=make_bundle(att.admission, dsse), pubkey=None)
    assert report.codes == [f"log_root:{label}", "top_root"]
    # Claiming a shorter log: the bundle's extra envelope is outside the attested set.
    dsse = _forge(
        att,
        logs=(short, *s.logs[1:]),
        counts=dataclasses.replace(s.counts, envelopes=s.counts.envelopes - 1),
    )
    report = verify_attestation(dsse, bundle=att.bundle.replace(att.dsse, dsse), pubkey=None)
    assert f"closure_extra:{log.head.hex()}" in report.codes


def test_policy_versions_this_verifier_does_not_have(att: Attested) -> None:
    dsse = _forge(att, policies=(PolicyVersion("lww", 2), PolicyVersion("manual", 1)))
    report = verify_attestation(dsse, bundle=make_bundle(att.admission, dsse), pubkey=None)
    assert report.ok and report.bundle_checked and not report.resolution_checked
    assert "'lww' is version 1 here, 2 there" in report.resolution_note
    dsse = _forge(att, policies=(PolicyVersion("lww", 1), PolicyVersion("nosuchrule", 0)))
    report = verify_attestation(dsse, bundle=make_bundle(att.admission, dsse), pubkey=None)
    assert report.resolution_checked and "policies" in report.codes  # checked: and it differs


def _replace_envelope(att: Attested, index: int, raw: bytes | None) -> bytes:
    bundle = decode_bundle(att.bundle)
    envelopes = list(bundle.envelopes)
    if raw is None:
        del envelopes[index]
    else:
        envelopes[index] = raw
    return encode_bundle(dataclasses.replace(bundle, envelopes=tuple(envelopes)))


def test_damaged_bundles(att: Attested) -> None:
    bundle = decode_bundle(att.bundle)
    first = att.statement.logs[0]
    # An envelope missing from a log's chain.
    report = verify_attestation(att.dsse, bundle=_replace_envelope(att, 0, None), pubkey=None)
    assert f"closure:{log_label(first.log)}" in report.codes and report.verdict is Verdict.INVALID
    # An envelope whose signature is broken.
    raw = bytearray(bundle.envelopes[0])
    raw[-1] ^= 1
    env_id = att.admission.logs[first.log][0]
    report = verify_attestation(att.dsse, bundle=_replace_envelope(att, 0, bytes(raw)), pubkey=None)
    assert report.codes[:2] == [f"envelope_signature:{env_id.hex()}", f"replay:{env_id.hex()}"]
    # An envelope that is not in the attested set.
    elsewhere = Admission(MemoryStore(), att.net.mesh.genesis)
    mesh = att.net.mesh
    extra = elsewhere.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "other", 1)], hlc=1)
    report = verify_attestation(
        att.dsse,
        bundle=encode_bundle(dataclasses.replace(bundle, envelopes=(*bundle.envelopes, extra.raw))),
        pubkey=None,
    )
    assert report.codes == [f"closure_extra:{extra.id.hex()}"]
    # The bundle of another attestation, and a genesis of another mesh.
    other = _forge(att, hlc=att.statement.hlc + 1)
    report = verify_attestation(other, bundle=att.bundle, pubkey=None)
    assert report.codes == ["bundle_statement"]
    foreign = MeshFixture("elsewhere").genesis.raw
    report = verify_attestation(
        att.dsse, bundle=encode_bundle(dataclasses.replace(bundle, genesis=foreign)), pubkey=None
    )
    assert report.codes == ["mesh"]


def test_a_claim_whose_agent_signature_is_broken() -> None:
    """Only a lying attester can attest such an envelope (admission refuses it); the verifier
    names the claim."""
    mesh = MeshFixture("badclaim", nodes=1, writers=1)
    node = mesh.nodes[0]
    admission = Admission(MemoryStore(), mesh.genesis)
    good = admission.write_local(node, [mesh.claim(mesh.writers[0], "a", 1)], hlc=1)
    claim = mesh.claim(mesh.writers[0], "b", 2)
    raw = claim.raw[:-1] + bytes([claim.raw[-1] ^ 1])
    bad_id = tagged_hash(b"claim-id/v1", raw)
    bad = seal(
        node,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=2,
        prev=good.id,
        hlc=2,
        claims_root=merkle_root([bad_id]),
        payload=encode_update(client_id(node.public_key, 1), 1, [(bad_id, raw)]),
    )
    assert admission.receive(bad.raw).reason is not None  # admission refuses it
    honest = AttestationBuilder(admission, View.build(admission))
    statement = honest.next_statement(signer=node.public_key, hlc=3, previous=None)
    entry = dataclasses.replace(
        statement.logs[0], size=2, head=bad.id, root=merkle_root([good.id, bad.id])
    )
    lie = dataclasses.replace(
        statement,
        logs=(entry,),
        top_root=top_root_of((entry,)),
        counts=dataclasses.replace(statement.counts, envelopes=2, claims=2),
    )
    dsse = sign_statement(lie, node)
    bundle = make_bundle(admission, dsse, envelopes=[good.raw, bad.raw])
    report = verify_attestation(dsse, bundle=bundle, pubkey=node.public_key)
    assert report.codes[0] == f"claim_signature:{bad_id.hex()}"
    assert f"replay:{bad.id.hex()}" in report.codes and "claims_digest" not in report.codes
    assert report.verdict is Verdict.INVALID


def test_unusable_input(att: Attested) -> None:
    statement_payload = att.statement.to_bytes()
    signer = att.key
    cases = {
        "malformed:dsse": (b"not json", None, None),
        "malformed:payload_type": (
            sign_payload(statement_payload, signer, "text/plain").to_json(),
            None,
            None,
        ),
        "malformed:statement": (sign_payload(b'{"v":1}', signer).to_json(), None, None),
        "malformed:pubkey": (att.dsse, None, b"short"),
        "malformed:bundle": (att.dsse, b"MMBUNDLE\x02", None),
        "malformed:genesis": (att.dsse, encode_bundle(Bundle(att.dsse, b"garbage", ())), None),
        "malformed:envelope:0": (att.dsse, _replace_envelope(att, 0, b"garbage"), None),
        "malformed:bundle_dsse": (
            att.dsse,
            encode_bundle(Bundle(b"{}", att.net.mesh.genesis.raw, ())),
            None,
        ),
    }
    for code, (dsse, bundle, pubkey) in cases.items():
        report = verify_attestation(dsse, bundle=bundle, pubkey=pubkey)
        assert report.codes[0] == code, (code, report.codes)
        assert report.verdict is Verdict.UNUSABLE and report.exit_code == 2
    bundle = decode_bundle(att.bundle)
    doubled = encode_bundle(
        dataclasses.replace(bundle, envelopes=(*bundle.envelopes, bundle.envelopes[0]))
    )
    report = verify_attestation(att.dsse, bundle=doubled, pubkey=None)
    assert report.codes[0].startswith("malformed:duplicate:") and report.exit_code == 2


# -- the bundle reader --------------------------------------------------------------------


def test_bundle_reader_is_strict_and_bounded(att: Attested) -> None:
    data = att.bundle
    assert decode_bundle(data) == decode_bundle(bytes(data))
    codes = set()
    for cut in range(0, len(data), 7):
        with pytest.raises(BundleError) as caught:
            decode_bundle(data[:cut])
        codes.add(caught.value.code)
    assert codes <= {"truncated", "bad_magic"}
    for variant, code, limits in [
        (data + b"\x00", "trailing_bytes", BundleLimits()),
        (b"MMBUNDLX" + data[8:], "bad_magic", BundleLimits()),
        (BUNDLE_MAGIC + b"\x02" + data[9:], "bad_version", BundleLimits()),
        (data, "too_large", BundleLimits(bundle_bytes_max=len(data) - 1)),
        (data, "count_exceeds_limit", BundleLimits(envelopes_max=2)),
        (data, "length_exceeds_limit", BundleLimits(envelope_bytes_max=100)),
        (data, "length_exceeds_limit", BundleLimits(dsse_bytes_max=100)),
        (data, "length_exceeds_limit", BundleLimits(genesis_bytes_max=100)),
    ]:
        with pytest.raises(BundleError) as caught:
            decode_bundle(variant, limits)
        assert caught.value.code == code
    # A count far beyond the bytes that follow is refused before anything is allocated.
    head = encode_bundle(Bundle(b"d", b"g", ()))
    with pytest.raises(BundleError) as caught:
        decode_bundle(head[:-4] + (1 << 20).to_bytes(4, "big"))
    assert caught.value.code == "truncated"


def test_make_bundle_refuses_an_admission_without_the_attested_state(att: Attested) -> None:
    other = Admission(MemoryStore(), att.net.mesh.genesis)
    with pytest.raises(ValueError):
        make_bundle(other, att.dsse)


def test_replay_admits_an_envelope_that_came_before_its_authors_admit() -> None:
    """A newcomer's first envelope names nothing, so nothing orders it after its admit: the
    replay feeds it first (lower causal rank), admission holds it as pending, and releases it
    with everything after it when the admit arrives."""
    mesh = MeshFixture("pending", nodes=1, writers=1)
    node = mesh.nodes[0]
    newcomer = SigningKey(b"\x17" * 32)
    source = Admission(MemoryStore(), mesh.genesis)
    source.write_local(node, [mesh.claim(mesh.writers[0], "first", 1)], hlc=1)
    admit = source.write_local(node, [mesh.admit(newcomer.public_key, "node")], hlc=2)
    claim = mesh.claim(mesh.writers[0], "from-newcomer", 1)
    early = seal(
        newcomer,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=1,
        prev=ZERO_ID,
        hlc=1,
        claims_root=merkle_root([claim.id]),
        payload=encode_update(client_id(newcomer.public_key, 1), 0, [(claim.id, claim.raw)]),
    )
    elsewhere = Admission(MemoryStore(), mesh.genesis)
    for raw in (source.envelope_bytes(i) for i in source.logs[admit.log]):
        elsewhere.receive(raw)
    assert elsewhere.receive(early.raw).admitted == (early.id,)
    later = elsewhere.write_local(newcomer, [mesh.claim(mesh.writers[0], "again", 2)], hlc=3)
    assert early.id in (later.prev, *later.deps)
    attester = Admission(MemoryStore(), mesh.genesis)
    assert attester.receive(early.raw).status.value == "waiting_member"
    for raw in (elsewhere.envelope_bytes(i) for i in elsewhere.logs[admit.log]):
        attester.receive(raw)
    assert attester.receive(later.raw).status.value == "integrated"
    assert early.id in attester.records and later.id in attester.records
    statement, dsse = AttestationBuilder(attester, View.build(attester)).attest(
        node, hlc=9, previous=None
    )
    report = verify_attestation(dsse, bundle=make_bundle(attester, dsse), pubkey=node.public_key)
    assert report.ok, report.failures
    assert statement.counts.live_claims == 4


def test_the_batched_replay_of_an_honest_bundle_matches_the_careful_one(
    rich: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Honest bundles are replayed in batches in an order computed up front; refusals fall back
    to the careful loop that feeds an envelope only once its past was admitted. On every node's
    set (an equivocation, its evidence, a revoked writer) both give the same replica."""
    taken: list[bool] = []
    fast = replay_module._replay_in_order

    def spy(*args: object) -> object:
        out = fast(*args)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    for node in rich.nodes:
        admission = node.admission
        envelopes = [admission.envelope(i) for i in admission.records]
        on_log = {i for ids in admission.logs.values() for i in ids}
        monkeypatch.setattr(replay_module, "_replay_in_order", spy)
        batched = replay_module.replay(admission.genesis, envelopes, on_log).admission
        monkeypatch.setattr(replay_module, "_replay_in_order", lambda *_: None)
        careful = replay_module.replay(admission.genesis, envelopes, on_log).admission
        for replica in (batched, careful):
            assert replica.frontier() == admission.frontier()
            assert replica.logs == admission.logs and replica.evidence == admission.evidence
            assert replica.claims_digest() == admission.claims_digest()
            assert replica.item_keys.snapshot() == admission.item_keys.snapshot()
    assert taken == [True] * len(rich.nodes)
