"""A peer that sends anything at all, in any order: the core never raises, sends at most one
``Bye`` per session and then nothing more on it, gives every refusal a reason code, and keeps
its replica intact."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from memmesh.admission import Admission
from memmesh.core import (
    Disconnect,
    Flush,
    MeshCore,
    Notify,
    PeerConnected,
    PeerGone,
    Received,
    Send,
    SyncLimits,
    Throttled,
    Timer,
)
from memmesh.core.messages import (
    Auth,
    Bye,
    Envelopes,
    ForkEntry,
    Frontier,
    GetIds,
    GetRange,
    HeadEntry,
    Hello,
    NothingToSend,
    decode_message,
    encode_message,
)
from memmesh.crypto import SigningKey
from memmesh.envelope import Envelope
from memmesh.errors import Reason
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture, PeerScript, scaled

MESH = MeshFixture("hostile", nodes=3)
SOURCE = Admission(MemoryStore(), MESH.genesis)
ENVELOPES = [
    SOURCE.write_local(MESH.nodes[1], [MESH.claim(MESH.writers[0], f"k{i}", i)], hlc=i + 1)
    for i in range(4)
]
KNOWN_IDS = [e.id for e in ENVELOPES]
AUTHORS = [MESH.nodes[1].public_key, MESH.nodes[2].public_key]

ids = st.one_of(st.sampled_from(KNOWN_IDS), st.binary(min_size=32, max_size=32))
seqs = st.integers(1, 8)
rounds = st.integers(0, 3)
raw_envelopes = st.one_of(
    st.sampled_from([e.raw for e in ENVELOPES]),
    st.sampled_from([e.raw for e in ENVELOPES]).map(lambda r: r[:-1] + bytes([r[-1] ^ 1])),
    st.binary(min_size=1, max_size=300),
)


@st.composite
def get_ranges(draw: st.DrawFn) -> GetRange:
    start = draw(seqs)
    return GetRange(draw(st.integers(1, 5)), draw(st.sampled_from(AUTHORS)), 1, start, start + 3)


@st.composite
def frontiers(draw: st.DrawFn) -> Frontier:
    heads = sorted(
        {
            a: HeadEntry(a, 1, draw(seqs), draw(ids))
            for a in draw(st.sets(st.sampled_from(AUTHORS)))
        }.values(),
        key=lambda h: h.author,
    )
    pair = sorted(draw(st.lists(ids, min_size=2, max_size=2, unique=True)))
    forks = [ForkEntry(pair[0], pair[1])] if draw(st.booleans()) else []
    return Frontier(
        draw(rounds),
        heads,
        forks,
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.lists(ids, max_size=2)),
    )


NONCE = b"\x5a" * 32
messages = st.one_of(
    st.just(Hello([1], MESH.mesh_id, MESH.nodes[1].public_key, NONCE, [])),
    st.just(Hello([1], MESH.mesh_id, MESH.nodes[0].public_key, NONCE, [])),  # pretends to be us
    st.builds(
        Hello,
        st.lists(st.integers(0, 3), min_size=1, max_size=3),
        st.just(MESH.mesh_id),
        ids,
        st.binary(min_size=32, max_size=32),
        st.lists(st.binary(min_size=1, max_size=40), max_size=2),
    ),
    st.builds(Auth, st.binary(min_size=64, max_size=64)),
    frontiers(),
    st.builds(NothingToSend, rounds),
    get_ranges(),
    st.builds(GetIds, st.integers(1, 5), st.lists(ids, min_size=1, max_size=4)),
    st.builds(Envelopes, st.integers(0, 5), st.lists(raw_envelopes, max_size=3), st.booleans()),
    st.builds(Bye, st.sampled_from(["bad_message", "x"]), st.text(max_size=10)),
)
valid = messages.map(encode_message)
frames = st.one_of(valid, valid, valid, st.binary(max_size=64))
SCRIPT = PeerScript(MESH.nodes[1], MESH.mesh_id, nonce=NONCE)
steps = st.lists(st.one_of(frames, st.just("flush"), st.just("timer")), min_size=1, max_size=25)


@settings(max_examples=scaled(300))
@given(steps=steps, greet=st.booleans(), seed=st.integers(0, 2**16))
def test_any_frames_from_a_peer(steps: list[bytes | str], greet: bool, seed: int) -> None:
    store = MemoryStore()
    core = MeshCore(MESH.nodes[0], MESH.genesis, store, random.Random(seed))
    core.handle(Received("nobody", b"\x00"), 0)  # frames of an unknown connection are ignored
    now = 0
    effects = core.handle(PeerConnected("p", outbound=bool(seed % 2)), now)
    if greet:  # most sessions should get past the handshake to be interesting
        core_hello = next(e.data for e in effects if isinstance(e, Send))
        steps = [SCRIPT.hello, SCRIPT.auth(core_hello), *steps]
    byes = 0
    for step in steps:
        now += 1_000
        if step == "flush":
            effects = core.handle(Flush(), now)
        elif step == "timer":
            effects = core.handle(Timer(), now + 60_000)
        else:
            assert isinstance(step, bytes)
            effects = core.handle(Received("p", step), now)
        for effect in effects:
            if isinstance(effect, Disconnect):
                assert isinstance(effect.reason, Reason)
            if isinstance(effect, Send) and effect.peer == "p":
                assert byes == 0, "nothing is sent on a session after its Bye"
                message = decode_message(effect.data, frame_bytes_max=core.limits.frame_bytes_max)
                if isinstance(message, Bye):
                    byes += 1
                    assert message.reason in {r.value for r in Reason}
    core.handle(Flush(), now + 1)
    session = core.sessions.get("p")
    event(f"session ends {session.state.value if session else 'gone'}, {byes} bye")
    event(f"envelopes admitted: {min(len(core.admission.records), 2)} or more")
    # Whatever was admitted is exactly what the replica holds, and it is valid.
    held = {c.id for r in core.admission.records.values() for c in r.claims}
    assert held <= {c.id for e in ENVELOPES for c in SOURCE.records[e.id].claims}
    assert len(core.admission.replica.keys()) == len(held)


def _bye_reason(effects: list[object]) -> str | None:
    for effect in effects:
        if isinstance(effect, Send) and effect.kind == "Bye":
            message = decode_message(effect.data, frame_bytes_max=1 << 21)
            assert isinstance(message, Bye)
            return message.reason
    return None


def test_a_peer_sending_invalid_envelopes_is_disconnected_and_banned_for_a_while() -> None:
    """Invalid envelopes (a flipped signature byte) past ``invalid_envelopes_max``: the session
    ends with ``too_many_invalid``; the peer's key is refused (``banned``) until the ban runs
    out, then accepted again; a second ban lasts twice as long."""
    limits = SyncLimits(invalid_envelopes_max=3, ban_initial_ms=10_000)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    forged = [e.raw[:-1] + bytes([e.raw[-1] ^ 1]) for e in ENVELOPES]
    script = PeerScript(MESH.nodes[1], MESH.mesh_id)
    script.open(core, "p", 0)
    reasons = []
    for i in range(4):  # three are tolerated (a relay may pass on what it cannot check)
        core.handle(Received("p", encode_message(Envelopes(0, [forged[i]], False))), 1 + i)
        reasons.append(_bye_reason(core.handle(Flush(), 1 + i)))
    assert reasons == [None, None, None, "too_many_invalid"]
    assert core.stats.bans == 1 and not core.admission.records
    core.handle(PeerGone("p", None), 10)
    assert _bye_reason(script.open(core, "p2", 5_000)) == "banned"
    core.handle(PeerGone("p2", None), 5_001)
    effects = script.open(core, "p3", 10_005)  # the ban has run out
    assert _bye_reason(effects) is None and core.sessions["p3"].state.value == "active"
    for i in range(4):  # again: banned for twice as long
        core.handle(Received("p3", encode_message(Envelopes(0, [forged[i]], False))), 10_010 + i)
        core.handle(Flush(), 10_010 + i)
    core.handle(PeerGone("p3", None), 10_020)
    assert _bye_reason(script.open(core, "p4", 10_020 + 15_000)) == "banned"
    core.handle(PeerGone("p4", None), 25_030)
    assert _bye_reason(script.open(core, "p5", 10_020 + 20_001)) is None
    # Honest traffic from another member is untouched.
    other = PeerScript(MESH.nodes[2], MESH.mesh_id)
    assert _bye_reason(other.open(core, "q", 30_100)) is None


def _throttled(effects: list[object]) -> list[Throttled]:
    return [e.notice for e in effects if isinstance(e, Notify) and isinstance(e.notice, Throttled)]


def _log_of(author: SigningKey, tag: str, count: int, hlc0: int = 1) -> list[Envelope]:
    """``count`` envelopes of ``author``'s log, one claim each, keys ``tag0``, ``tag1``..."""
    source = Admission(MemoryStore(), MESH.genesis)
    return [
        source.write_local(author, [MESH.claim(MESH.writers[0], f"{tag}{i}", i)], hlc=hlc0 + i)
        for i in range(count)
    ]


def _ranges_asked(
    core: MeshCore, peer: str, heads: list[HeadEntry], now: int, round_: int = 7
) -> list[GetRange]:
    """Feed ``peer``'s frontier naming ``heads``; the ranges the core asks of that peer."""
    message = Frontier(round_, heads, [], True, False, [])
    sent = [
        decode_message(e.data, frame_bytes_max=1 << 21)
        for e in core.handle(Received(peer, encode_message(message)), now)
        if isinstance(e, Send) and e.peer == peer
    ]
    return [m for m in sent if isinstance(m, GetRange)]


def test_a_member_pushing_past_its_push_budget_is_throttled_and_flagged() -> None:
    """Valid envelopes a member signs itself, pushed faster than ``author_pushes_per_s``: what
    fits the budget is admitted, the rest is dropped before it is decoded and reported
    (``Throttled``: the author and how many); an answer to a request of ours is never cut, and
    a made-up answer (a ``req`` nobody asked) counts as a push."""
    author = MESH.nodes[1]
    envelopes = _log_of(author, "f", 30)
    limits = SyncLimits(author_pushes_per_s=10, author_push_burst=10)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(author, MESH.mesh_id).open(core, "p", 0)
    raws = [e.raw for e in envelopes]
    effects = core.handle(Received("p", encode_message(Envelopes(0, raws, False))), 10)
    assert [(t.peer, t.author, t.dropped) for t in _throttled(effects)] == [
        ("p", author.public_key, 20)
    ]
    core.handle(Flush(), 10)
    assert len(core.admission.records) == 10 and core.stats.pushes_throttled == 20
    # One second on: ten more tokens. A made-up req is a push too.
    effects = core.handle(Received("p", encode_message(Envelopes(99, raws[10:], False))), 1_010)
    assert [t.dropped for t in _throttled(effects)] == [10]
    core.handle(Flush(), 1_010)
    assert len(core.admission.records) == 20
    # An answer to our own request is taken whole: anti-entropy brings what pushes could not.
    core.handle(Timer(), 5_000)  # starts a round: the peer is asked for its frontier
    head = HeadEntry(author.public_key, 1, 30, envelopes[-1].id)
    asks = _ranges_asked(core, "p", [head], 5_001, round_=core.sessions["p"].round)
    assert asks and asks[0].start_seq == 21
    answer = Envelopes(asks[0].req, raws[20:], False)
    assert not _throttled(core.handle(Received("p", encode_message(answer)), 5_002))
    core.handle(Flush(), 5_002)
    assert len(core.admission.records) == 30 and core.stats.pushes_throttled == 30


def test_a_fetch_nobody_answers_is_asked_again_of_another_peer_after_the_hedge() -> None:
    """A request whose answer never comes (lost, or a peer that stays silent) holds the log
    only for ``fetch_hedge_ms``: a frontier from another peer before that asks nothing, one
    after it asks that peer, long before ``request_timeout_ms``."""
    author = MESH.nodes[1]
    envelopes = _log_of(author, "h", 3)
    limits = SyncLimits(fetch_hedge_ms=2_000, request_timeout_ms=10_000)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(MESH.nodes[1], MESH.mesh_id).open(core, "p", 0)
    PeerScript(MESH.nodes[2], MESH.mesh_id).open(core, "q", 0)
    heads = [HeadEntry(author.public_key, 1, 3, envelopes[-1].id)]

    asks = _ranges_asked(core, "p", heads, 100)
    assert [(g.start_seq, g.end_seq) for g in asks] == [(1, 3)]
    assert _ranges_asked(core, "q", heads, 1_500) == []  # asked of p 1.4 s ago: not yet
    asks = _ranges_asked(core, "q", heads, 2_200)  # 2.1 s: asked again, of q
    assert [(g.start_seq, g.end_seq) for g in asks] == [(1, 3)]
    answer = Envelopes(asks[0].req, [e.raw for e in envelopes], False)
    core.handle(Received("q", encode_message(answer)), 2_210)
    core.handle(Flush(), 2_210)
    assert len(core.admission.records) == 3


def test_a_fetch_still_queued_is_not_hedged() -> None:
    """A fetch waiting in a session's queue (the node paces its own transfer) is not asked of
    another peer however long it waits; one sent and unanswered is, after the hedge."""
    logs = [_log_of(key, f"q{n}", 2, hlc0=10 * n + 1) for n, key in enumerate(MESH.nodes[1:], 1)]
    limits = SyncLimits(fetch_hedge_ms=2_000, requests_in_flight_max=1)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(MESH.nodes[1], MESH.mesh_id).open(core, "p", 0)
    PeerScript(MESH.nodes[2], MESH.mesh_id).open(core, "q", 0)
    heads = sorted(
        (HeadEntry(log[-1].author, 1, 2, log[-1].id) for log in logs), key=lambda h: h.author
    )

    def asked(peer: str, now: int) -> list[bytes]:
        return [g.author for g in _ranges_asked(core, peer, heads, now)]

    first = min(h.author for h in heads)
    assert asked("p", 100) == [first]  # one in flight; the other waits in p's queue
    assert asked("q", 5_000) == [first]  # the sent one is hedged; the queued one is not


def test_a_peer_that_never_answers_a_round_does_not_cost_the_others_their_rounds() -> None:
    """The round's peer is drawn among those not still awaiting an answer: a peer whose
    frontier never comes back (a lost frame holds its round until the deadline) used to be
    drawn again and the whole round skipped. Here p never answers and q always does: every
    anti-entropy interval still starts a round, with q."""
    limits = SyncLimits(anti_entropy_interval_ms=1_000, request_timeout_ms=60_000)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(3), limits=limits)
    rounds: list[str] = []

    def answer_q(effects: list[object], now: int) -> None:
        for effect in effects:
            if isinstance(effect, Send) and effect.kind == "Frontier":
                message = decode_message(effect.data, frame_bytes_max=1 << 21)
                assert isinstance(message, Frontier)
                if message.reply:
                    rounds.append(effect.peer)
                    if effect.peer == "q":
                        answer = NothingToSend(message.round)
                        core.handle(Received("q", encode_message(answer)), now)

    answer_q(list(PeerScript(MESH.nodes[1], MESH.mesh_id).open(core, "p", 0)), 0)
    answer_q(list(PeerScript(MESH.nodes[2], MESH.mesh_id).open(core, "q", 0)), 0)
    opening = len(rounds)  # a round with each new session
    now = 0
    for _ in range(40):
        now += 250
        answer_q(list(core.handle(Timer(), now)), now)
    later = rounds[opening:]
    assert len(later) >= 9, rounds  # one a second for ten seconds
    assert set(later) == {"q"}, rounds


def _pusher(core: MeshCore) -> Callable[[Envelope, int], list[GetIds]]:
    """``push(env, now)``: ``env`` pushed by peer ``p``; the ``GetIds`` the core sends back."""

    def push(env: Envelope, now: int) -> list[GetIds]:
        core.handle(Received("p", encode_message(Envelopes(0, [env.raw], False))), now)
        sent = [
            decode_message(e.data, frame_bytes_max=1 << 21)
            for e in core.handle(Flush(), now)
            if isinstance(e, Send) and e.peer == "p"
        ]
        return [m for m in sent if isinstance(m, GetIds)]

    return push


def test_a_lost_dep_fetch_is_asked_again_after_dep_refetch_ms_and_buffered_deps_never() -> None:
    """Envelopes pushed ahead of their past wait in the causal buffer, and the node asks the
    pusher for the past it lacks: only what nobody here holds (not the waiting envelopes
    themselves, which it would only receive again). When that request or its answer is lost,
    a later waiting arrival asks again once ``dep_refetch_ms`` has passed, not before, so what
    waits is held for about that long rather than ``fetch_hedge_ms``."""
    log = _log_of(MESH.nodes[1], "d", 5)
    limits = SyncLimits(dep_refetch_ms=500, fetch_hedge_ms=2_000, request_timeout_ms=10_000)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(MESH.nodes[1], MESH.mesh_id).open(core, "p", 0)

    pusher = _pusher(core)

    def push(env: Envelope, now: int) -> list[list[bytes]]:
        return [m.ids for m in pusher(env, now)]

    assert push(log[2], 0) == [[log[1].id]]  # seq 3 lacks seq 2 (whose answer gets lost)
    assert push(log[3], 300) == []  # seq 4 waits on seq 3 (buffered): seq 2 was asked 300 ms ago
    assert push(log[4], 600) == [[log[1].id]]  # 600 ms: seq 2 again, never seqs 3 and 4
    assert core.admission.buffered["causal"] == 3
    for env in log[:2]:  # the past comes at last (here as a push)
        core.handle(Received("p", encode_message(Envelopes(0, [env.raw], False))), 610)
    core.handle(Flush(), 610)
    assert set(core.admission.records) == {e.id for e in log}
    assert core.admission.buffered["causal"] == 0


@pytest.mark.parametrize(
    ("answer_ms", "early_ms", "due_ms"),
    [
        (20, 40, 70),  # answered in 20 ms: srtt 20 + 4 x rttvar 10 = 60 ms
        (1, 30, 55),  # answered in 1 ms: the 50 ms floor (dep_refetch_min_ms)
    ],
)
def test_a_lost_dep_fetch_is_asked_again_after_the_peers_answer_time(
    answer_ms: int, early_ms: int, due_ms: int
) -> None:
    """Once the peer has answered a request, a dep it was asked for and that is still
    missing is asked again after the peer's retransmission timeout (smoothed answer time plus
    four deviations), not the fixed ``dep_refetch_ms``, but never sooner than
    ``dep_refetch_min_ms``."""
    log = _log_of(MESH.nodes[1], "r", 6)
    limits = SyncLimits(dep_refetch_ms=500, dep_refetch_min_ms=50, request_timeout_ms=10_000)
    core = MeshCore(MESH.nodes[0], MESH.genesis, MemoryStore(), random.Random(0), limits=limits)
    PeerScript(MESH.nodes[1], MESH.mesh_id).open(core, "p", 0)
    push = _pusher(core)

    (first,) = push(log[1], 0)  # seq 2 lacks seq 1; the peer answers in answer_ms
    assert first.ids == [log[0].id]
    answer = Envelopes(first.req, [log[0].raw], False)
    core.handle(Received("p", encode_message(answer)), answer_ms)
    core.handle(Flush(), answer_ms)
    assert core.sessions["p"].srtt_ms == answer_ms

    assert [m.ids for m in push(log[3], 100)] == [[log[2].id]]  # seq 4 lacks seq 3: lost
    assert push(log[4], 100 + early_ms) == []  # too soon to ask again
    assert [m.ids for m in push(log[5], 100 + due_ms)] == [[log[2].id]]
