"""Core bugs the simulator found, each cut down to a few lines. A bug not yet fixed is marked
``xfail(strict=True)``: once the core is fixed it passes, the strict marker fails the suite, and
the marker is removed so the test stays as a regression test."""

from __future__ import annotations

import random

import pytest

from memmesh.admission import Admission, Status
from memmesh.core import (
    Advertise,
    Flush,
    MeshCore,
    Notify,
    PeerConnected,
    Received,
    RejectedEnvelope,
    SessionState,
    SyncLimits,
)
from memmesh.core.messages import Envelopes, encode_message
from memmesh.envelope import seal
from memmesh.errors import Reason, StorageError
from memmesh.ids import ZERO_ID
from memmesh.merkle import merkle_root
from memmesh.store import MemoryStore, WriteBatch
from memmesh.testing import FakeNetwork, MeshFixture, PeerScript
from memmesh.ydecode import client_id, encode_update


class _FailOnce(MemoryStore):
    fail_next = False

    def commit(self, batch: WriteBatch) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("injected write fault")
        super().commit(batch)


def test_a_failed_commit_does_not_strand_a_buffered_envelope() -> None:
    """Admission: a failed commit lost the causal-buffer index entry that _release_all had
    taken; the envelope then waited for ever once its deps arrived (sim seeds 21 and 26)."""
    mesh = MeshFixture("undo-strand", nodes=3, writers=1)
    writer = mesh.writers[0]
    first = Admission(MemoryStore(), mesh.genesis).write_local(
        mesh.nodes[0], [mesh.claim(writer, "a")], hlc=1
    )
    second = Admission(MemoryStore(), mesh.genesis).write_local(
        mesh.nodes[1], [mesh.claim(writer, "b")], hlc=1
    )
    third_author = Admission(MemoryStore(), mesh.genesis)
    third_author.receive_many([first.raw, second.raw])
    third = third_author.write_local(mesh.nodes[2], [mesh.claim(writer, "c")], hlc=2)
    assert set(third.deps) == {first.id, second.id}

    store = _FailOnce()
    replica = Admission(store, mesh.genesis)
    assert replica.receive(third.raw).status is Status.WAITING_CAUSAL
    store.fail_next = True
    with pytest.raises(StorageError):
        replica.receive(first.raw)  # nothing stored: it will come again
    replica.receive(second.raw)
    replica.receive(first.raw)
    assert third.id in replica.records, "its deps are all held, yet it still waits"


def test_requests_queued_on_a_closed_session_are_asked_again() -> None:
    """Core: _end_session cleared a session's queued wants without releasing them, so their
    logs stayed in _fetching_logs and were never asked of anyone again (sim seed 253)."""
    mesh = MeshFixture("wants-leak", nodes=12, writers=1)
    writer = mesh.writers[0]
    net = FakeNetwork(random.Random(1))
    source = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(2))
    admission = source.admission
    for index, key in enumerate(mesh.nodes[2:]):  # ten logs the replica will lack
        env = Admission(MemoryStore(), mesh.genesis).write_local(
            key, [mesh.claim(writer, f"k{index}")], hlc=index + 1
        )
        admission.receive(env.raw)
    replica = MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(3))
    net.add("source", source)
    net.add("replica", replica)
    net.connect("replica", "source")
    # Hello, Auth, then both first frontiers (and the push tree's first beacon): the replica
    # queues ten range requests, eight in flight and two waiting; the connection drops before
    # any answer.
    for _ in range(8):
        if any(s.wants for s in replica.sessions.values()):
            break
        net.deliver(1)
    assert any(s.wants for s in replica.sessions.values())
    net.cut("replica", "source")
    net.heal()
    net.tick(60_000)
    net.quiesce()
    assert replica.frontier() == source.frontier()


def test_a_node_with_no_session_gets_into_full_views() -> None:
    """Core: a node whose configured peers all held full active views was refused (view_full)
    for ever; its hello now says it is alone, and a full view drops a link to let it in (sim
    seed 470)."""
    mesh = MeshFixture("view-full", nodes=5, writers=1)
    limits = SyncLimits(active_view_target=1, active_view_max=2)
    net = FakeNetwork(random.Random(1))
    names = ["full1", "full2", "x", "y", "newcomer"]
    for name, key in zip(names, mesh.nodes, strict=True):
        net.add(
            name, MeshCore(key, mesh.genesis, MemoryStore(), random.Random(name), limits=limits)
        )
    for a, b in (("full1", "full2"), ("x", "full1"), ("y", "full2")):
        net.connect(a, b)
    net.settle()
    net.connect("newcomer", "full1")
    net.connect("newcomer", "full2")
    for _ in range(600):  # ten minutes
        net.settle()
        net.tick(1_000)
    newcomer = net.cores["newcomer"]
    assert any(s.state is SessionState.ACTIVE for s in newcomer.sessions.values())


def test_nodes_cut_off_together_find_the_others_again_after_the_heal() -> None:
    """Core: a failed dial to an address learned from a peer record forgot the record, so c
    and d, cut off together with no configured peer on the other side, forgot a and b while
    the partition lasted and stayed apart after the heal until a node of the other side
    happened to dial one of them (sim seed 2198: 47 s). The record is now kept among the lost
    ones and dialled again when nothing else is left."""
    mesh = MeshFixture("cut-off", nodes=4, writers=1)
    limits = SyncLimits(active_view_target=3, active_view_max=4, view_rotation_interval_ms=0)
    net = FakeNetwork(random.Random(2))
    names = ["a", "b", "c", "d"]
    for name, key in zip(names, mesh.nodes, strict=True):
        net.add(
            name, MeshCore(key, mesh.genesis, MemoryStore(), random.Random(name), limits=limits)
        )
    net.connect("a", "b")
    net.connect("c", "d")
    net.settle()
    for name in ("a", "b"):  # a and b are dialled from c only if the records say where
        net.cores[name].handle(Advertise((name,)), net.clock.now_ms)
    records = [net.cores[name]._own_record for name in ("a", "b")]
    net.partition("c", "a")
    net.partition("c", "b")
    net.partition("d", "a")
    net.partition("d", "b")
    c = net.cores["c"]
    c.view.merge(
        [r for r in records if r is not None],
        is_member=lambda node: True,
        active=lambda node: False,
        rng=random.Random(0),
    )
    for _ in range(30):  # the partition lasts: every dial across fails
        net.tick(1_000)
        net.settle()
    assert not set(c.view.records) & {mesh.nodes[0].public_key, mesh.nodes[1].public_key}
    net.heal()
    for _ in range(10):
        net.tick(1_000)
        net.settle()
    peers = {s.node for s in c.sessions.values() if s.state is SessionState.ACTIVE}
    assert peers & {mesh.nodes[0].public_key, mesh.nodes[1].public_key}


def test_a_refused_handshake_leaves_no_timer_behind() -> None:
    """Core: a session closed by _fail kept its handshake deadline, so next_deadline() stayed
    in the past and a runtime's timer spun until PeerGone arrived."""
    mesh = MeshFixture("closed-deadline", nodes=1, writers=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(1))
    core.handle(PeerConnected("stranger"), 1_000)
    core.handle(Received("stranger", b"not a message"), 1_001)  # refused: bad_message
    assert core.sessions["stranger"].state is SessionState.CLOSED
    assert core.next_deadline() is None


def test_replicas_with_the_same_envelopes_name_the_same_frontier_under_equivocation() -> None:
    """Admission: of an equivocating log, each replica kept on its main branch whichever
    branch reached it first, and ``frontier()`` named that branch's head. Two replicas holding
    the same envelopes (both branches, the same evidence, the same claims digest) then reported
    different frontiers, so frontier comparison (attestations, the simulator's agreement
    check) saw them as different for ever (sim: ``--byzantine equivocator``, seed 0 of the
    small suite). Now a forked log is its prefix below the fork on every replica."""
    mesh = MeshFixture("fork-frontier", nodes=2, writers=1)
    writer = mesh.writers[0]
    liar = Admission(MemoryStore(), mesh.genesis)
    base = liar.write_local(mesh.nodes[0], [mesh.claim(writer, "a")], hlc=1)
    left = liar.write_local(mesh.nodes[0], [mesh.claim(writer, "b")], hlc=2)
    other = Admission(MemoryStore(), mesh.genesis)
    other.receive(base.raw)
    right = other.write_local(mesh.nodes[0], [mesh.claim(writer, "c")], hlc=3)
    after_left = liar.write_local(mesh.nodes[0], [mesh.claim(writer, "d")], hlc=4)
    assert left.seq == right.seq == 2 and left.id != right.id

    one, two = Admission(MemoryStore(), mesh.genesis), Admission(MemoryStore(), mesh.genesis)
    one.receive_many([base.raw, left.raw, after_left.raw, right.raw])
    two.receive_many([base.raw, right.raw, left.raw, after_left.raw])
    assert one.records.keys() == two.records.keys()
    assert one.claims_digest() == two.claims_digest()
    assert one.fork_pairs == two.fork_pairs
    assert one.frontier() == two.frontier()


def test_an_envelope_rejected_when_released_from_the_causal_buffer_is_reported() -> None:
    """Admission/core: an envelope that waited for its prev and is rejected once the prev comes
    (here a clock gap, which needs the prev to be seen) is counted in ``admission.rejected`` but
    ``_release_all`` drops the outcome, so the core emits no ``RejectedEnvelope``: the metrics of
    rejections by reason and the peer's accounting miss it (sim: ``--byzantine poisoner``)."""
    mesh = MeshFixture("release-reject", nodes=2, writers=1)
    writer, author = mesh.writers[0], mesh.nodes[1]
    first = Admission(MemoryStore(), mesh.genesis).write_local(
        author, [mesh.claim(writer, "a")], hlc=1
    )
    claim = mesh.claim(writer, "b")
    gap = seal(
        author,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=2,
        prev=first.id,
        hlc=2,
        claims_root=merkle_root([claim.id]),
        payload=encode_update(client_id(author.public_key, 1), 6, [(claim.id, claim.raw)]),
    )
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(1))
    PeerScript(author, mesh.mesh_id).open(core, "p")
    notices = []
    for raw in (gap.raw, first.raw):  # the gap first: it waits for its prev
        core.handle(Received("p", encode_message(Envelopes(0, [raw], False))), 0)
        notices += [e.notice for e in core.handle(Flush(), 0) if isinstance(e, Notify)]
    assert core.admission.rejected == {Reason.CLOCK_GAP: 1}
    assert gap.id not in core.admission.records
    assert any(isinstance(n, RejectedEnvelope) and n.reason is Reason.CLOCK_GAP for n in notices), (
        "the rejection reached no notice"
    )


def test_an_envelope_whose_deps_nobody_holds_does_not_keep_a_node_behind_for_ever() -> None:
    """Admission/core: a member can sign an envelope naming deps that exist nowhere. It waits
    in the causal buffer for good (bounded in size, never in time), the node asks a peer for
    the missing ids every anti-entropy round for good (one ``GetIds`` a second), and
    ``behind()`` stays true, so every read it serves counts as stale and ``quiet()`` is never
    true (sim: ``--byzantine forger``, its ``dangling_dep`` variant)."""
    mesh = MeshFixture("dangling", nodes=3, writers=1)
    net = FakeNetwork(random.Random(1))
    a = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(2))
    b = MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(3))
    net.add("a", a)
    net.add("b", b)
    net.connect("a", "b")
    net.settle()
    liar, claim = mesh.nodes[2], mesh.claim(mesh.writers[0], "x")
    env = seal(
        liar,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=1,
        prev=ZERO_ID,
        deps=[b"\x05" * 32],  # no such envelope
        hlc=1,
        claims_root=merkle_root([claim.id]),
        payload=encode_update(client_id(liar.public_key, 1), 0, [(claim.id, claim.raw)]),
    )
    net.inject("b", "a", encode_message(Envelopes(0, [env.raw], False)))
    net.settle()
    asked = a.stats.messages_sent.get("GetIds", 0)
    for _ in range(600):  # ten minutes: b answers every request with nothing
        net.tick(1_000)
        net.settle()
    assert a.stats.messages_sent.get("GetIds", 0) - asked < 60, "asked for ever"
    assert not a.behind(), "behind for ever: every read is stale"
