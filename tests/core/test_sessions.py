"""The sync core's sessions, one promise per test, over fake links (no sockets, no sleeps)."""

from __future__ import annotations

import copy
import random

import pytest

from memmesh.admission import Admission, AdmissionLimits
from memmesh.claims import make_claim
from memmesh.core import (
    CancelWrite,
    Dial,
    Disconnect,
    EvidenceFound,
    Flush,
    LocalWrite,
    MeshCore,
    Notify,
    PeerConnected,
    PeerGone,
    PeerKnown,
    PeerReady,
    PeerRefused,
    Persist,
    Received,
    Send,
    SessionState,
    SyncLimits,
    Timer,
    WriteAcked,
    WriteFailed,
)
from memmesh.core.messages import (
    Envelopes,
    Frontier,
    GetIds,
    GetRange,
    NothingToSend,
    decode_message,
    encode_message,
)
from memmesh.core.sessions import Session
from memmesh.errors import CorruptRecord, Reason
from memmesh.hlc import hlc_pack, hlc_unpack
from memmesh.ids import LogId
from memmesh.store import MemoryStore
from memmesh.store.memory import MemoryDisk
from memmesh.testing import FakeNetwork, MeshFixture, PeerScript, seeded_key

FRAME = 2 << 20


def _net(mesh: MeshFixture, count: int, seed: int = 0) -> FakeNetwork:
    net = FakeNetwork(random.Random(seed))
    for i in range(count):
        net.add(f"n{i}", MeshCore(mesh.nodes[i], mesh.genesis, MemoryStore(), random.Random(i)))
    return net


def _decoded(effects: list[object]) -> list[object]:
    return [decode_message(e.data, frame_bytes_max=FRAME) for e in effects if isinstance(e, Send)]


def _refusals(net: FakeNetwork, name: str) -> list[PeerRefused]:
    return [n for n in net.notices[name] if isinstance(n, PeerRefused)]


def test_handshake_then_an_empty_round_ends_in_nothing_to_send() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    net = _net(mesh, 2)
    net.connect("n0", "n1")
    net.settle()
    for name, other in (("n0", 1), ("n1", 0)):
        ready = [n for n in net.notices[name] if isinstance(n, PeerReady)]
        assert [r.node for r in ready] == [mesh.nodes[other].public_key]
        assert net.session_states(name) == {f"n{other}": SessionState.ACTIVE}
        assert net.cores[name].quiet()
    # A new session syncs at once, and with nothing on either side that round says so.
    assert net.cores["n0"].stats.messages_received.get("NothingToSend") == 1
    assert net.cores["n0"].sessions["n1"].in_sync


def test_nothing_to_send_is_the_answer_once_replicas_are_equal() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    net = _net(mesh, 2)
    net.connect("n0", "n1")
    net.write("n0", 1, [mesh.claim(mesh.writers[0], "a", 1)])
    net.settle()
    effects = net.cores["n1"].begin_sync("n0", net.clock.now_ms)
    [frontier] = _decoded(effects)
    reply = net.cores["n0"].handle(Received("n1", encode_message(frontier)), net.clock.now_ms)
    assert _decoded(reply) == [NothingToSend(frontier.round)]
    net.cores["n1"].handle(Received("n0", _raw(reply)), net.clock.now_ms)
    assert net.cores["n1"].sessions["n0"].in_sync
    # And while it differs, the answer is a frontier, then the missing range is asked for.
    net.write("n0", 2, [mesh.claim(mesh.writers[0], "b", 2)])
    net.flush("n0")
    net.in_flight.clear()  # lose the eager push
    effects = net.cores["n1"].begin_sync("n0", net.clock.now_ms)
    [frontier] = _decoded(effects)
    reply = net.cores["n0"].handle(Received("n1", encode_message(frontier)), net.clock.now_ms)
    assert [type(m).__name__ for m in _decoded(reply)] == ["Frontier"]
    asked = net.cores["n1"].handle(Received("n0", _raw(reply)), net.clock.now_ms)
    [get] = _decoded(asked)
    assert isinstance(get, GetRange) and (get.start_seq, get.end_seq) == (2, 2)


def _raw(effects: list[object]) -> bytes:
    [send] = [e for e in effects if isinstance(e, Send)]
    return send.data


def test_new_envelopes_are_pushed_without_waiting_for_anti_entropy() -> None:
    mesh = MeshFixture("sessions", nodes=3)
    net = _net(mesh, 3)
    net.connect("n0", "n1")
    net.connect("n1", "n2")
    net.settle()
    rounds = sum(c.stats.rounds_started for c in net.cores.values())
    net.write("n0", 1, [mesh.claim(mesh.writers[0], "a", 1)])
    net.settle()
    assert sum(c.stats.rounds_started for c in net.cores.values()) == rounds
    digests = {c.claims_digest() for c in net.cores.values()}
    assert len(digests) == 1
    assert len(net.cores["n2"].admission.records) == 1
    # n1 relayed it to n2 and not back to n0: nobody received it twice.
    assert all(c.stats.duplicates == 0 for c in net.cores.values())


def test_a_local_write_is_acknowledged_once_durable_and_integrated() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    net = _net(mesh, 1)
    claims = [mesh.claim(mesh.writers[0], f"k{i}", i) for i in range(3)]
    net.write("n0", 7, claims[:2])
    net.write("n0", 8, claims[2:])
    assert not [n for n in net.notices["n0"] if isinstance(n, WriteAcked)]  # not before Flush
    net.flush("n0")
    acks = [n for n in net.notices["n0"] if isinstance(n, WriteAcked)]
    assert [(a.token, a.seq) for a in acks] == [(7, 1), (8, 1)]  # one group commit
    assert acks[0].claim_ids == tuple(c.id for c in claims[:2])
    assert net.cores["n0"].admission.replica.keys()


def test_a_write_from_a_node_that_is_not_a_member_fails_clearly() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    stranger = MeshCore(seeded_key("stranger"), mesh.genesis, MemoryStore(), random.Random(0))
    net = FakeNetwork(random.Random(0))
    net.add("s", stranger)
    net.write("s", 1, [mesh.claim(mesh.writers[0], "a", 1)])
    net.flush("s")
    [failed] = [n for n in net.notices["s"] if isinstance(n, WriteFailed)]
    assert failed.error == "NotAMember"
    assert not stranger.admission.records


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xc1", Reason.BAD_MESSAGE),
        (encode_message(GetIds(1, [b"\x00" * 32])), Reason.UNEXPECTED_MESSAGE),
        (b"\x90" * (FRAME + 1), Reason.TOO_LARGE),
    ],
)
def test_a_bad_first_frame_gets_one_bye_with_its_reason(frame: bytes, reason: Reason) -> None:
    mesh = MeshFixture("sessions", nodes=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    core.handle(PeerConnected("p"), 0)
    effects = core.handle(Received("p", frame), 1)
    sent = _decoded(effects)
    assert len(sent) == 1 and sent[0].reason == reason.value
    assert Disconnect("p", reason) in effects
    assert core.sessions["p"].state is SessionState.CLOSED
    assert core.handle(Received("p", frame), 2) == []  # a closed session ignores late frames


def test_a_hello_in_an_active_session_is_a_protocol_error() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    net = _net(mesh, 2)
    net.connect("n0", "n1")
    net.settle()
    hello = PeerScript(mesh.nodes[1], mesh.mesh_id).hello
    effects = net.cores["n0"].handle(Received("n1", hello), 0)
    assert _decoded(effects)[0].reason == Reason.UNEXPECTED_MESSAGE.value


def test_a_peer_of_another_mesh_is_refused_and_never_redialled() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    other = MeshFixture("another-mesh", nodes=1)
    net = FakeNetwork(random.Random(0))
    net.add("a", MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0)))
    net.add("b", MeshCore(other.nodes[0], other.genesis, MemoryStore(), random.Random(1)))
    net.connect("a", "b")
    net.settle()
    reasons = {r.reason for r in _refusals(net, "a") + _refusals(net, "b")}
    assert reasons == {Reason.WRONG_MESH.value}
    assert not net.links
    net.tick(120_000)
    net.settle()
    assert not net.links  # a final refusal is not retried
    assert net.cores["a"].next_deadline() is None


def test_a_connection_to_ourselves_is_refused() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    core.handle(PeerConnected("loop"), 0)
    hello = PeerScript(mesh.nodes[0], mesh.mesh_id).hello
    effects = core.handle(Received("loop", hello), 1)
    assert _decoded(effects)[0].reason == Reason.SELF_CONNECTION.value


def test_no_common_version_is_refused() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    core.handle(PeerConnected("p"), 0)
    hello = PeerScript(mesh.nodes[1], mesh.mesh_id, versions=[2, 3]).hello
    effects = core.handle(Received("p", hello), 1)
    assert _decoded(effects)[0].reason == Reason.NO_COMMON_VERSION.value


def test_a_silent_peer_times_out_in_the_handshake() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    core.handle(PeerConnected("p"), 1_000)
    deadline = core.next_deadline()
    assert deadline == 1_000 + core.limits.handshake_timeout_ms
    assert core.handle(Timer(), deadline - 1) == []
    effects = core.handle(Timer(), deadline)
    assert _decoded(effects)[0].reason == Reason.HANDSHAKE_TIMEOUT.value


def test_two_dials_crossing_leave_one_session_on_both_sides() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    net = _net(mesh, 2)
    net.known.update({("n0", "n1"), ("n1", "n0")})
    # Both dial at once: two connections, told apart by their handles.
    a, b = net.cores["n0"], net.cores["n1"]
    out_a = a.handle(PeerConnected("n1-out", outbound=True), 0)
    in_b = b.handle(PeerConnected("n0-in"), 0)
    out_b = b.handle(PeerConnected("n0-out", outbound=True), 0)
    in_a = a.handle(PeerConnected("n1-in"), 0)
    pairs = [(out_a, b, "n0-in"), (in_b, a, "n1-out"), (out_b, a, "n1-in"), (in_a, b, "n0-out")]
    auths = [
        (receiver, handle, receiver.handle(Received(handle, _sent(effects, "Hello")), 1))
        for effects, receiver, handle in pairs
    ]
    by_handle = {"n0-in": "n1-out", "n1-out": "n0-in", "n0-out": "n1-in", "n1-in": "n0-out"}
    for receiver, handle, effects in auths:  # each Auth goes back over the same connection
        other = b if receiver is a else a
        other.handle(Received(by_handle[handle], _sent(effects, "Auth")), 2)
    active_a = {p for p, s in a.sessions.items() if s.state is SessionState.ACTIVE}
    active_b = {p for p, s in b.sessions.items() if s.state is SessionState.ACTIVE}
    assert len(active_a) == len(active_b) == 1
    # The survivor is the connection dialled by the smaller key, on both ends.
    n0_smaller = mesh.nodes[0].public_key < mesh.nodes[1].public_key
    assert active_a == ({"n1-out"} if n0_smaller else {"n1-in"})
    assert active_b == ({"n0-in"} if n0_smaller else {"n0-out"})


def _sent(effects: list[object], kind: str) -> bytes:
    return next(e.data for e in effects if isinstance(e, Send) and e.kind == kind)


def test_an_unreachable_peer_is_redialled_with_growing_jittered_backoff() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(5))
    core.handle(PeerKnown("far"), 0)
    now, gaps = 0, []
    for _ in range(8):
        due = core.next_deadline()
        assert due is not None
        gaps.append(due - now)
        now = due
        assert core.handle(Timer(), now) == [Dial("far")]
        core.handle(PeerGone("far"), now)
    assert gaps[0] == 0
    limits = core.limits
    cap = min(limits.dial_backoff_max_ms, limits.dial_backoff_alone_max_ms)  # it has no session
    for attempt, gap in enumerate(gaps[1:]):
        window = min(cap, limits.dial_backoff_initial_ms << attempt)
        assert window // 2 <= gap <= window
    assert gaps[-1] > gaps[1]
    core.handle(PeerKnown("far", forget=True), now)
    assert core.next_deadline() is None


def test_a_large_catch_up_is_paged_under_the_frame_limit() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    source = Admission(MemoryStore(), mesh.genesis)
    big = "x" * 60_000
    for i in range(40):  # 40 envelopes of ~61 KB: 2.4 MB, more than two frames
        claim = mesh.claim(mesh.writers[0], f"k{i}", big)
        source.write_local(mesh.nodes[0], [claim], hlc=i + 1)
    net = FakeNetwork(random.Random(0))
    net.add("n0", MeshCore(mesh.nodes[0], mesh.genesis, source.store, random.Random(0)))
    net.add("n1", MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(1)))
    net.connect("n1", "n0")
    net.quiesce()
    limit = net.cores["n0"].limits.frame_bytes_max
    assert limit // 2 < net.largest_frame <= limit
    assert net.cores["n1"].stats.messages_sent["GetRange"] >= 3  # pulled page by page
    assert net.cores["n1"].claims_digest() == net.cores["n0"].claims_digest()


def test_missing_deps_are_fetched_by_id_from_the_peer_that_pushed() -> None:
    mesh = MeshFixture("sessions", nodes=3)
    net = _net(mesh, 2)
    net.connect("n0", "n1")
    net.write("n0", 1, [mesh.claim(mesh.writers[0], "a", 1)])
    net.settle()
    net.write("n1", 2, [mesh.claim(mesh.writers[0], "b", 2)])
    net.settle()
    [head] = [h for log, h in net.cores["n1"].frontier() if log.author == mesh.nodes[1].public_key]
    later = net.cores["n1"].admission.envelope(head.id)
    [first] = later.deps  # n1's envelope depends on n0's
    # A fresh node hears n1's envelope first, pushed by n1: it asks n1 for the dependency.
    fresh = MeshCore(mesh.nodes[2], mesh.genesis, MemoryStore(), random.Random(2))
    PeerScript(mesh.nodes[1], mesh.mesh_id).open(fresh, "n1")
    fresh.handle(Received("n1", encode_message(Envelopes(0, [later.raw], False))), 0)
    asked = [m for m in _decoded(fresh.handle(Flush(), 0)) if isinstance(m, GetIds)]
    assert [m.ids for m in asked] == [[first]]
    assert fresh.admission.buffered["causal"] == 1
    page = Envelopes(asked[0].req, [net.cores["n1"].admission.envelope_bytes(first)], False)
    fresh.handle(Received("n1", encode_message(page)), 0)
    fresh.handle(Flush(), 0)
    assert set(fresh.admission.records) == {first, later.id}
    assert fresh.admission.buffered["causal"] == 0


def test_equivocation_found_during_sync_becomes_evidence_on_both_sides() -> None:
    """Two cores each hold one branch of a fork: sync finds it, both store both envelopes as
    evidence and end with the same live set; a third core that only talks to one of them learns
    the fork from the frontier."""
    mesh = MeshFixture("sessions", nodes=4)
    liar = mesh.nodes[3]
    origin = Admission(MemoryStore(), mesh.genesis)
    shared = origin.write_local(liar, [mesh.claim(mesh.writers[0], "shared", 0)], hlc=1)
    branches = []
    for label in ("left", "right"):
        scratch = Admission(MemoryStore(), mesh.genesis)
        scratch.receive(shared.raw)
        envs = [shared]
        for i in range(3 if label == "left" else 5):
            claim = mesh.claim(mesh.writers[0], f"{label}{i}", i)
            envs.append(scratch.write_local(liar, [claim], hlc=i + 2))
        branches.append(envs)
    net = _net(mesh, 3)
    for name, branch in (("n0", branches[0][1:]), ("n1", branches[1][1:])):
        store = net.cores[name].admission
        store.receive_many([branches[0][0].raw, *(e.raw for e in branch)])
    assert branches[0][1].seq == branches[1][1].seq == 2  # the fork is at seq 2
    net.connect("n0", "n1")
    net.connect("n0", "n2")
    net.quiesce()
    cores = [net.cores[n] for n in ("n0", "n1", "n2")]
    for name, core in zip(("n0", "n1", "n2"), cores, strict=True):
        assert core.admission.forks == {branches[0][0].log: 2}, name
        assert core.admission.evidence, name
    for name in ("n0", "n1"):
        assert any(isinstance(n, EvidenceFound) for n in net.notices[name])
    assert len({c.claims_digest() for c in cores}) == 1
    # Every replica ends holding both branches whole, whichever it took as its log.
    assert len({frozenset(c.admission.records) for c in cores}) == 1
    assert len(cores[2].admission.records) == 1 + 3 + 5
    live = {c.key for c in cores[0].admission.live_claims()}
    assert live == {"shared"}  # the log is excluded from the fork point on


def test_unflushed_pages_hold_back_further_requests() -> None:
    """The side that verifies paces a catch-up: past ``staged_bytes_max`` of received but
    unflushed envelopes, no new page is asked for until a flush."""
    mesh = MeshFixture("sessions", nodes=2)
    source = Admission(MemoryStore(), mesh.genesis)
    for i in range(100):  # 3 MB: three frames or more
        claim = mesh.claim(mesh.writers[0], f"k{i}", "x" * 30_000)
        source.write_local(mesh.nodes[0], [claim], hlc=i + 1)
    limits = SyncLimits(staged_bytes_max=50_000)
    net = FakeNetwork(random.Random(0))
    net.add("src", MeshCore(mesh.nodes[0], mesh.genesis, source.store, random.Random(0)))
    replica = MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(1), limits=limits)
    net.add("dst", replica)
    net.connect("dst", "src")
    while net.in_flight:  # deliver everything, never flush
        net.deliver(len(net.in_flight))
    staged = replica._staged.remote_bytes
    assert 50_000 <= staged < 50_000 + limits.frame_bytes_max
    assert len(replica._staged.remote) < 100
    net.quiesce()  # flushing lets it finish
    assert replica.claims_digest() == net.cores["src"].claims_digest()


def test_the_losing_duplicate_is_not_redialled_until_the_surviving_session_ends() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    low, high = sorted(mesh.nodes[:2], key=lambda k: k.public_key)
    core = MeshCore(high, mesh.genesis, MemoryStore(), random.Random(0))
    script = PeerScript(low, mesh.mesh_id)
    script.open(core, "from-low")  # the smaller key dialled us: this one survives
    core.handle(PeerKnown("low-address"), 0)
    assert core.handle(Timer(), 0) == [Dial("low-address")]
    effects = core.handle(PeerConnected("low-address", outbound=True), 1)
    core.handle(Received("low-address", script.hello), 1)
    effects = core.handle(Received("low-address", script.auth(_sent(effects, "Hello"))), 1)
    assert _decoded(effects)[-1].reason == Reason.DUPLICATE_SESSION.value
    core.handle(PeerGone("low-address"), 2)
    for now in range(10_000, 200_000, 10_000):  # the address is not dialled while it stands
        assert not [e for e in core.handle(Timer(), now) if isinstance(e, Dial)]
    core.handle(PeerGone("from-low"), 200_000)  # the surviving session ends: dial again
    due = core.next_deadline()
    assert due is not None
    assert Dial("low-address") in core.handle(Timer(), due)


def test_a_key_that_is_not_a_member_is_refused_for_good() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    net = _net(mesh, 1)
    net.add("x", MeshCore(seeded_key("stranger"), mesh.genesis, MemoryStore(), random.Random(9)))
    net.connect("x", "n0")
    net.settle()
    assert {r.reason for r in _refusals(net, "n0")} == {Reason.NOT_MEMBER.value}
    for _ in range(5):
        net.tick(60_000)
        net.settle()
    assert not net.links  # the dialler does not retry a final refusal
    assert all(n.reason == Reason.NOT_MEMBER.value for n in _refusals(net, "x"))


def test_a_joining_node_is_recognised_by_its_admit_chain() -> None:
    """A node admitted after genesis presents its admit claim; a member that has not yet seen
    the admit checks the chain itself."""
    mesh = MeshFixture("sessions", nodes=1)
    newcomer = seeded_key("sessions/newcomer")
    admit = mesh.admit(newcomer.public_key, "node")
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    assert core.admission.membership.state.get(newcomer.public_key) is None
    PeerScript(newcomer, mesh.mesh_id, chain=[admit.raw]).open(core, "new")
    assert core.sessions["new"].state is SessionState.ACTIVE
    # Without the chain it is a stranger.
    effects = PeerScript(newcomer, mesh.mesh_id).open(core, "bare")
    assert _decoded(effects) == [] and core.sessions["bare"].state is SessionState.CLOSED
    # A writer's admit does not make a node.
    writer = seeded_key("sessions/writer")
    as_writer = mesh.admit(writer.public_key, "writer")
    PeerScript(writer, mesh.mesh_id, chain=[as_writer.raw]).open(core, "w")
    assert core.sessions["w"].state is SessionState.CLOSED


def test_a_revoked_node_is_refused() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    net = _net(mesh, 1)
    net.write("n0", 1, [mesh.revoke_node(mesh.nodes[1].public_key, 1, 0)])
    net.flush("n0")
    core = net.cores["n0"]
    effects = core.handle(PeerConnected("p"), 0)
    script = PeerScript(mesh.nodes[1], mesh.mesh_id)
    refused = core.handle(Received("p", script.hello), 0)
    assert _decoded(refused)[0].reason == Reason.REVOKED.value
    del effects


def test_a_proof_must_sign_this_handshake() -> None:
    mesh = MeshFixture("sessions", nodes=3)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    script = PeerScript(mesh.nodes[1], mesh.mesh_id)
    # A proof made for another handshake (another core's nonce) does not verify here.
    other = MeshCore(mesh.nodes[2], mesh.genesis, MemoryStore(), random.Random(1))
    replayed = script.auth(_sent(other.handle(PeerConnected("q"), 0), "Hello"))
    core.handle(PeerConnected("p"), 0)
    core.handle(Received("p", script.hello), 0)
    effects = core.handle(Received("p", replayed), 0)
    assert _decoded(effects)[0].reason == Reason.BAD_SIGNATURE.value
    # Nor does a proof by another key for the announced one.
    impostor = PeerScript(mesh.nodes[2], mesh.mesh_id)
    hello = core.handle(PeerConnected("r"), 0)
    core.handle(Received("r", script.hello), 0)  # announces node 1 ...
    effects = core.handle(Received("r", impostor.auth(_sent(hello, "Hello"))), 0)  # ... as node 2
    assert _decoded(effects)[0].reason == Reason.BAD_SIGNATURE.value


def test_messages_before_the_proof_are_protocol_errors() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    core.handle(PeerConnected("p"), 0)
    core.handle(Received("p", PeerScript(mesh.nodes[1], mesh.mesh_id).hello), 0)
    assert core.sessions["p"].state is SessionState.AUTH
    effects = core.handle(Received("p", encode_message(GetIds(1, [b"\x01" * 32]))), 0)
    assert _decoded(effects)[0].reason == Reason.UNEXPECTED_MESSAGE.value


def test_one_flush_admits_a_bounded_batch_and_asks_for_another() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    source = Admission(MemoryStore(), mesh.genesis)
    envs = [
        source.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[0], f"k{i}", i)], hlc=i + 1)
        for i in range(40)
    ]
    limits = SyncLimits(flush_envelopes_max=16)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(mesh.nodes[1], mesh.mesh_id).open(core, "p")
    core.handle(Received("p", encode_message(Envelopes(0, [e.raw for e in envs], False))), 0)
    assert core._staged_ids() == {e.id for e in envs}
    sizes = []
    while True:
        effects = core.handle(Flush(), 0)
        sizes.append(len(core.admission.records))
        # the staged ids, kept as envelopes arrive and leave, are those still waiting
        assert core._staged_ids() == {e.id for e in envs if e.id not in core.admission.records}
        if not any(isinstance(e, Persist) for e in effects):
            break
    assert sizes == [16, 32, 40]


def test_the_only_node_of_a_mesh_writes_at_once_and_a_second_node_makes_it_ask() -> None:
    """Nobody else can hold an envelope of a mesh's only node key, so there is no one to ask
    for its head: it may write at once. Once another node key is a member, a restart asks."""
    solo = MeshFixture("solo", nodes=1)
    store = MemoryStore()
    alone = MeshCore(solo.nodes[0], solo.genesis, store, random.Random(0), start_isolated=False)
    assert alone.may_write()
    pair = MeshFixture("pair", nodes=2)
    first = MeshCore(pair.nodes[0], pair.genesis, MemoryStore(), random.Random(0),
                     start_isolated=False)  # fmt: skip
    assert not first.may_write()
    # The only node admits a second one: from its next start on, it asks before writing.
    newcomer = seeded_key("solo/newcomer")
    alone.admission.write_local(solo.nodes[0], [solo.admit(newcomer.public_key, "node")], hlc=1)
    again = MeshCore(solo.nodes[0], solo.genesis, store, random.Random(1), start_isolated=False)
    assert not again.may_write()


def test_a_restored_copy_holds_its_writes_until_it_has_caught_up_with_its_own_log() -> None:
    """DESIGN §4 rule 6: a node started from an old copy of its data dir must not sign a second
    envelope for a seq it already used; it waits until sync brings its own later envelopes."""
    mesh = MeshFixture("sessions", nodes=2)
    disk = MemoryDisk()
    original = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(disk), random.Random(0))
    net = FakeNetwork(random.Random(0))
    net.add("a", original)
    net.add("b", MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(1)))
    net.connect("a", "b")
    net.write("a", 1, [mesh.claim(mesh.writers[0], "k1", 1)])
    net.settle()
    backup = copy.deepcopy(disk)  # an operator's copy of the data dir, taken now
    for token in (2, 3):
        net.write("a", token, [mesh.claim(mesh.writers[0], f"k{token}", token)])
        net.settle()
    assert [h.seq for log, h in net.cores["b"].frontier()] == [3]
    # The original dies; its old copy starts in its place.
    restored = net.restart(
        "a",
        lambda: MeshCore(
            mesh.nodes[0],
            mesh.genesis,
            MemoryStore(backup),
            random.Random(2),
            start_isolated=False,
        ),
    )
    net.in_flight.clear()  # before the restored node hears anything from its peer
    assert not restored.may_write()
    net.write("a", 4, [mesh.claim(mesh.writers[0], "k4", 4)])
    net.flush("a")
    assert not [n for n in net.notices["a"] if isinstance(n, WriteAcked) and n.token == 4]
    assert restored.writes_waiting == 1
    net.quiesce()  # sync brings seqs 2 and 3 of its own log, then the write goes out as seq 4
    [ack] = [n for n in net.notices["a"] if isinstance(n, WriteAcked) and n.token == 4]
    assert ack.seq == 4
    assert not restored.admission.evidence and not net.cores["b"].admission.evidence
    assert restored.claims_digest() == net.cores["b"].claims_digest()


def test_a_cancelled_write_is_never_committed() -> None:
    mesh = MeshFixture("sessions", nodes=2)
    core = MeshCore(
        mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0), start_isolated=False
    )
    core.handle(LocalWrite(1, [mesh.claim(mesh.writers[0], "a", 1)]), 0)
    core.handle(LocalWrite(2, [mesh.claim(mesh.writers[0], "b", 2)]), 0)
    effects = core.handle(CancelWrite(1), 0)
    assert [e.notice for e in effects if isinstance(e, Notify)] == [
        WriteFailed(1, "Cancelled", "withdrawn before it was committed")
    ]
    assert core.handle(CancelWrite(1), 0) == []  # nothing left to withdraw
    # A peer shows this node's (empty) log: the remaining write goes out, the cancelled never.
    PeerScript(mesh.nodes[1], mesh.mesh_id).open(core, "p")
    core.handle(Received("p", encode_message(_empty_frontier())), 0)
    acks = [
        e.notice
        for e in core.handle(Flush(), 0)
        if isinstance(e, Notify) and isinstance(e.notice, WriteAcked)
    ]
    assert [a.token for a in acks] == [2]
    assert {c.key for r in core.admission.records.values() for c in r.claims} == {"b"}


def _flush_until_idle(core: MeshCore) -> tuple[list[int], list[WriteAcked | WriteFailed]]:
    """Flush until no ``Persist`` is asked again: the envelopes each flush wrote, and the
    write notices in order."""
    written, notices = [], []
    while True:
        before = len(core.admission.records)
        effects = core.handle(Flush(), 0)
        written.append(len(core.admission.records) - before)
        notices += [
            e.notice
            for e in effects
            if isinstance(e, Notify) and isinstance(e.notice, WriteAcked | WriteFailed)
        ]
        if not any(isinstance(e, Persist) for e in effects):
            return written, notices


def test_writes_that_together_exceed_an_envelope_share_envelopes_that_fit() -> None:
    """Packing by claim count alone put 64 concurrent writes of 50 KB into one envelope of
    3 MB, which the envelope limit refused, and every one of those writes failed."""
    mesh = MeshFixture("sessions", nodes=1)
    limits = SyncLimits(flush_local_envelopes_max=2)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0), limits=limits)
    value = "x" * 50_000
    for token in range(1, 65):
        core.handle(LocalWrite(token, [mesh.claim(mesh.writers[0], f"k{token}", value)]), 0)
    written, notices = _flush_until_idle(core)
    assert all(isinstance(n, WriteAcked) for n in notices)
    assert [n.token for n in notices] == list(range(1, 65))  # in order, each once
    assert max(written) == 2 and sum(written) >= 4  # 3.2 MB: at least four envelopes
    bytes_max = core.admission.limits.envelope.envelope_bytes_max
    sizes = [len(core.admission.envelope_bytes(i)) for i in core.admission.records]
    assert max(sizes) <= bytes_max
    assert max(sizes) > bytes_max * 0.9  # packed full, not one write each
    assert len(sizes) == sum(written)


def test_a_write_too_large_for_an_envelope_is_refused_alone() -> None:
    mesh = MeshFixture("sessions", nodes=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
    big = [mesh.claim(mesh.writers[0], f"big{i}", "x" * 60_000) for i in range(20)]
    effects = core.handle(LocalWrite(1, big), 0)
    (refused,) = [e.notice for e in effects if isinstance(e, Notify)]
    assert isinstance(refused, WriteFailed) and refused.error == "TooLarge"
    assert "split the write" in refused.detail
    many = [mesh.claim(mesh.writers[0], f"n{i}", i) for i in range(4097)]
    (refused,) = [e.notice for e in core.handle(LocalWrite(2, many), 0) if isinstance(e, Notify)]
    assert isinstance(refused, WriteFailed) and refused.error == "TooLarge"
    core.handle(LocalWrite(3, big[:10]), 0)  # 600 KB: fits
    _, notices = _flush_until_idle(core)
    assert [(type(n).__name__, n.token) for n in notices] == [("WriteAcked", 3)]
    assert not any(c.key.startswith("n") for r in core.admission.records.values() for c in r.claims)


def _empty_frontier() -> Frontier:
    return Frontier(1, [], [], True, False, [])


def test_a_session_ends_when_its_peer_is_revoked() -> None:
    mesh = MeshFixture("sessions", nodes=3)
    net = _net(mesh, 3)
    net.connect("n0", "n1")
    net.connect("n0", "n2")
    net.settle()
    net.write("n0", 1, [mesh.revoke_node(mesh.nodes[1].public_key, 1, 0)])
    net.settle()
    assert net.session_states("n0") == {"n2": SessionState.ACTIVE}
    assert [(r.peer, r.reason, r.by_us) for r in _refusals(net, "n0")] == [
        ("n1", Reason.REVOKED.value, True)
    ]
    net.tick(120_000)
    net.settle()
    assert not net.connected("n0", "n1")  # a final refusal: not redialled


def test_a_node_hours_off_changes_no_validity_decision_and_drags_no_clock() -> None:
    """Envelopes and claims dated three hours ahead or behind are admitted exactly like the
    others (validity never reads a clock); an honest node's HLC moves at most its drift bound
    past its own physical time, so its next writes are dated by its own clock."""
    mesh = MeshFixture("skew", nodes=2)
    hours = 3 * 3600 * 1000
    now = 1_700_000_000_000
    for offset in (hours, -hours):
        author = Admission(MemoryStore(), mesh.genesis)
        claim = make_claim(
            mesh.writers[0], mesh_id=mesh.mesh_id, aseq=1, hlc=(now + offset, 0),
            namespace=("t",), key="k", type="fact", value=offset,
        )  # fmt: skip
        env = author.write_local(mesh.nodes[1], [claim], hlc=hlc_pack(now + offset, 0))
        honest = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(0))
        script = PeerScript(mesh.nodes[1], mesh.mesh_id)
        script.open(honest, "p", now)
        honest.handle(Received("p", encode_message(Envelopes(0, [env.raw], False))), now)
        honest.handle(Flush(), now)
        assert env.id in honest.admission.records
        assert [c.id for c in honest.admission.live_claims()] == [claim.id]
        physical, _ = hlc_unpack(honest.clock.last)
        assert physical <= now + 60_000  # the drift bound, not three hours
        # Its next write: past the bound only by the logical counter's carry (one ms per 65,536
        # events), never by the remote node's hours.
        assert hlc_unpack(honest.clock.tick(now + 1))[0] <= now + 60_001


def test_a_node_that_loses_its_last_session_redials_at_once_whatever_its_backoff() -> None:
    """While a node has sessions, an unreachable peer's backoff grows to
    ``dial_backoff_max_ms`` (30 s). Once the node has no session left, it redials within
    ``dial_backoff_alone_max_ms``: the simulator saw a node stay cut off 17 s after a
    partition healed, waiting out backoffs it had earned during the partition."""
    mesh = MeshFixture("alone", nodes=3)
    net = FakeNetwork(random.Random(2))
    for i in range(3):
        net.add(f"n{i}", MeshCore(mesh.nodes[i], mesh.genesis, MemoryStore(), random.Random(i)))
    net.connect("n0", "n1")
    net.partition("n0", "n2")
    net.know("n0", "n2")
    net.settle()
    for _ in range(120):  # two minutes of failed dials to n2 while n1 keeps n0 company
        net.tick(1_000)
        net.settle()
    core = net.cores["n0"]
    limits = core.limits
    due = core._dialling["n2"].due_ms
    assert due is not None and due - net.clock.now_ms > limits.dial_backoff_alone_max_ms
    net.heal("n0", "n2")
    net.partition("n0", "n1")  # n0 is alone now
    waited = 0
    while not net.connected("n0", "n2"):
        assert waited <= limits.dial_backoff_alone_max_ms, "n0 waited out its old backoff"
        net.tick(100)
        net.settle()
        waited += 100


def test_a_node_whose_own_log_forked_refuses_writes_at_once() -> None:
    """Another process wrote with this node's key (a restored backup, a cloned disk): once the
    fork is known, the node's log is excluded from it on, so a write is refused at once with
    ``OwnLogForked`` (409 at the API) instead of waiting for a seq its peers already hold."""
    mesh = MeshFixture("own-fork", nodes=2, writers=1)
    core = MeshCore(mesh.nodes[0], mesh.genesis, MemoryStore(), random.Random(1))
    staged = core.handle(LocalWrite(1, [mesh.claim(mesh.writers[0], "before")]), 0)
    assert not any(isinstance(e, Notify) and isinstance(e.notice, WriteFailed) for e in staged)
    clone = Admission(MemoryStore(), mesh.genesis)  # the other process, with the same key
    ours = core.admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "a")], hlc=1)
    theirs = clone.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "b")], hlc=2)
    assert (ours.seq, theirs.seq) == (1, 1) and ours.id != theirs.id
    core.admission.receive(theirs.raw)
    assert core.admission.forks == {ours.log: 1}
    failed = [
        e.notice
        for e in core.handle(LocalWrite(2, [mesh.claim(mesh.writers[0], "after")]), 1)
        if isinstance(e, Notify) and isinstance(e.notice, WriteFailed)
    ]
    assert [(f.token, f.error) for f in failed] == [(2, "OwnLogForked")]
    assert "equivocates from seq 1" in failed[0].detail
    flushed = [  # the write staged before the fork was known is refused too
        e.notice
        for e in core.handle(Flush(), 2)
        if isinstance(e, Notify) and isinstance(e.notice, WriteFailed)
    ]
    assert [(f.token, f.error) for f in flushed] == [(1, "OwnLogForked")]


class _BadReads(MemoryStore):
    """Reads of envelopes' bytes fail while ``broken`` (a damaged record): the core must leave
    them out of its answers, never send anything else in their place."""

    broken = False

    def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
        if self.broken:
            raise CorruptRecord("injected: record failed its checksum")
        return super().get_log_envelope(log, seq)


def test_envelopes_no_longer_held_in_memory_are_served_from_the_store() -> None:
    mesh = MeshFixture("sessions", nodes=3)
    store = _BadReads()
    held_none = AdmissionLimits(held_envelope_bytes_max=0)
    n0 = MeshCore(mesh.nodes[0], mesh.genesis, store, random.Random(0), admission_limits=held_none)
    net = FakeNetwork(random.Random(0))
    net.add("n0", n0)
    for i in range(3):
        net.write("n0", i + 1, [mesh.claim(mesh.writers[0], f"k{i}", i)])
    assert all(r.envelope.held is None for r in n0.admission.records.values())
    net.add("n1", MeshCore(mesh.nodes[1], mesh.genesis, MemoryStore(), random.Random(1)))
    net.connect("n0", "n1")
    net.settle()
    assert net.cores["n1"].claims_digest() == n0.claims_digest()
    assert n0.stats.store_read_errors == 0

    store.broken = True
    net.write("n0", 4, [mesh.claim(mesh.writers[0], "late", 4)])  # pushed while still held
    net.add("n2", MeshCore(mesh.nodes[2], mesh.genesis, MemoryStore(), random.Random(2)))
    net.connect("n0", "n2")
    net.settle()
    n2 = net.cores["n2"]
    assert n0.stats.store_read_errors > 0
    assert "injected" in n0.stats.last_store_read_error
    assert n2.admission.rejected == {}  # nothing damaged or made up reached it
    assert n2.claims_digest() != n0.claims_digest()  # it lacks what could not be read
    store.broken = False
    net.quiesce()  # anti-entropy asks again, and gets everything once the store reads
    assert n2.claims_digest() == n0.claims_digest()


def test_a_peers_answer_time_is_smoothed_as_tcp_does() -> None:
    """``Session.rto_ms``: none before the first answer; then the first sample plus twice it
    (rttvar starts at half); then Jacobson's estimator, so one slow answer moves the timeout
    by its deviation and steady answers bring it back down."""
    session = Session("p", outbound=True, state=SessionState.ACTIVE, deadline_ms=None)
    assert session.rto_ms is None
    session.note_rtt(40)
    assert (session.srtt_ms, session.rttvar_ms, session.rto_ms) == (40, 20, 120)
    session.note_rtt(40)
    assert (session.srtt_ms, session.rttvar_ms) == (40, 15)
    session.note_rtt(200)  # one slow answer
    assert (session.srtt_ms, session.rttvar_ms) == (60, 51)
    for _ in range(30):
        session.note_rtt(40)
    assert session.srtt_ms is not None and 40 <= session.srtt_ms <= 42
    assert session.rto_ms is not None and session.rto_ms <= 50
    session.note_rtt(-5)  # a clock stepped back: counted as 0, never negative
    assert session.srtt_ms >= 0 and session.rttvar_ms >= 0


def test_the_refetch_floor_cannot_exceed_the_refetch_ceiling() -> None:
    with pytest.raises(ValueError, match="dep_refetch_min_ms must be <= dep_refetch_ms"):
        SyncLimits(dep_refetch_ms=100, dep_refetch_min_ms=101)
