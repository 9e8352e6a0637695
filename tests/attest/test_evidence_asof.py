"""Split-view evidence between two statements of one signer, and point-in-time rebuilds."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from memmesh.admission import Admission
from memmesh.attest import (
    AsOfError,
    AttestationBuilder,
    EvidenceError,
    Statement,
    check_consistency,
    divergence_proof,
    make_bundle,
    prove_claim,
    prove_consistency,
    rebuild_at,
    rebuild_at_statement,
    sign_statement,
    split_view,
    verify_attestation,
    verify_proof,
)
from memmesh.attest.proof import LogConsistency, StatementConsistency
from memmesh.attest.statement import log_label, top_root_of
from memmesh.crypto import SigningKey
from memmesh.ids import tagged_hash
from memmesh.memory.view import View
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

if TYPE_CHECKING:
    from conftest import Kit, Net


def _chain(kit: Kit) -> tuple[Net, SigningKey, Statement, Statement]:
    net = kit.rich_net("evidence")
    node = net.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    key = net.mesh.nodes[0]
    first = builder.next_statement(signer=key.public_key, hlc=10, previous=None)
    net.write(0, [net.mesh.claim(net.mesh.writers[0], "more", 1, namespace=kit.NS)])
    second = builder.next_statement(signer=key.public_key, hlc=11, previous=first)
    return net, key, first, second


def _signed(key: SigningKey, statement: Statement, **changes: object) -> bytes:
    changed = dataclasses.replace(statement, **changes)  # type: ignore[arg-type]
    return sign_statement(dataclasses.replace(changed, top_root=top_root_of(changed.logs)), key)


def test_an_honest_chain_is_no_evidence(kit: Kit) -> None:
    _, key, first, second = _chain(kit)
    a, b = sign_statement(first, key), sign_statement(second, key)
    assert split_view(a, b) is None and split_view(b, a) is None and split_view(a, a) is None


def test_split_views(kit: Kit) -> None:
    _, key, first, second = _chain(kit)
    a = sign_statement(first, key)
    entry = first.logs[0]
    label = log_label(entry.log)
    fork = _signed(key, second, seq=1, prev=first.prev)
    cases = {
        "same_seq": fork,
        "broken_chain": _signed(key, second, prev=tagged_hash(b"x", b"prev")),
        "hlc_regressed": _signed(key, second, hlc=first.hlc - 1),
        f"log_dropped:{label}": _signed(key, second, logs=second.logs[1:]),
        f"log_shrank:{label}": _signed(
            key, second, logs=(dataclasses.replace(entry, size=1), *second.logs[1:])
        ),
        f"log_rewritten:{label}": _signed(
            key,
            second,
            logs=(
                dataclasses.replace(second.logs[0], root=tagged_hash(b"x", b"r")),
                *second.logs[1:],
            ),
        ),
        f"evidence_dropped:{first.evidence[0].hex()}": _signed(key, second, evidence=()),
    }
    assert second.logs[0] == entry  # the log the cases edit did not grow
    for reason, b in cases.items():
        found = split_view(a, b)
        assert found is not None and found.reason == reason, (reason, found)
        assert split_view(b, a) == found  # either order
        assert (found.earlier.seq, found.later.seq) in ((1, 1), (1, 2))


def test_statements_that_cannot_be_compared(kit: Kit) -> None:
    net, key, first, second = _chain(kit)
    a = sign_statement(first, key)
    other_key = net.mesh.nodes[1]
    other = sign_statement(dataclasses.replace(second, signer=other_key.public_key), other_key)
    unsigned = sign_statement(
        dataclasses.replace(second, signer=other_key.public_key), other_key
    ).replace(
        b'"keyid":"' + other_key.public_key.hex().encode(),
        b'"keyid":"' + key.public_key.hex().encode(),
    )
    for b, code in [
        (other, "different_signer"),
        (b"garbage", "malformed"),
        (_signed(key, second, mesh_id=tagged_hash(b"m", b"m")), "different_mesh"),
        (unsigned, "unsigned"),
    ]:
        with pytest.raises(EvidenceError) as caught:
            split_view(a, b)
        assert caught.value.code == code


def test_a_log_that_grew_but_diverged() -> None:
    """The signer attests node K's log as [e1, a2], then as [e1, b2, b3]: sizes grow, nothing
    is dropped, but no consistency proof exists, and two inclusion proofs show the fork."""
    mesh = MeshFixture("diverge", nodes=2, writers=1)
    k, signer = mesh.nodes[0], mesh.nodes[1]
    x, y = Admission(MemoryStore(), mesh.genesis), Admission(MemoryStore(), mesh.genesis)
    e1 = x.write_local(k, [mesh.claim(mesh.writers[0], "a", 1)], hlc=1)
    y.receive(e1.raw)
    x.write_local(k, [mesh.claim(mesh.writers[0], "a", 2)], hlc=2)
    y.write_local(k, [mesh.claim(mesh.writers[0], "a", 3)], hlc=2)
    y.write_local(k, [mesh.claim(mesh.writers[0], "a", 4)], hlc=3)
    earlier = AttestationBuilder(x, View.build(x)).next_statement(
        signer=signer.public_key, hlc=1, previous=None
    )
    later = AttestationBuilder(y, View.build(y)).next_statement(
        signer=signer.public_key, hlc=2, previous=earlier
    )
    a, b = sign_statement(earlier, signer), sign_statement(later, signer)
    assert split_view(a, b) is None  # nothing contradicts on the face of the two statements
    log = e1.log
    proof = divergence_proof(earlier, later, log, x.logs[log], y.logs[log])
    assert proof is not None and proof.index == 1
    found = split_view(a, b, divergence=proof)
    assert found is not None and found.reason == f"log_diverged:{log_label(log)}"
    # A divergence proof that does not hold is no evidence.
    assert (
        split_view(a, b, divergence=dataclasses.replace(proof, later_leaf=proof.earlier_leaf))
        is None
    )
    assert split_view(a, b, divergence=dataclasses.replace(proof, index=0)) is None
    assert divergence_proof(earlier, later, log, x.logs[log], x.logs[log] + [b"\x00" * 32]) is None
    # And the signer cannot prove consistency: any proof it offers fails.
    offered = StatementConsistency((LogConsistency(log.author, log.epoch, ()),))
    assert [f.code for f in check_consistency(earlier, later, offered)] == [
        f"log_consistency:{log_label(log)}"
    ]


# -- as of --------------------------------------------------------------------------------


def _log_order(admission: Admission) -> list[bytes]:
    store = admission.store
    out = []
    for log, _ in store.heads():
        out.extend(raw for _, raw in store.iter_log_envelopes(log))
    out.extend(store.get_side_envelope(env_id) for env_id in store.iter_side_envelopes())  # type: ignore[misc]
    return out


def test_rebuild_at_an_attestation_after_many_later_writes(kit: Kit) -> None:
    net = kit.rich_net("asof")
    mesh = net.mesh
    node = net.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    statement = builder.next_statement(signer=mesh.nodes[0].public_key, hlc=1, previous=None)
    snapshot = node.view.snapshot()
    # Later: updates, new conflicts, a policy change, a revocation that excludes claims that
    # were live at the attestation, and more equivocation evidence.
    w0, w1 = mesh.writers[0], mesh.writers[1]
    for i in range(20):  # node 2 equivocated: its log takes no more writes
        net.write(i % 2, [mesh.claim(mesh.writers[i % 2], f"later{i % 4}", i, namespace=kit.NS)])
        if i % 5 == 0:
            net.sync()
    net.write(0, [mesh.claim(w0, "acme", "conflicting", namespace=kit.NS)])
    net.write(1, [mesh.claim(w1, "acme", "also", namespace=kit.NS)])
    net.write(1, [kit.policy_claim(mesh, "crm", "manual")])
    net.sync()
    net.write(0, [mesh.revoke_agent(w1.public_key, 1)])
    net.sync()
    assert node.view.snapshot() != snapshot
    assert node.admission.claims_digest() != statement.claims_digest
    envelopes = _log_order(node.admission)
    view = rebuild_at_statement(envelopes, mesh.genesis, statement)
    assert view.snapshot() == snapshot
    assert view.admission.claims_digest() == statement.claims_digest
    assert view.admission.frontier() == statement.frontier
    # The same from the frontier alone (with the evidence), and from another node's store.
    view = rebuild_at(
        envelopes, mesh.genesis, dict(statement.frontier), evidence=statement.evidence
    )
    assert view.snapshot() == snapshot
    assert (
        rebuild_at_statement(_log_order(net.nodes[2].admission), mesh.genesis, statement).snapshot()
        == snapshot
    )


def test_rebuild_at_refuses_what_it_cannot_rebuild(rich: Net) -> None:
    node = rich.nodes[0]
    statement = AttestationBuilder(node.admission, node.view).next_statement(
        signer=rich.mesh.nodes[0].public_key, hlc=1, previous=None
    )
    envelopes = _log_order(node.admission)
    for given, code in [
        (envelopes[1:], "missing_envelope"),
        ([*envelopes, b"garbage"], "bad_envelope"),
    ]:
        with pytest.raises(AsOfError) as caught:
            rebuild_at_statement(given, rich.mesh.genesis, statement)
        assert caught.value.code == code
    with pytest.raises(AsOfError) as caught:
        rebuild_at_statement(envelopes, MeshFixture("other").genesis, statement)
    assert caught.value.code == "wrong_mesh"
    # Without the evidence the set is not causally closed: node 1 wrote after seeing the
    # other branch of node 2's equivocation.
    with pytest.raises(AsOfError) as caught:
        rebuild_at(envelopes, rich.mesh.genesis, statement.frontier)
    assert caught.value.code == "not_admitted"


def test_a_log_cut_at_a_fork_found_later_is_no_split_view(kit: Kit) -> None:
    """A node attests one branch of an equivocating log, then learns the other branch: its log
    is cut back below the fork, and the branches become evidence. Its two attestations are an
    honest chain (no split view, a valid consistency proof), its older attestation can still
    be bundled and verified, and a cut whose envelopes are not listed as evidence is still
    caught."""
    net = kit.Net.make("cut")
    mesh = net.mesh
    w0 = mesh.writers[0]
    net.write(2, [mesh.claim(w0, "base", 1, namespace=kit.NS)])
    net.sync()
    spare = Admission(MemoryStore(), mesh.genesis)
    records = net.nodes[2].admission.records
    for env_id in sorted(records, key=lambda i: (records[i].rank, i)):
        spare.receive(net.nodes[2].admission.envelope_bytes(env_id))
    a = net.write(2, [mesh.claim(w0, "fork", "a", namespace=kit.NS)])
    b = spare.write_local(mesh.nodes[2], [mesh.claim(w0, "fork", "b", namespace=kit.NS)], hlc=99)
    net.pull(0, 2)  # node 0 holds branch a only
    node, key = net.nodes[0], mesh.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    older, older_dsse = builder.attest(key, hlc=10, previous=None)
    attested = older.entry(a.log)
    assert attested is not None and attested.head == a.id
    net.deliver(0, [b.raw])  # now both: node 2's log is cut below seq 2
    newer, newer_dsse = builder.attest(key, hlc=11, previous=older)
    cut = newer.entry(a.log)
    assert cut is not None and (cut.size, set(newer.evidence)) == (1, {a.id, b.id})
    assert split_view(older_dsse, newer_dsse) is None
    assert check_consistency(older, newer, prove_consistency(builder, older, newer)) == []
    report = verify_attestation(
        older_dsse, bundle=make_bundle(node.admission, older_dsse), pubkey=key.public_key
    )
    assert report.ok, report.codes
    # The claim of the branch the older statement attested, and one below the fork, are still
    # proven against it, over the chain it attested (and not against the newer one).
    forked = node.admission.records[a.id].claims[0].id
    base = node.admission.records[node.admission.logs[a.log][0]].claims[0].id
    for claim_id in (forked, base):
        verify_proof(older, prove_claim(builder, older, claim_id).to_bytes(), claim=claim_id)
    with pytest.raises(LookupError):
        prove_claim(builder, newer, forked)
    verify_proof(newer, prove_claim(builder, newer, base).to_bytes(), claim=base)
    # The same cut without the cut envelope listed as evidence is a shrunk log.
    hidden = _signed(key, newer, evidence=(b.id,))
    found = split_view(older_dsse, hidden)
    assert found is not None and found.reason == f"log_shrank:{log_label(a.log)}"
