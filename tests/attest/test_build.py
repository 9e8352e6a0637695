"""Building statements: what they say, and the incremental builder equals a build from nothing."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from memmesh.admission import Admission
from memmesh.attest import AttestationBuilder, build_statement, resolution_of
from memmesh.attest.statement import top_root_of
from memmesh.ids import ZERO_ID
from memmesh.memory.view import View
from memmesh.merkle import merkle_root
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

if TYPE_CHECKING:
    from conftest import Kit, Net


def _scratch(builder: AttestationBuilder, signer: bytes, seq: int, prev: bytes, hlc: int) -> object:
    return build_statement(
        builder.admission, builder.view, signer=signer, seq=seq, prev=prev, hlc=hlc
    )


def test_statement_of_a_rich_mesh(rich: Net) -> None:
    node = rich.nodes[0]
    admission = node.admission
    key = rich.mesh.nodes[0]
    statement = AttestationBuilder(admission, node.view).next_statement(
        signer=key.public_key, hlc=5 << 16, previous=None
    )
    assert (statement.seq, statement.prev, statement.signer) == (1, ZERO_ID, key.public_key)
    assert statement.mesh_id == rich.mesh.mesh_id
    assert statement.frontier == admission.frontier()
    for entry in statement.logs:
        ids = admission.logs[entry.log]
        assert entry.root == merkle_root(ids) and entry.size == len(ids) and entry.head == ids[-1]
    assert statement.top_root == top_root_of(statement.logs)
    assert statement.claims_digest == admission.claims_digest()
    side = sorted(i for i, r in admission.records.items() if r.side)
    # both branches of node 2's fork are off its log: the log is the prefix below the fork
    assert list(statement.evidence) == side and len(side) == 2
    on_logs = {i for ids in admission.logs.values() for i in ids}
    assert not on_logs & set(side)
    assert all(
        admission.records[i].envelope.seq == admission.forks[admission.records[i].envelope.log]
        for i in side
    )
    counts = statement.counts
    assert counts.envelopes == len(admission.records)
    assert counts.live_claims == len(admission.live_claims()) < counts.claims
    assert counts.subjects == len(node.view.subjects)
    assert counts.conflicts_open == 1  # the manual one; lww settled the other
    names = {(p.name, p.version) for p in statement.policies}
    assert names == {("lww", 1), ("manual", 1)}
    assert resolution_of(node.view).digest == statement.resolution_digest


def test_nodes_that_agree_attest_the_same_digests(rich: Net) -> None:
    statements = [
        build_statement(
            n.admission, n.view, signer=rich.mesh.nodes[i].public_key, seq=1, prev=ZERO_ID, hlc=1
        )
        for i, n in enumerate(rich.nodes)
    ]
    assert len({s.claims_digest for s in statements}) == 1
    assert len({s.resolution_digest for s in statements}) == 1
    assert len({s.counts for s in statements}) == 1
    # Node 1 took the other branch of node 2's equivocation first, but every node holds both
    # and cuts node 2's log at the fork: the same logs, so the same statement to co-sign.
    assert statements[0].logs == statements[1].logs == statements[2].logs
    assert statements[0].evidence == statements[1].evidence == statements[2].evidence


def test_resolution_digest_sees_a_changed_winner(kit: Kit) -> None:
    net = kit.Net.make("winner")
    mesh = net.mesh
    net.write(0, [mesh.claim(mesh.writers[0], "x", 1, namespace=kit.NS)])
    net.write(1, [mesh.claim(mesh.writers[1], "x", 2, namespace=kit.NS)])
    net.sync()
    before = resolution_of(net.nodes[0].view)
    assert before.conflicts_open == 0 and before.policies[0].name == "lww"
    net.write(0, [kit.policy_claim(mesh, "crm", "manual")])  # the same conflict, now escalated
    after = resolution_of(net.nodes[0].view)
    assert after.conflicts_open == 1 and after.digest != before.digest


def test_incremental_builder_equals_a_build_from_nothing_at_every_step(kit: Kit) -> None:
    rng = random.Random(7)
    net = kit.Net.make("incremental", nodes=3, writers=3)
    mesh = net.mesh
    builders = [AttestationBuilder(n.admission, n.view) for n in net.nodes]
    previous: list[object] = [None, None, None]
    revoked = False
    for step in range(60):
        i = rng.randrange(3)
        roll = rng.random()
        if roll < 0.55:
            writer = mesh.writers[rng.randrange(3)]
            namespace = kit.NS if rng.random() < 0.7 else kit.OPS
            claims = [
                mesh.claim(writer, f"k{rng.randrange(8)}", step, namespace=namespace)
                for _ in range(rng.randrange(1, 4))
            ]
            net.write(i, claims)
        elif roll < 0.75:
            net.pull(i, rng.randrange(3))
        elif roll < 0.8:
            net.write(
                i, [kit.policy_claim(mesh, "ops.**", rng.choice(["manual", "lww", "priority"]))]
            )
        elif roll < 0.85 and not revoked:
            revoked = True
            net.write(i, [mesh.revoke_agent(mesh.writers[2].public_key, 2)])
        else:
            net.sync()
        j = rng.randrange(3)
        key = mesh.nodes[j]
        made = builders[j].next_statement(signer=key.public_key, hlc=step + 1, previous=previous[j])  # type: ignore[arg-type]
        scratch = _scratch(builders[j], key.public_key, made.seq, made.prev, made.hlc)
        assert made == scratch, step
        assert made.claims_digest == net.nodes[j].admission.claims_digest()
        previous[j] = made
    assert revoked
    net.sync()
    assert (
        len(
            {
                b.statement(signer=ZERO_ID, seq=1, prev=ZERO_ID, hlc=0).claims_digest
                for b in builders
            }
        )
        == 1
    )


def test_builder_follows_equivocation_and_revocation(kit: Kit) -> None:
    net = kit.rich_net("follow")
    node = net.nodes[1]
    builder = AttestationBuilder(node.admission, node.view)
    key = net.mesh.nodes[1]
    first = builder.next_statement(signer=key.public_key, hlc=1, previous=None)
    # A revocation of node 0 at its current head: generation moves, everything is rechecked.
    node0 = net.mesh.nodes[0].public_key
    seq0 = len(node.admission.logs[next(log for log in node.admission.logs if log.author == node0)])
    net.write(1, [net.mesh.revoke_node(node0, 1, seq0)])
    net.write(0, [net.mesh.claim(net.mesh.writers[0], "late", 1, namespace=kit.NS)])
    net.sync()
    second = builder.next_statement(signer=key.public_key, hlc=2, previous=first)
    assert second == _scratch(builder, key.public_key, 2, first.id, 2)
    assert second.counts.claims == first.counts.claims + 2
    # The revocation counts, the late claim (past node 0's cutoff) does not.
    assert second.counts.live_claims == first.counts.live_claims + 1
    assert second.seq == 2 and second.prev == first.id


def test_next_statement_refuses_a_clock_going_back_and_another_signer(rich: Net) -> None:
    node = rich.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    key = rich.mesh.nodes[0]
    first = builder.next_statement(signer=key.public_key, hlc=10, previous=None)
    try:
        builder.next_statement(signer=key.public_key, hlc=9, previous=first)
    except ValueError:
        pass
    else:
        raise AssertionError("a statement dated before its predecessor was made")
    try:
        builder.next_statement(signer=rich.mesh.nodes[1].public_key, hlc=11, previous=first)
    except ValueError:
        pass
    else:
        raise AssertionError("a statement chained to another signer's was made")
    try:
        AttestationBuilder(node.admission, rich.nodes[1].view)
    except ValueError:
        pass
    else:
        raise AssertionError("a builder over another admission's view was made")


def test_incremental_attestation_at_100k_claims(kit: Kit) -> None:
    """1,000 new claims on top of 100,000: the next statement takes milliseconds, and equals a
    statement built from nothing."""
    mesh = MeshFixture("scale", nodes=4, writers=4)
    admission = Admission(MemoryStore(), mesh.genesis)
    claims = [mesh.claim(mesh.writers[i % 4], f"k{i}", i, namespace=kit.NS) for i in range(101_000)]
    for j in range(1000):  # 100 claims per envelope, four logs
        admission.write_local(mesh.nodes[j % 4], claims[j * 100 : (j + 1) * 100], hlc=j + 1)
    view = View.build(admission)
    builder = AttestationBuilder(admission, view)
    key = mesh.nodes[0]
    first = builder.next_statement(signer=key.public_key, hlc=1, previous=None)
    assert first.counts.live_claims == 100_000
    new = []
    for j in range(1000, 1010):
        env = admission.write_local(mesh.nodes[j % 4], claims[j * 100 : (j + 1) * 100], hlc=j + 1)
        new.append(env.id)
    view.apply(new, 0)
    start = time.perf_counter()
    second = builder.next_statement(signer=key.public_key, hlc=2, previous=first)
    elapsed = time.perf_counter() - start
    print(f"incremental attestation, 1,000 new claims at 100,000: {elapsed * 1000:.1f} ms")
    assert second.counts.live_claims == 101_000
    assert second == _scratch(builder, key.public_key, 2, first.id, 2)
    assert elapsed < 0.5  # about 60 ms here; the budget is 200 ms, the margin is for noisy hosts
