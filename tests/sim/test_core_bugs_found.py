"""Core bugs the simulator found, each cut down to a few lines. A bug not yet fixed is marked
``xfail(strict=True)``: once the core is fixed it passes, the strict marker fails the suite, and
the marker is removed so the test stays as a regression test."""

from __future__ import annotations

import random

import pytest

from memmesh.admission import Admission, Status
from memmesh.core import MeshCore, PeerConnected, Received, SessionState, SyncLimits
from memmesh.errors import StorageError
from memmesh.store import MemoryStore, WriteBatch
from memmesh.testing import FakeNetwork, MeshFixture


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
    # Hello, Auth, then both first frontiers: the replica queues ten range requests, eight
    # in flight and two waiting; the connection drops before any answer.
    net.deliver(6)
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


def test_a_refused_handshake_leaves_no_timer_behind() -> None:
    """Core: a session closed by _fail kept its handshake deadline, so next_deadline() stayed
    in the past and a runtime's timer spun until PeerGone arrived."""
    mesh = MeshFixture("closed-deadline", nodes=1, writers=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(1))
    core.handle(PeerConnected("stranger"), 1_000)
    core.handle(Received("stranger", b"not a message"), 1_001)  # refused: bad_message
    assert core.sessions["stranger"].state is SessionState.CLOSED
    assert core.next_deadline() is None
