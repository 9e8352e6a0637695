"""Claim inclusion proofs against a statement alone, and consistency between two statements."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import pytest

from memmesh.attest import (
    AttestationBuilder,
    ConsistencyError,
    ProofError,
    Statement,
    check_consistency,
    decode_consistency,
    decode_proof,
    prove_claim,
    prove_consistency,
    verify_proof,
)
from memmesh.attest.proof import StatementConsistency, proof_for
from memmesh.attest.statement import Counts, LogEntry, log_label, top_root_of
from memmesh.claims import Claim
from memmesh.envelope import seal
from memmesh.ids import ZERO_ID, LogId, tagged_hash
from memmesh.merkle import MerkleTree, merkle_root
from memmesh.testing import MeshFixture
from memmesh.ydecode import client_id, encode_update

if TYPE_CHECKING:
    from conftest import Kit, Net


@pytest.fixture(scope="module")
def attested(rich: Net) -> tuple[AttestationBuilder, Statement, list[Claim]]:
    node = rich.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    statement = builder.next_statement(signer=rich.mesh.nodes[0].public_key, hlc=1, previous=None)
    admission = node.admission
    on_logs = [admission.records[i] for ids in admission.logs.values() for i in ids]
    claims = [c for record in on_logs for c in record.claims]
    return builder, statement, claims


def test_every_attested_claim_has_a_proof_that_verifies_against_the_statement_alone(
    attested: tuple[AttestationBuilder, Statement, list[Claim]],
) -> None:
    builder, statement, claims = attested
    assert len(claims) == statement.counts.claims - 2  # two more: both branches of the fork
    for claim in claims:
        proof = prove_claim(builder, statement, claim.id).to_bytes()
        assert decode_proof(proof).to_bytes() == proof
        proven = verify_proof(statement, proof, claim=claim.raw)
        assert proven.claim == claim.raw and proven.claim_id == claim.id
        assert verify_proof(statement, proof, claim=claim.id) == proven
        record = builder.admission.records[proven.envelope_id]
        assert claim in record.claims and (record.envelope.log, record.envelope.seq) == (
            proven.log,
            proven.seq,
        )
        assert len(proof) < 2048


def test_a_proof_fails_for_every_other_claim(
    attested: tuple[AttestationBuilder, Statement, list[Claim]],
) -> None:
    builder, statement, claims = attested
    proof = prove_claim(builder, statement, claims[0].id)
    for other in claims[1:]:
        with pytest.raises(ProofError) as caught:
            verify_proof(statement, proof, claim=other.raw)
        assert caught.value.code == "other_claim"


def test_a_proof_fails_for_any_flipped_byte(
    attested: tuple[AttestationBuilder, Statement, list[Claim]],
) -> None:
    builder, statement, claims = attested
    # A claim in an envelope of two claims, so the claims path is not empty.
    target = next(c for c in claims if len(_record_of(builder, c).claims) > 1)
    proof = prove_claim(builder, statement, target.id).to_bytes()
    assert decode_proof(proof).claims_path
    codes = set()
    for position in range(len(proof)):
        for mask in (0x01, 0x80):
            damaged = bytearray(proof)
            damaged[position] ^= mask
            with pytest.raises(ProofError) as caught:
                verify_proof(statement, bytes(damaged))
            codes.add(caught.value.code)
    for variant in (proof[:-1], proof + b"\x00", proof[:10]):
        with pytest.raises(ProofError):
            verify_proof(statement, variant)
    assert {"bad_magic", "bad_version", "truncated", "claims_root", "log_root", "top_root"} <= codes


def _record_of(builder: AttestationBuilder, claim: Claim) -> object:
    records = builder.admission.records.values()
    return next(r for r in records if claim in r.claims and not r.side)


def test_a_proof_does_not_verify_against_another_statement(kit: Kit) -> None:
    net = kit.Net.make("proof-later", nodes=2, writers=1)
    mesh = net.mesh
    claim = mesh.claim(mesh.writers[0], "a", 1, namespace=kit.NS)
    net.write(0, [claim])
    node = net.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    key = mesh.nodes[0]
    first = builder.next_statement(signer=key.public_key, hlc=1, previous=None)
    proof = prove_claim(builder, first, claim.id)
    later_claim = mesh.claim(mesh.writers[0], "b", 2, namespace=kit.NS)
    net.write(0, [later_claim])
    second = builder.next_statement(signer=key.public_key, hlc=2, previous=first)
    verify_proof(first, proof)
    with pytest.raises(ProofError) as caught:
        verify_proof(second, proof)
    assert caught.value.code == "log_root"
    verify_proof(second, prove_claim(builder, second, claim.id), claim=claim.raw)  # made anew
    with pytest.raises(LookupError):
        prove_claim(builder, first, later_claim.id)  # written after the first statement
    other_mesh = dataclasses.replace(first, mesh_id=tagged_hash(b"x", b"y"))
    with pytest.raises(ProofError) as caught:
        verify_proof(other_mesh, proof)
    assert caught.value.code == "wrong_mesh"
    no_log = dataclasses.replace(first, logs=(), top_root=top_root_of(()))
    with pytest.raises(ProofError) as caught:
        verify_proof(no_log, proof)
    assert caught.value.code == "unknown_log"


def test_evidence_claims_have_no_inclusion_proof(rich: Net) -> None:
    node = rich.nodes[0]
    admission = node.admission
    builder = AttestationBuilder(admission, node.view)
    statement = builder.next_statement(signer=rich.mesh.nodes[0].public_key, hlc=1, previous=None)
    assert len(statement.evidence) == 2  # both branches of node 2's fork
    for side in statement.evidence:
        (claim,) = admission.records[side].claims
        with pytest.raises(LookupError):
            prove_claim(builder, statement, claim.id)


def test_proof_size_at_100k_envelopes() -> None:
    """A one-claim envelope at position 50,000 of a log of 100,000 envelopes, in a mesh of four
    logs: the proof stays within 2,048 bytes."""
    mesh = MeshFixture("proof-size", nodes=1, writers=1)
    node = mesh.nodes[0]
    claim = mesh.claim(mesh.writers[0], "customer/4711", {"tier": "gold", "since": 2019})
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(100_000)]
    deps = tuple(hashlib.sha256(b"dep%d" % i).digest() for i in range(3))
    envelope = seal(
        node,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=50_001,
        prev=leaves[49_999],
        deps=deps,
        hlc=1 << 40,
        claims_root=merkle_root([claim.id]),
        payload=encode_update(client_id(node.public_key, 1), 70_000, [(claim.id, claim.raw)]),
    )
    leaves[50_000] = envelope.id
    tree = MerkleTree(leaves)
    logs = sorted(
        [
            LogEntry(node.public_key, 1, 100_000, leaves[-1], tree.root()),
            *(
                LogEntry(
                    tagged_hash(b"other", bytes([i])),
                    1,
                    10,
                    ZERO_ID[:31] + b"\x01",
                    tagged_hash(b"r", bytes([i])),
                )
                for i in range(3)
            ),
        ],
        key=lambda e: e.log,
    )
    statement = Statement(
        mesh_id=mesh.mesh_id,
        signer=node.public_key,
        seq=1,
        prev=ZERO_ID,
        hlc=1,
        logs=tuple(logs),
        evidence=(),
        top_root=top_root_of(logs),
        claims_digest=ZERO_ID,
        resolution_digest=ZERO_ID,
        policies=(),
        counts=Counts(100_030, 100_030, 100_030, 1, 0),
    )
    proof = proof_for(envelope, 0, tree, statement).to_bytes()
    proven = verify_proof(statement, proof, claim=claim.raw)
    assert proven.seq == 50_001 and proven.log == LogId(node.public_key, 1)
    print(f"proof of one claim at 100,000 envelopes: {len(proof)} bytes (claim {len(claim.raw)})")
    assert len(proof) <= 2048


# -- consistency --------------------------------------------------------------------------


def _two_statements(kit: Kit) -> tuple[Net, AttestationBuilder, Statement, Statement]:
    net = kit.rich_net("consistency")
    node = net.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    key = net.mesh.nodes[0]
    older = builder.next_statement(signer=key.public_key, hlc=10, previous=None)
    mesh = net.mesh
    for i in range(5):  # node 2 equivocated: its log takes no more writes
        net.write(i % 2, [mesh.claim(mesh.writers[i % 2], f"n{i}", i, namespace=kit.NS)])
    net.sync()
    newer = builder.next_statement(signer=key.public_key, hlc=20, previous=older)
    return net, builder, older, newer


def test_consistent_statements(kit: Kit) -> None:
    _, builder, older, newer = _two_statements(kit)
    proof = prove_consistency(builder, older, newer)
    data = proof.to_bytes()
    assert decode_consistency(data) == proof
    assert check_consistency(older, newer, data) == []
    assert (
        check_consistency(older, older, prove_consistency(builder, older, older))[0].code == "seq"
    )
    assert all(
        len(item.path) > 0
        for item in proof.logs
        if newer.entry(item.log).size > older.entry(item.log).size
    )  # type: ignore[union-attr]


def test_inconsistent_statements(kit: Kit) -> None:
    _, builder, older, newer = _two_statements(kit)
    proof = prove_consistency(builder, older, newer)
    grown = next(item for item in proof.logs if item.path)
    label = log_label(grown.log)
    damaged_path = (bytes([grown.path[0][0] ^ 1]) + grown.path[0][1:], *grown.path[1:])
    damaged = StatementConsistency(
        tuple(dataclasses.replace(i, path=damaged_path) if i is grown else i for i in proof.logs)
    )
    assert [f.code for f in check_consistency(older, newer, damaged)] == [
        f"log_consistency:{label}"
    ]
    missing = StatementConsistency(tuple(i for i in proof.logs if i is not grown))
    assert [f.code for f in check_consistency(older, newer, missing)] == [
        f"log_consistency:{label}"
    ]
    entry = newer.entry(grown.log)
    assert entry is not None
    rewritten = dataclasses.replace(
        newer,
        logs=tuple(
            dataclasses.replace(e, root=tagged_hash(b"x", b"y")) if e is entry else e
            for e in newer.logs
        ),
    )
    assert [f.code for f in check_consistency(older, rewritten, proof)] == [
        f"log_consistency:{label}"
    ]
    shrunk = dataclasses.replace(
        newer,
        logs=tuple(dataclasses.replace(e, size=1) if e.log == grown.log else e for e in newer.logs),
    )
    assert f"log_shrank:{label}" in [f.code for f in check_consistency(older, shrunk, proof)]
    dropped = dataclasses.replace(newer, logs=tuple(e for e in newer.logs if e.log != grown.log))
    assert [f.code for f in check_consistency(older, dropped, proof)] == [f"log_missing:{label}"]
    no_evidence = dataclasses.replace(newer, evidence=())
    assert [f.code for f in check_consistency(older, no_evidence, proof)] == [
        f"evidence_dropped:{env_id.hex()}" for env_id in older.evidence
    ]
    assert [
        f.code
        for f in check_consistency(
            older, dataclasses.replace(newer, prev=ZERO_ID[:31] + b"\x07"), proof
        )
    ] == ["chain"]
    assert [f.code for f in check_consistency(older, dataclasses.replace(newer, hlc=1), proof)] == [
        "hlc"
    ]
    assert [
        f.code
        for f in check_consistency(
            older, dataclasses.replace(newer, signer=tagged_hash(b"k", b"k")), proof
        )
    ] == ["signer"]
    assert [f.code for f in check_consistency(older, newer, b"MMCS\x09")][
        -1
    ] == "malformed:consistency"


def test_consistency_decoder_is_strict(kit: Kit) -> None:
    _, builder, older, newer = _two_statements(kit)
    data = prove_consistency(builder, older, newer).to_bytes()
    for variant, code in [
        (b"XXXX" + data[4:], "bad_magic"),
        (data[:4] + b"\x02" + data[5:], "bad_version"),
        (data + b"\x00", "trailing_bytes"),
        (data[:-1], "truncated"),
        (data[:5] + (1 << 30).to_bytes(4, "big") + data[9:], "count_exceeds_limit"),
    ]:
        with pytest.raises(ConsistencyError) as caught:
            decode_consistency(variant)
        assert caught.value.code == code
    two = decode_consistency(data).logs[:2]
    with pytest.raises(ConsistencyError) as caught:
        decode_consistency(StatementConsistency(tuple(reversed(two))).to_bytes())
    assert caught.value.code == "not_sorted"
