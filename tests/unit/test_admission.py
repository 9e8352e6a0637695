"""Admission: forged, malformed, crashing, erasing and equivocating updates, and membership.

Every malicious payload here is validly signed by a member node, so it gets past the signature
check and must be stopped by the grammar, the claims checks or the live-set rules.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memmesh.admission as admission_module
from memmesh.admission import Admission, AdmissionLimits, NotAMember, Status, claims_digest
from memmesh.claims import CLAIM_ID_TAG, Claim, decode_claim
from memmesh.crypto import SigningKey
from memmesh.envelope import Envelope, EnvelopeDetached, decode_envelope, seal
from memmesh.errors import LocalError, Reason, Rejected, StorageError, StorageFull
from memmesh.ids import ZERO_ID, LogId, tagged_hash
from memmesh.membership import Role
from memmesh.merkle import merkle_root
from memmesh.store import LmdbStore, MemoryDisk, MemoryStore, WriteBatch
from memmesh.testing import MeshFixture, scaled
from memmesh.ydecode import GrammarItem, client_id, decode_update, encode_update, item_key

CRASHERS = sorted((Path(__file__).parents[1] / "fixtures" / "pycrdt-crashers").glob("*.bin"))


def _varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _varstring(text: str) -> bytes:
    raw = text.encode()
    return _varuint(len(raw)) + raw


def _struct(key: str, value: bytes, *, info: int = 0x23, root: str = "claims") -> bytes:
    return (
        bytes([info]) + b"\x01" + _varstring(root) + _varstring(key) + _varuint(len(value)) + value
    )


def _update(client: int, clock: int, structs: list[bytes], deletes: bytes = b"\x00") -> bytes:
    return (
        b"\x01"
        + _varuint(len(structs))
        + _varuint(client)
        + _varuint(clock)
        + b"".join(structs)
        + deletes
    )


def _sign(
    node: SigningKey,
    mesh: MeshFixture,
    payload: bytes,
    *,
    claims: list[Claim] = (),  # type: ignore[assignment]
    seq: int = 1,
    prev: bytes = ZERO_ID,
    deps: tuple[bytes, ...] = (),
) -> Envelope:
    return seal(
        node,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=seq,
        prev=prev,
        deps=deps,
        hlc=1,
        claims_root=merkle_root([c.id for c in claims]),
        payload=payload,
    )


@pytest.fixture
def mesh() -> MeshFixture:
    return MeshFixture("admission")


def test_valid_local_write_reaches_a_peer(mesh: MeshFixture) -> None:
    a, b = Admission(MemoryStore(), mesh.genesis), Admission(MemoryStore(), mesh.genesis)
    claim = mesh.claim(mesh.writers[0], "k", 1)
    env = a.write_local(mesh.nodes[0], [claim], hlc=5)
    outcome = b.receive(env.raw)
    assert outcome.status is Status.INTEGRATED
    assert b.replica.get(item_key(client_id(env.author, 1), claim.id)) == claim.raw
    assert [c.id for c in b.live_claims()] == [claim.id]
    assert b.claims_digest() == a.claims_digest()
    assert b.receive(env.raw).status is Status.DUPLICATE


def test_claims_hold_their_bytes_inside_their_envelope(mesh: MeshFixture, tmp_path: Path) -> None:
    """Written, received or loaded from the store, a record's claims point into the envelope's
    bytes (one copy of each claim's bytes, not two), and slice out exactly their own bytes."""
    made = [mesh.claim(mesh.writers[0], f"k{i}", {"n": i, "tier": "gold"}) for i in range(3)]
    made.append(mesh.claim(mesh.writers[1], "big", "x" * 300))  # a two-byte length varuint
    expected = [c.raw for c in made]  # `made` lend their bytes to a's envelope from now on

    def check(replica: Admission) -> None:
        record = replica.records[env.id]
        assert [c.id for c in record.claims] == [c.id for c in made]
        for claim, original, raw in zip(record.claims, made, expected, strict=True):
            held = record.envelope.held
            # The bytes once, in the envelope's (or read again from the store when the
            # envelope is no longer held in memory).
            assert claim.held is held if held is not None else callable(claim.held)
            assert claim.raw == raw
            assert tagged_hash(CLAIM_ID_TAG, claim.raw) == claim.id
            assert claim == original

    with LmdbStore(tmp_path / "a") as store:
        a = Admission(store, mesh.genesis)
        env = a.write_local(mesh.nodes[0], made, hlc=5)
        b = Admission(MemoryStore(), mesh.genesis)
        assert b.receive(env.raw).status is Status.INTEGRATED
        check(a)
        check(b)
    with LmdbStore(tmp_path / "a") as store:
        check(Admission.open(store, mesh.genesis))
    # Values of one schema share their member names across claims.
    names = [next(iter(c.value)) for c in b.records[env.id].claims[:3]]  # type: ignore[arg-type]
    assert names == ["n"] * 3 and names[0] is names[1] is names[2]


def test_decode_claim_refuses_a_held_offset_that_does_not_hold_the_claim(
    mesh: MeshFixture,
) -> None:
    claim = mesh.claim(mesh.writers[0], "k", 1)
    raw = claim.raw
    assert decode_claim(raw, held=(b"xx" + raw, 2)).held[2:] == raw
    with pytest.raises(ValueError, match="not where"):
        decode_claim(raw, held=(b"xxx" + raw, 2))
    with pytest.raises(ValueError, match="not where"):
        claim.move_into(b"xxx" + raw, 2)
    assert claim.held is raw  # a refused move changes nothing
    claim.move_into(b"xx" + raw, 2)
    assert claim.raw == raw and claim.at == 2


@pytest.mark.parametrize("crasher", CRASHERS, ids=lambda p: p.name)
def test_signed_pycrdt_crashers_are_rejected_and_nothing_changes(
    mesh: MeshFixture, crasher: Path
) -> None:
    store = MemoryStore()
    admission = Admission(store, mesh.genesis)
    good = admission.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[0])], hlc=1)
    before = admission.replica.encode_state()
    poison = _sign(mesh.nodes[0], mesh, crasher.read_bytes())
    outcome = admission.receive(poison.raw)
    assert outcome.status is Status.REJECTED
    assert outcome.reason is not None
    assert store.get_log_entry(poison.log, poison.seq) is None
    assert store.head(poison.log) is None
    assert poison.id not in admission.records
    assert admission.replica.encode_state() == before  # the live document still encodes
    later = admission.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[0], "k2")], hlc=2)
    assert later.seq == good.seq + 1


def _grammar_cases(mesh: MeshFixture) -> tuple[Claim, dict[str, tuple[bytes, Reason]]]:
    """Payloads for a fresh log of node 0, each breaking one grammar rule."""
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    mine, theirs = client_id(node0.public_key, 1), client_id(node1.public_key, 1)
    claim = mesh.claim(mesh.writers[0], "k", "v")
    victim = mesh.claim(mesh.writers[1], "k", "theirs")
    own = _struct(item_key(mine, claim.id), claim.raw)
    return claim, {
        # The concurrent map-set erasure: re-setting another author's key would let Yjs keep
        # only one of the two (the higher client id), erasing the victim's claim.
        "erase another author's key": (
            _update(mine, 0, [_struct(item_key(theirs, victim.id), claim.raw)]),
            Reason.FOREIGN_KEY,
        ),
        "delete anything": (
            _update(mine, 0, [own], deletes=b"\x01" + _varuint(theirs) + b"\x01\x00\x01"),
            Reason.HAS_DELETES,
        ),
        "another client id": (_update(theirs, 0, [own]), Reason.WRONG_CLIENT),
        "two client sections": (
            b"\x02" + _update(mine, 0, [own])[1:-1] + _update(theirs, 0, [own])[1:],
            Reason.WRONG_CLIENT,
        ),
        "clock gap": (_update(mine, 3, [own]), Reason.CLOCK_GAP),
        "trailing bytes": (_update(mine, 0, [own]) + b"\x00", Reason.TRAILING_BYTES),
        "nested type": (
            _update(mine, 0, [_struct(item_key(mine, claim.id), claim.raw, info=0x27)]),
            Reason.NESTED_TYPE,
        ),
        "second root": (
            _update(mine, 0, [_struct(item_key(mine, claim.id), claim.raw, root="other")]),
            Reason.SECOND_ROOT,
        ),
        "value does not hash to its claim id": (
            _update(mine, 0, [_struct(item_key(mine, victim.id), claim.raw)]),
            Reason.CLAIM_ID_MISMATCH,
        ),
        "an origin": (
            _update(mine, 0, [bytes([0xA3]) + _varuint(theirs) + b"\x00" + own[1:]]),
            Reason.HAS_ORIGIN,
        ),
        "string content": (
            _update(mine, 0, [_struct(item_key(mine, claim.id), claim.raw, info=0x24)]),
            Reason.BAD_CONTENT,
        ),
        "array item (no map key)": (
            _update(mine, 0, [bytes([0x03]) + b"\x01" + _varstring("claims") + own[-420:]]),
            Reason.NOT_MAP_ENTRY,
        ),
        "one claim twice": (_update(mine, 0, [own, own]), Reason.DUPLICATE_CLAIM),
        "non-minimal varint": (
            b"\x01\x81\x00" + _update(mine, 0, [own])[2:],
            Reason.BAD_VARINT,
        ),
    }


def test_each_grammar_violation_has_its_own_reason(mesh: MeshFixture) -> None:
    claim, cases = _grammar_cases(mesh)
    for name, (payload, reason) in cases.items():
        store = MemoryStore()
        admission = Admission(store, mesh.genesis)
        env = _sign(mesh.nodes[0], mesh, payload, claims=[claim])  # a correct claims root
        outcome = admission.receive(env.raw)
        assert (outcome.status, outcome.reason) == (Status.REJECTED, reason), name
        assert store.get_log_entry(env.log, env.seq) is None, name
        assert len(admission.replica) == 0, name
    distinct = {reason for _, reason in cases.values()}
    assert len(distinct) >= 12


def test_clock_overlap_and_replayed_claim_are_rejected(mesh: MeshFixture) -> None:
    admission = Admission(MemoryStore(), mesh.genesis)
    node = mesh.nodes[0]
    claim = mesh.claim(mesh.writers[0])
    first = admission.write_local(node, [claim], hlc=1)
    mine = client_id(node.public_key, 1)
    again = mesh.claim(mesh.writers[0], "other")
    overlap = _sign(
        node,
        mesh,
        encode_update(mine, 0, [(again.id, again.raw)]),
        claims=[again],
        seq=2,
        prev=first.id,
    )
    outcome = admission.receive(overlap.raw)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.CLOCK_OVERLAP)
    replay = _sign(
        node,
        mesh,
        encode_update(mine, 1, [(claim.id, claim.raw)]),
        claims=[claim],
        seq=2,
        prev=first.id,
    )
    outcome = admission.receive(replay.raw)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.DUPLICATE_CLAIM)


def test_claims_root_and_claim_signature_are_checked(mesh: MeshFixture) -> None:
    admission = Admission(MemoryStore(), mesh.genesis)
    node = mesh.nodes[0]
    mine = client_id(node.public_key, 1)
    claim = mesh.claim(mesh.writers[0])
    wrong_root = _sign(node, mesh, encode_update(mine, 0, [(claim.id, claim.raw)]))
    assert admission.receive(wrong_root.raw).reason is Reason.BAD_CLAIMS_ROOT
    forged = bytearray(claim.raw)
    forged[-1] ^= 1  # the agent's signature
    forged_id = tagged_hash(CLAIM_ID_TAG, bytes(forged))
    env = seal(
        node,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=1,
        prev=ZERO_ID,
        hlc=1,
        claims_root=merkle_root([forged_id]),
        payload=encode_update(mine, 0, [(forged_id, bytes(forged))]),
    )
    assert admission.receive(env.raw).reason is Reason.BAD_CLAIM_SIGNATURE


def test_signatures_checked_skips_the_signatures_and_nothing_else(mesh: MeshFixture) -> None:
    """For a verifier that timed the signature pass itself: a forged signature then goes
    through (the caller vouched for it), every other check still refuses, and the next call
    checks signatures again."""
    node = mesh.nodes[0]
    mine = client_id(node.public_key, 1)
    claim = mesh.claim(mesh.writers[0])
    good = _sign(node, mesh, encode_update(mine, 0, [(claim.id, claim.raw)]), claims=[claim])
    forged = bytearray(good.raw)
    forged[-1] ^= 1  # the node's signature (not part of the id)
    trusting = Admission(MemoryStore(), mesh.genesis)
    assert trusting.receive(bytes(forged), signatures_checked=True).status is Status.INTEGRATED
    other = Admission(MemoryStore(), mesh.genesis)
    assert other.receive(bytes(forged)).reason is Reason.BAD_SIGNATURE
    wrong_root = _sign(node, mesh, encode_update(mine, 0, [(claim.id, claim.raw)]))
    assert other.receive(wrong_root.raw, signatures_checked=True).reason is Reason.BAD_CLAIMS_ROOT
    later = mesh.claim(mesh.writers[0], "next")
    second = seal(
        node,
        mesh_id=mesh.mesh_id,
        epoch=1,
        seq=2,
        prev=good.id,
        hlc=2,
        claims_root=merkle_root([later.id]),
        payload=encode_update(mine, 1, [(later.id, later.raw)]),
    )
    again = bytearray(second.raw)
    again[-1] ^= 1
    assert trusting.receive(bytes(again)).reason is Reason.BAD_SIGNATURE


# -- equivocation ---------------------------------------------------------------------------


def _equivocation(mesh: MeshFixture) -> tuple[list[Envelope], Envelope, Envelope]:
    """node0 signs two different seq 2 (a2 and b2) after a common seq 1; a3 follows a2;
    node1's envelope c depends on b2, so b2 must satisfy deps although it is excluded."""
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    x, y = Admission(MemoryStore(), mesh.genesis), Admission(MemoryStore(), mesh.genesis)
    e1 = x.write_local(node0, [mesh.claim(mesh.writers[0], "a", 1)], hlc=1)
    assert y.receive(e1.raw).status is Status.INTEGRATED
    a2 = x.write_local(node0, [mesh.claim(mesh.writers[0], "a", 2)], hlc=2)
    a3 = x.write_local(node0, [mesh.claim(mesh.writers[0], "a", 3)], hlc=3)
    b2 = y.write_local(node0, [mesh.claim(mesh.writers[0], "a", "fork")], hlc=2)
    c = y.write_local(node1, [mesh.claim(mesh.writers[1], "b", 1)], hlc=4)
    assert b2.id in c.deps
    assert (a2.seq, b2.seq) == (2, 2) and a2.id != b2.id
    return [e1, a2, a3, b2, c], a2, b2


def test_equivocation_gives_one_live_set_in_every_order(mesh: MeshFixture) -> None:
    envelopes, a2, b2 = _equivocation(mesh)
    digests, live_sets, frontiers, sides = set(), set(), set(), set()
    for order in itertools.permutations(envelopes):
        store = MemoryStore()
        replica = Admission(store, mesh.genesis)
        for env in order:
            assert replica.receive(env.raw).status is not Status.REJECTED
        assert not replica.missing() and replica.buffered["causal"] == 0
        assert sorted(replica.records) == sorted(e.id for e in envelopes)  # all stored
        evidence = list(store.iter_evidence())
        assert len(evidence) == 1
        assert a2.raw in evidence[0][1] and b2.raw in evidence[0][1]
        assert replica.forks == {a2.log: 2}
        digests.add(replica.claims_digest())
        live_sets.add(tuple(c.id for c in replica.live_claims()))
        frontiers.add(tuple(replica.frontier()))
        sides.add(tuple(replica.side_tips()))
    assert len(digests) == 1 and len(live_sets) == 1
    (live,) = live_sets
    assert len(live) == 2  # e1's claim and c's claim; everything of node0 from seq 2 is out
    # Whichever branch came first, node0's log is its prefix below the fork, and both branches
    # are side branches: the same frontier everywhere.
    (frontier,) = frontiers
    assert dict(frontier)[a2.log].seq == 1
    assert sides == {tuple(sorted((envelopes[2].id, b2.id)))}  # a3 and b2, the two tips


def _frontier_from_scratch(replica: Admission) -> list[tuple[LogId, tuple[int, bytes]]]:
    return [(log, (len(ids), ids[-1])) for log, ids in sorted(replica.logs.items())]


def test_the_frontier_follows_every_change_to_the_logs(mesh: MeshFixture) -> None:
    """``frontier`` reuses its sorted log order and its heads between calls: asked after
    every step (new logs, appends, a log cut at a fork, a commit that fails and is put back),
    it is always what the logs say now."""
    envelopes, _, b2 = _equivocation(mesh)
    failed = 0
    for order in itertools.permutations(envelopes):
        store = FlakyStore()
        replica = Admission(store, mesh.genesis)
        for env in order:
            if env is b2:  # a commit that fails (when b2 is ready), undone; then for real
                store.fail_next = True
                try:
                    replica.receive_many([env.raw])
                except StorageFull:
                    failed += 1
                store.fail_next = False
                assert replica.frontier() == _frontier_from_scratch(replica)
            replica.receive(env.raw)
            assert replica.frontier() == _frontier_from_scratch(replica)
    assert failed >= 1


def _live_from_scratch(replica: Admission) -> list[bytes]:
    live: set[bytes] = set()
    for record in replica.records.values():
        if replica.exclusion(record) is None:
            live.update(
                c.id
                for c in record.claims
                if replica.membership.agent_status(c.agent, c.aseq) is None
            )
    return sorted(live)


def _check_live(replica: Admission) -> None:
    expected = _live_from_scratch(replica)
    assert [c.id for c in replica.live_claims()] == expected
    assert replica.claims_digest() == claims_digest(expected)


def test_the_live_set_follows_every_change(mesh: MeshFixture) -> None:
    """``live_claims`` and ``claims_digest`` keep their answer between calls and only look at
    newer records while nothing else changed: asked after every step (appends, a fork that
    excludes a log, a commit that fails and is put back, revocations that exclude claims
    already counted, envelopes carrying many claims), they are what a computation from
    scratch gives."""
    envelopes, _, b2 = _equivocation(mesh)
    for order in itertools.islice(itertools.permutations(envelopes), 0, None, 7):
        store = FlakyStore()
        replica = Admission(store, mesh.genesis)
        for env in order:
            if env is b2:
                store.fail_next = True
                with contextlib.suppress(StorageFull):
                    replica.receive_many([env.raw])
                store.fail_next = False
                _check_live(replica)
            replica.receive(env.raw)
            _check_live(replica)
    src = Admission(MemoryStore(), mesh.genesis)
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    steps = [
        [mesh.claim(mesh.writers[0], f"k{i}", i) for i in range(3)],
        [mesh.claim(mesh.writers[1], f"m{i}", i) for i in range(300)],  # re-sorts the whole
        [mesh.revoke_agent(mesh.writers[1].public_key, 100)],
        [mesh.claim(mesh.writers[0], "after", 1)],
    ]
    replica = Admission(MemoryStore(), mesh.genesis)
    sizes = []
    for i, claims in enumerate(steps):
        env = src.write_local(node0 if i != 1 else node1, claims, hlc=i + 1)
        replica.receive(env.raw)
        _check_live(replica)
        _check_live(src)
        sizes.append(len(replica.live_claims()))
    assert sizes[:2] == [3, 303]
    assert 4 < sizes[2] < 303  # the revocation took counted claims out (and is live itself)
    assert sizes[3] == sizes[2] + 1


def test_a_failed_commit_puts_back_a_log_cut_at_a_fork(mesh: MeshFixture) -> None:
    envelopes, a2, b2 = _equivocation(mesh)
    e1, _, a3, _, _ = envelopes
    store = FlakyStore()
    replica = Admission(store, mesh.genesis)
    for env in (e1, a2, a3):
        replica.receive(env.raw)
    before = (replica.frontier(), replica.side_tips(), replica.item_keys.snapshot())
    store.fail_next = True
    with pytest.raises(StorageFull):
        replica.receive_many([b2.raw])
    assert (replica.frontier(), replica.side_tips(), replica.item_keys.snapshot()) == before
    assert not replica.forks and not any(r.side for r in replica.records.values())
    assert replica.receive(b2.raw).status is Status.INTEGRATED
    assert replica.logs[a2.log] == [e1.id] and replica.side_tips() == sorted((a3.id, b2.id))


def test_a_node_whose_own_log_equivocates_takes_no_more_writes(mesh: MeshFixture) -> None:
    envelopes, _, b2 = _equivocation(mesh)
    replica = Admission(MemoryStore(), mesh.genesis)
    for env in envelopes:
        replica.receive(env.raw)
    with pytest.raises(LocalError, match="equivocates from seq 2"):
        replica.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "late")], hlc=9)
    assert b2.id in replica.records  # and nothing else changed
    assert replica.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[1], "ok")], hlc=9)


def test_equivocation_survives_restart(mesh: MeshFixture) -> None:
    envelopes, a2, _ = _equivocation(mesh)
    disk = MemoryDisk()
    replica = Admission(MemoryStore(disk), mesh.genesis)
    for env in reversed(envelopes):
        replica.receive(env.raw)
    again = Admission.open(MemoryStore(disk), mesh.genesis)
    assert again.claims_digest() == replica.claims_digest()
    assert again.frontier() == replica.frontier()
    assert again.forks == {a2.log: 2}


# -- membership -----------------------------------------------------------------------------


def test_revocation_cutoffs_hold_in_every_order(mesh: MeshFixture) -> None:
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    writer = mesh.writers[0]
    src = Admission(MemoryStore(), mesh.genesis)
    node1_envs = [
        src.write_local(node1, [mesh.claim(writer, f"n1-{i}", i)], hlc=i) for i in range(4)
    ]
    agent_claims = [mesh.claim(mesh.writers[1], f"w1-{i}", i) for i in range(3)]
    w1_env = src.write_local(node0, agent_claims, hlc=10)
    revoke = src.write_local(
        node0,
        [
            mesh.revoke_node(node1.public_key, 1, 2),
            mesh.revoke_agent(mesh.writers[1].public_key, 1),
        ],
        hlc=11,
    )
    envelopes = [*node1_envs, w1_env, revoke]
    expected = None
    for i, order in enumerate(itertools.permutations(envelopes)):
        if i % 7:  # 720 orders; every 7th keeps the test quick and still covers all positions
            continue
        replica = Admission(MemoryStore(), mesh.genesis)
        for env in order:
            replica.receive(env.raw)
        live = {(c.key) for c in replica.live_claims()}
        if expected is None:
            expected = live
        assert live == expected
    assert expected is not None
    assert {"n1-0", "n1-1", "w1-0"} <= expected
    assert not {"n1-2", "n1-3", "w1-1", "w1-2"} & expected
    excluded = [src.exclusion(src.records[e.id]) for e in node1_envs]
    assert excluded == [None, None, Reason.REVOKED, Reason.REVOKED]


def _mutual_revocation(mesh: MeshFixture) -> list[Envelope]:
    """Admin A (genesis) admits admin B; then A revokes B and B revokes A, concurrently."""
    admin_b = SigningKey(b"\x42" * 32)
    x = Admission(MemoryStore(), mesh.genesis)
    admit = x.write_local(mesh.nodes[0], [mesh.admit(admin_b.public_key, Role.ADMIN)], hlc=1)
    y = Admission(MemoryStore(), mesh.genesis)
    y.receive(admit.raw)
    a_revokes_b = x.write_local(mesh.nodes[0], [mesh.revoke_agent(admin_b.public_key, 0)], hlc=2)
    b_revokes_a = y.write_local(
        mesh.nodes[1], [mesh.revoke_agent(mesh.admin.public_key, 1, by=admin_b)], hlc=2
    )
    assert a_revokes_b.id not in b_revokes_a.deps and b_revokes_a.id not in a_revokes_b.deps
    return [admit, a_revokes_b, b_revokes_a]


def test_two_admins_revoking_each_other_end_identically_in_every_order(mesh: MeshFixture) -> None:
    envelopes = _mutual_revocation(mesh)
    outcomes = set()
    for order in itertools.permutations(envelopes):
        replica = Admission(MemoryStore(), mesh.genesis)
        for env in order:
            replica.receive(env.raw)
        state = replica.membership.state
        revoked = tuple(sorted(k.hex()[:8] for k, m in state.items() if m.revoked))
        outcomes.add((revoked, tuple(sorted(replica.membership.void)), replica.claims_digest()))
    assert len(outcomes) == 1
    ((revoked, void, _),) = outcomes
    assert len(revoked) == 1  # exactly one admin loses, the same one everywhere
    assert len(void) == 1  # and the loser's revocation is void


def test_envelope_before_its_authors_admit_waits_then_is_admitted(mesh: MeshFixture) -> None:
    newcomer = SigningKey(b"\x17" * 32)
    source = Admission(MemoryStore(), mesh.genesis)
    admit = source.write_local(mesh.nodes[0], [mesh.admit(newcomer.public_key, Role.NODE)], hlc=1)
    claim = mesh.claim(mesh.writers[0], "from-newcomer")
    mine = client_id(newcomer.public_key, 1)
    early = _sign(newcomer, mesh, encode_update(mine, 0, [(claim.id, claim.raw)]), claims=[claim])
    replica = Admission(MemoryStore(), mesh.genesis)
    waiting = replica.receive(early.raw)
    assert waiting.status is Status.WAITING_MEMBER
    assert replica.buffered["pending_member"] == 1
    released = replica.receive(admit.raw)
    assert released.status is Status.INTEGRATED
    assert released.admitted == (admit.id, early.id)
    assert replica.buffered["pending_member"] == 0
    assert claim.id in {c.id for c in replica.live_claims()}


def test_pending_buffer_is_bounded_and_overflow_reported(mesh: MeshFixture) -> None:
    replica = Admission(MemoryStore(), mesh.genesis, limits=AdmissionLimits(pending_buffer_max=2))
    outcomes = []
    for i in range(3):
        stranger = SigningKey(bytes([0x30 + i]) * 32)
        claim = mesh.claim(mesh.writers[0], f"s{i}")
        payload = encode_update(client_id(stranger.public_key, 1), 0, [(claim.id, claim.raw)])
        outcomes.append(replica.receive(_sign(stranger, mesh, payload, claims=[claim]).raw))
    assert [o.status for o in outcomes] == [
        Status.WAITING_MEMBER,
        Status.WAITING_MEMBER,
        Status.REJECTED,
    ]
    assert outcomes[2].reason is Reason.PENDING_BUFFER_FULL
    assert replica.rejected[Reason.PENDING_BUFFER_FULL] == 1
    assert replica.buffered["pending_member"] == 2


def test_causal_buffer_is_bounded_and_reports_what_to_fetch(mesh: MeshFixture) -> None:
    source = Admission(MemoryStore(), mesh.genesis)
    chain = [
        source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], f"k{i}")], hlc=i + 1)
        for i in range(5)
    ]
    replica = Admission(MemoryStore(), mesh.genesis, limits=AdmissionLimits(causal_buffer_max=3))
    outcomes = [replica.receive(env.raw) for env in reversed(chain[1:])]
    assert [o.status for o in outcomes] == [Status.WAITING_CAUSAL] * 3 + [Status.REJECTED]
    assert outcomes[0].missing == (chain[3].id,)
    assert outcomes[3].reason is Reason.CAUSAL_BUFFER_FULL
    assert replica.rejected[Reason.CAUSAL_BUFFER_FULL] == 1
    assert replica.missing() == [chain[1].id]  # held ones are not "missing"
    assert replica.receive(chain[0].raw).admitted == (chain[0].id,)
    done = replica.receive(chain[1].raw)
    assert done.admitted == tuple(env.id for env in chain[1:])
    assert replica.buffered["causal"] == 0 and replica.missing() == []
    assert replica.claims_digest() == source.claims_digest()


def test_a_long_chain_delivered_backwards_does_not_recurse(mesh: MeshFixture) -> None:
    source = Admission(MemoryStore(), mesh.genesis)
    chain = [
        source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], f"k{i}")], hlc=i + 1)
        for i in range(1500)
    ]
    limits = AdmissionLimits(causal_per_author_max=2000)
    replica = Admission(MemoryStore(), mesh.genesis, limits=limits)
    for env in reversed(chain[1:]):
        assert replica.receive(env.raw).status is Status.WAITING_CAUSAL
    outcome = replica.receive(chain[0].raw)
    assert len(outcome.admitted) == 1500
    assert replica.claims_digest() == source.claims_digest()


def test_a_node_not_admitted_cannot_write(mesh: MeshFixture) -> None:
    admission = Admission(MemoryStore(), mesh.genesis)
    with pytest.raises(NotAMember):
        admission.write_local(SigningKey(b"\x55" * 32), [mesh.claim(mesh.writers[0])], hlc=1)
    assert admission.buffered["pending_member"] == 0


# -- local writes, commit failure, restart --------------------------------------------------


class FlakyStore(MemoryStore):
    """A memory store whose next commit fails on demand (as a full disk would)."""

    fail_next = False

    def commit(self, batch: WriteBatch) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageFull("injected: disk full")
        super().commit(batch)


def test_failed_local_commit_changes_nothing_and_the_next_write_takes_the_seq(
    mesh: MeshFixture,
) -> None:
    store = FlakyStore()
    admission = Admission(store, mesh.genesis)
    node = mesh.nodes[0]
    first = admission.write_local(node, [mesh.claim(mesh.writers[0], "a")], hlc=1)
    state, frontier = admission.replica.encode_state(), admission.frontier()
    digest = admission.claims_digest()
    store.fail_next = True
    with pytest.raises(StorageFull):
        admission.write_local(node, [mesh.claim(mesh.writers[0], "b")], hlc=2)
    assert admission.replica.encode_state() == state
    assert admission.frontier() == frontier
    assert admission.claims_digest() == digest
    second = admission.write_local(node, [mesh.claim(mesh.writers[0], "c")], hlc=3)
    assert (second.seq, second.prev) == (2, first.id)
    assert store.head(LogId(node.public_key, 1)) == second.head


def test_restart_rebuilds_the_same_state(mesh: MeshFixture, tmp_path: Path) -> None:
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    with LmdbStore(tmp_path / "s") as store:
        admission = Admission(store, mesh.genesis)
        for i in range(20):
            node = (node0, node1)[i % 2]
            admission.write_local(node, [mesh.claim(mesh.writers[i % 2], f"k{i % 7}", i)], hlc=i)
        admission.write_local(node0, [mesh.revoke_node(node1.public_key, 1, 4)], hlc=30)
        digest, frontier = admission.claims_digest(), admission.frontier()
        live = len(admission.live_claims())
        keys = admission.replica.keys()
    with LmdbStore(tmp_path / "s") as store:
        again = Admission.open(store, mesh.genesis)
        assert again.claims_digest() == digest
        assert again.frontier() == frontier
        assert len(again.live_claims()) == live < 21
        assert again.replica.keys() == keys
        more = again.write_local(node0, [mesh.claim(mesh.writers[0], "after")], hlc=40)
        assert more.seq == 12


def test_a_start_replays_in_batches_bounded_in_count_and_bytes(
    mesh: MeshFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start replays stored envelopes, and integrates them into the document, a batch at a
    time (a call per envelope cost more than a small envelope), and lets go of each batch's
    bytes before reading the next: 256 envelopes of 120 KB in flight left a node 13 MB larger
    for good. Many small envelopes, then large ones: the same state as before the restart."""
    store = MemoryStore()
    admission = Admission(store, mesh.genesis)
    for i in range(600):  # more than two batches by count
        node = mesh.nodes[i % 2]
        admission.write_local(node, [mesh.claim(mesh.writers[i % 2], f"k{i % 9}", i)], hlc=i)
    for i in range(6):  # about 270 KB each: a few a batch by bytes
        big = [mesh.claim(mesh.writers[0], f"b{i}", "x" * 1500) for _ in range(150)]
        admission.write_local(mesh.nodes[0], big, hlc=1000 + i)
    before = (admission.claims_digest(), admission.frontier(), admission.replica.encode_state())
    batches: list[tuple[int, int]] = []
    receive_many = Admission.receive_many

    def spied(self: Admission, raws: list[bytes], **kwargs: object) -> object:
        batches.append((len(raws), sum(len(raw) for raw in raws)))
        return receive_many(self, raws, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Admission, "receive_many", spied)
    again = Admission.open(store, mesh.genesis)
    assert (again.claims_digest(), again.frontier(), again.replica.encode_state()) == before
    assert sum(count for count, _ in batches) == 606
    assert max(count for count, _ in batches) == admission_module._REPLAY_BATCH
    bound = admission_module._REPLAY_BATCH_BYTES
    assert all(count == 1 or size <= bound for count, size in batches)
    assert any(1 < count < admission_module._REPLAY_BATCH for count, _ in batches)


@settings(max_examples=scaled(200), deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 << 20), max_size=600))
def test_replay_batches_keep_order_and_bounds(sizes: list[int]) -> None:
    batches = list(admission_module._replay_batches(sizes, lambda size: size))
    assert [size for batch in batches for size in batch] == sizes
    for batch in batches:
        assert batch and len(batch) <= admission_module._REPLAY_BATCH
        assert len(batch) == 1 or sum(batch) <= admission_module._REPLAY_BATCH_BYTES
    for batch, after in itertools.pairwise(batches):  # each full before the next starts
        full = len(batch) == admission_module._REPLAY_BATCH
        assert full or sum(batch) + after[0] > admission_module._REPLAY_BATCH_BYTES


def test_group_commit_of_remote_envelopes_is_all_or_nothing(mesh: MeshFixture) -> None:
    source = Admission(MemoryStore(), mesh.genesis)
    envs = [
        source.write_local(mesh.nodes[i % 2], [mesh.claim(mesh.writers[0], f"k{i}")], hlc=i + 1)
        for i in range(10)
    ]
    store = FlakyStore()
    replica = Admission(store, mesh.genesis)
    replica.receive_many([e.raw for e in envs[:3]])
    before = (replica.frontier(), replica.claims_digest(), replica.replica.encode_state())
    commits = store.disk.commits
    store.fail_next = True
    with pytest.raises(StorageFull):
        replica.receive_many([e.raw for e in reversed(envs[3:])])  # chained inside the batch
    assert (replica.frontier(), replica.claims_digest(), replica.replica.encode_state()) == before
    assert sorted(replica.records) == sorted(e.id for e in envs[:3])
    assert store.disk.commits == commits
    outcomes = replica.receive_many([e.raw for e in reversed(envs[3:])])
    assert store.disk.commits == commits + 1  # seven envelopes, one commit
    assert outcomes[-1].admitted == tuple(e.id for e in envs[3:])
    assert replica.claims_digest() == source.claims_digest()
    assert replica.frontier() == source.frontier()


def test_ids_the_caller_hashed_are_not_hashed_again_and_decide_the_same(
    mesh: MeshFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node hashes what it stages and hands the ids over: admission then hashes nothing
    (``envelope_id`` made to fail below), and every outcome is the one it reaches alone,
    duplicates and an oversized envelope (given no id) included."""
    source = Admission(MemoryStore(), mesh.genesis)
    envs = [
        source.write_local(mesh.nodes[i % 2], [mesh.claim(mesh.writers[0], f"h{i}")], hlc=i + 1)
        for i in range(6)
    ]
    oversized = b"\x01" * (AdmissionLimits().envelope.envelope_bytes_max + 1)
    raws = [e.raw for e in envs] + [envs[0].raw, oversized]
    ids: list[bytes | None] = [e.id for e in envs] + [envs[0].id, None]
    alone = Admission(MemoryStore(), mesh.genesis).receive_many(raws)

    def no_hashing(raw: bytes) -> bytes:
        raise AssertionError("admission hashed an envelope whose id it was given")

    monkeypatch.setattr(admission_module, "envelope_id", no_hashing)
    given_ids = Admission(MemoryStore(), mesh.genesis)
    outcomes = given_ids.receive_many(raws, ids=ids)
    summary = [(o.status, o.envelope_id, o.reason, o.admitted) for o in outcomes]
    assert summary == [(o.status, o.envelope_id, o.reason, o.admitted) for o in alone]
    assert [o.status for o in outcomes[-2:]] == [Status.DUPLICATE, Status.REJECTED]
    assert given_ids.claims_digest() == source.claims_digest()


class _Panic(BaseException):
    """What a yrs panic looks like from Python: not an ``Exception``."""


@pytest.mark.parametrize("poisoned", [0, 2, 4])
def test_an_update_pycrdt_panics_on_is_excluded_and_the_rest_of_its_batch_goes_in(
    mesh: MeshFixture, monkeypatch: pytest.MonkeyPatch, poisoned: int
) -> None:
    """The grammar is meant to make this unreachable; if pycrdt still refuses a payload, the
    batch's other envelopes are integrated all the same (one transaction for the batch), the
    refused one is excluded, and the document is rebuilt without it."""
    source = Admission(MemoryStore(), mesh.genesis)
    envs = [
        source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], f"p{i}", i)], hlc=i + 1)
        for i in range(5)
    ]
    bad = envs[poisoned].payload
    apply = pycrdt.Doc.apply_update

    def panicking(doc: pycrdt.Doc, update: bytes) -> None:  # type: ignore[type-arg]
        if update == bad:
            raise _Panic("yrs panicked")
        apply(doc, update)

    monkeypatch.setattr(pycrdt.Doc, "apply_update", panicking)
    replica = Admission(MemoryStore(), mesh.genesis)
    outcomes = replica.receive_many([e.raw for e in envs])
    assert [o.status for o in outcomes] == [Status.INTEGRATED] * 5
    assert [replica.records[e.id].failed for e in envs] == [i == poisoned for i in range(5)]
    assert not replica.replica.poisoned
    map_keys: list[str] = replica.replica.keys()
    held = {key.partition("/")[2] for key in map_keys}
    expected = {c.id.hex() for i, e in enumerate(envs) if i != poisoned for c in _claims_of(e)}
    assert held == expected
    assert replica.exclusion(replica.records[envs[poisoned].id]) is not None
    assert replica.generation > 0


def _claims_of(env: Envelope) -> list[Claim]:
    items = decode_update(env.payload, client=client_id(env.author, env.epoch), start_clock=None)
    return [decode_claim(item.value, verify_signature=False) for item in items]


def test_restart_from_a_checkpoint_plus_the_log_after_it(mesh: MeshFixture) -> None:
    disk = MemoryDisk()
    admission = Admission(MemoryStore(disk), mesh.genesis)
    for i in range(6):
        admission.write_local(mesh.nodes[i % 2], [mesh.claim(mesh.writers[0], f"a{i}")], hlc=i)
    assert admission.checkpoint() == 1
    for i in range(4):
        admission.write_local(mesh.nodes[i % 3], [mesh.claim(mesh.writers[1], f"b{i}")], hlc=9)
    assert admission.checkpoint() == 2
    admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[1], "after")], hlc=20)
    again = Admission.open(MemoryStore(disk), mesh.genesis)
    assert (again.checkpoint_used, again.checkpoint_problem) == (2, None)
    assert again.replica.keys() == admission.replica.keys()
    assert again.claims_digest() == admission.claims_digest()
    assert again.frontier() == admission.frontier()


def test_a_checkpoint_that_does_not_match_the_log_is_not_used(mesh: MeshFixture) -> None:
    disk = MemoryDisk()
    admission = Admission(MemoryStore(disk), mesh.genesis)
    admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "a")], hlc=1)
    other = Admission(MemoryStore(), mesh.genesis)  # a different history of the same mesh
    other.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "z")], hlc=1)
    other.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[0], "y")], hlc=1)
    other.checkpoint()
    disk.checkpoints = dict(other.store.disk.checkpoints)  # type: ignore[attr-defined]
    again = Admission.open(MemoryStore(disk), mesh.genesis)
    assert again.checkpoint_used is None
    assert again.checkpoint_problem is not None and "does not hold" in again.checkpoint_problem
    assert again.replica.keys() == admission.replica.keys()
    assert again.claims_digest() == admission.claims_digest()


def test_a_checkpoint_whose_document_differs_is_not_used(mesh: MeshFixture) -> None:
    disk = MemoryDisk()
    admission = Admission(MemoryStore(disk), mesh.genesis)
    admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "a")], hlc=1)
    number = admission.checkpoint()
    state = admission.replica.encode_state()
    other = Admission(MemoryStore(), mesh.genesis)
    other.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[0], "b")], hlc=1)
    forged_state = other.replica.encode_state()
    data = disk.checkpoints[number]
    assert data.endswith(state)
    prefix = data[: -(len(state) + 4)]
    disk.checkpoints[number] = prefix + len(forged_state).to_bytes(4, "big") + forged_state
    again = Admission.open(MemoryStore(disk), mesh.genesis)
    assert again.checkpoint_used is None
    assert again.checkpoint_problem is not None and "exactly" in again.checkpoint_problem
    assert again.replica.keys() == admission.replica.keys()


def test_admit_chains_are_verifiable_with_only_the_genesis(mesh: MeshFixture) -> None:
    from memmesh.membership import verify_admit_chain

    admin_b = SigningKey(b"\x61" * 32)
    newcomer = SigningKey(b"\x62" * 32)
    admission = Admission(MemoryStore(), mesh.genesis)
    admission.write_local(mesh.nodes[0], [mesh.admit(admin_b.public_key, Role.ADMIN)], hlc=1)
    admission.write_local(
        mesh.nodes[0], [mesh.admit(newcomer.public_key, Role.NODE, by=admin_b)], hlc=2
    )
    chain = admission.admit_chain(newcomer.public_key)
    assert len(chain) == 2
    assert verify_admit_chain(mesh.genesis, chain, newcomer.public_key) is Role.NODE
    assert verify_admit_chain(mesh.genesis, [], mesh.nodes[0].public_key) is Role.NODE
    with pytest.raises(Rejected):
        verify_admit_chain(mesh.genesis, chain[:1], newcomer.public_key)  # stops short
    with pytest.raises(Rejected):
        verify_admit_chain(mesh.genesis, chain, admin_b.public_key)  # not its chain
    stranger = SigningKey(b"\x63" * 32)
    forged = mesh.claim(
        stranger, "x", {"key": newcomer.public_key.hex(), "role": "node"}, type="admit"
    )
    with pytest.raises(Rejected):
        verify_admit_chain(mesh.genesis, [forged.raw], newcomer.public_key)


def _two_branches(
    mesh: MeshFixture, a_claims: list[list[Claim]], b_claims: list[list[Claim]]
) -> tuple[Envelope, list[Envelope], list[Envelope], Admission]:
    """node0 writes e1, then branch A on one replica and branch B on another."""
    node0 = mesh.nodes[0]
    x, y = Admission(MemoryStore(), mesh.genesis), Admission(MemoryStore(), mesh.genesis)
    e1 = x.write_local(node0, [mesh.claim(mesh.writers[0], "base")], hlc=1)
    y.receive(e1.raw)
    a = [x.write_local(node0, claims, hlc=2) for claims in a_claims]
    b = [y.write_local(node0, claims, hlc=2) for claims in b_claims]
    return e1, a, b, y


def test_a_claim_repeated_on_another_branch_is_judged_by_that_branchs_past(
    mesh: MeshFixture,
) -> None:
    shared = mesh.claim(mesh.writers[0], "shared")
    e1, a, b, _ = _two_branches(mesh, [[shared], [mesh.claim(mesh.writers[0], "a3")]], [[shared]])
    node0 = mesh.nodes[0]
    client = client_id(node0.public_key, 1)
    # b3 repeats the claim b2 already carries: a replay within its own branch's past.
    b3 = _sign(
        node0,
        mesh,
        encode_update(client, 2, [(shared.id, shared.raw)]),
        claims=[shared],
        seq=3,
        prev=b[0].id,
    )
    stored, verdicts = set(), set()
    for order in itertools.permutations([e1, *a, *b, b3]):
        replica = Admission(MemoryStore(), mesh.genesis)
        outcomes = {env.id: replica.receive(env.raw) for env in order}
        verdicts.add((b3.id in replica.records, replica.rejected.get(Reason.DUPLICATE_CLAIM)))
        for env in (e1, *a, *b):  # a2 repeats b2's claim too, but it is not in a2's past
            assert outcomes[env.id].status is not Status.REJECTED
        stored.add(tuple(sorted(replica.records)))
    assert verdicts == {(False, 1)}  # refused everywhere (sometimes after waiting for b2)
    assert len(stored) == 1


def test_membership_operations_on_an_equivocating_branch_are_void(mesh: MeshFixture) -> None:
    newcomer = SigningKey(b"\x71" * 32)
    admit = mesh.admit(newcomer.public_key, Role.WRITER)
    e1, a, b, y = _two_branches(mesh, [[mesh.claim(mesh.writers[0], "a")]], [[admit]])
    late = y.write_local(mesh.nodes[1], [mesh.claim(newcomer, "by-newcomer")], hlc=3)
    results = set()
    for order in itertools.permutations([e1, *a, *b, late]):
        replica = Admission(MemoryStore(), mesh.genesis)
        for env in order:
            replica.receive(env.raw)
        assert admit.id in replica.membership.void
        live = {c.key for c in replica.live_claims()}
        assert "by-newcomer" not in live
        results.add(replica.claims_digest())
    assert len(results) == 1


def test_true_is_not_version_one() -> None:
    from memmesh.canonical import canonical_bytes
    from memmesh.claims import CLAIM_SIGNATURE_DOMAIN, decode_claim
    from memmesh.wire import Writer

    mesh = MeshFixture("bools")
    claim = mesh.claim(mesh.writers[0])
    body = json.loads(claim.raw[5:-64])
    body["v"] = True
    data = canonical_bytes(body)
    w = Writer()
    w.u8(1)
    w.u32(len(data))
    w.raw(data)
    w.raw(mesh.writers[0].sign(CLAIM_SIGNATURE_DOMAIN, data))
    with pytest.raises(Rejected) as info:
        decode_claim(w.getvalue())
    assert info.value.reason is Reason.BAD_CLAIM


def test_keys_nobody_admitted_cannot_fill_the_causal_buffer(mesh: MeshFixture) -> None:
    limits = AdmissionLimits(
        causal_buffer_max=64, causal_per_author_max=8, causal_unadmitted_max=16
    )
    replica = Admission(MemoryStore(), mesh.genesis, limits=limits)
    claim = mesh.claim(mesh.writers[0], "junk")
    junk = []
    for i in range(40):  # 40 fresh keys, each claiming a dep nobody will ever send
        stranger = SigningKey(bytes([i + 1]) * 32)
        payload = encode_update(client_id(stranger.public_key, 1), 0, [(claim.id, claim.raw)])
        env = _sign(stranger, mesh, payload, claims=[claim], deps=(bytes([0xEE]) * 32,))
        junk.append(replica.receive(env.raw).status)
    assert junk.count(Status.WAITING_CAUSAL) == 16
    assert replica.rejected[Reason.CAUSAL_BUFFER_FULL] == 24
    # An honest member's envelope that arrives before its dep still gets a place.
    source = Admission(MemoryStore(), mesh.genesis)
    first = source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "a")], hlc=1)
    second = source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "b")], hlc=2)
    assert replica.receive(second.raw).status is Status.WAITING_CAUSAL
    # ...but one member cannot take more than its own share either.
    flood = Admission(MemoryStore(), mesh.genesis, limits=limits)
    chain = [
        source.write_local(mesh.nodes[1], [mesh.claim(mesh.writers[1], f"f{i}")], hlc=3 + i)
        for i in range(12)
    ]
    statuses = [flood.receive(env.raw).status for env in chain[1:]]
    assert statuses.count(Status.WAITING_CAUSAL) == 8
    flood.receive_many([first.raw, second.raw])
    released = flood.receive(chain[0].raw).admitted
    assert released == tuple(env.id for env in chain[:9])  # the refused ones are fetched later
    assert flood.buffered["causal"] == 0


@settings(max_examples=scaled(40), deadline=None)
@given(st.data())
def test_property_mutual_revocation_converges_under_any_delivery(data: st.DataObject) -> None:
    mesh = MeshFixture("mutual")
    envelopes = _mutual_revocation(mesh)
    source = Admission(MemoryStore(), mesh.genesis)
    for env in envelopes:
        source.receive(env.raw)
    extra = [  # unrelated traffic, some of it signed by the two admins
        source.write_local(
            mesh.nodes[i % 3],
            [mesh.claim((mesh.writers[0], mesh.admin)[i % 2], f"x{i}", i)],
            hlc=10 + i,
        )
        for i in range(data.draw(st.integers(0, 4)))
    ]
    results = set()
    for _ in range(3):
        order = data.draw(st.permutations([*envelopes, *extra]))
        chunk = data.draw(st.integers(1, 4))
        replica = Admission(MemoryStore(), mesh.genesis)
        for i in range(0, len(order), chunk):
            replica.receive_many([env.raw for env in order[i : i + chunk]])
        state = replica.membership.state
        results.add(
            (
                tuple(sorted(k for k, m in state.items() if m.revoked)),
                tuple(sorted(replica.membership.void)),
                replica.claims_digest(),
            )
        )
    assert len(results) == 1
    assert results == {
        (
            tuple(sorted(k for k, m in source.membership.state.items() if m.revoked)),
            tuple(sorted(source.membership.void)),
            source.claims_digest(),
        )
    }


def test_a_new_epoch_names_an_earlier_epoch_of_the_same_key(mesh: MeshFixture) -> None:
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    admission = Admission(MemoryStore(), mesh.genesis)
    old = admission.write_local(node0, [mesh.claim(mesh.writers[0], "e1")], hlc=1)
    other = admission.write_local(node1, [mesh.claim(mesh.writers[0], "n1")], hlc=2)

    def epoch2(prev: bytes, key: str) -> Envelope:
        claim = mesh.claim(mesh.writers[0], key)
        payload = encode_update(client_id(node0.public_key, 2), 0, [(claim.id, claim.raw)])
        return seal(
            node0,
            mesh_id=mesh.mesh_id,
            epoch=2,
            seq=1,
            prev=prev,
            hlc=3,
            claims_root=merkle_root([claim.id]),
            payload=payload,
        )

    assert admission.receive(epoch2(other.id, "bad").raw).reason is Reason.BAD_PREV
    assert admission.receive(epoch2(old.id, "good").raw).status is Status.INTEGRATED


def test_a_revocation_drops_what_waits_past_the_cutoff(mesh: MeshFixture) -> None:
    """Envelopes that wait for their causal past and are past their author's new cutoff could
    only ever be excluded, and their past may exist only on the revoked node: they are dropped,
    not waited (and asked) for; delivered in order later, they are stored, excluded."""
    node0, node1 = mesh.nodes[0], mesh.nodes[1]
    src = Admission(MemoryStore(), mesh.genesis)
    e1, e2, e3 = (
        src.write_local(node1, [mesh.claim(mesh.writers[0], f"n1-{i}", i)], hlc=i)
        for i in range(1, 4)
    )
    admin_side = Admission(MemoryStore(), mesh.genesis)  # has seen none of node1's writes
    revoke = admin_side.write_local(node0, [mesh.revoke_node(node1.public_key, 1, 1)], hlc=10)
    replica = Admission(MemoryStore(), mesh.genesis)
    assert replica.receive(e3.raw).status is Status.WAITING_CAUSAL
    assert replica.missing() == [e2.id]
    assert replica.receive(revoke.raw).status is Status.INTEGRATED
    assert replica.buffered["causal"] == 0 and replica.missing() == []
    assert replica.receive(e2.raw).status is Status.DROPPED  # past the cutoff, past missing
    assert replica.buffered["causal"] == 0
    for env in (e1, e2, e3):
        assert replica.receive(env.raw).status is Status.INTEGRATED
    assert [c.key for c in replica.live_claims() if c.key.startswith("n1-")] == ["n1-1"]
    assert replica.exclusion(replica.records[e3.id]) is Reason.REVOKED


def test_a_copy_already_held_is_a_duplicate_before_any_signature_check(
    mesh: MeshFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = Admission(MemoryStore(), mesh.genesis)
    env = src.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "k", 1)], hlc=1)
    replica = Admission(MemoryStore(), mesh.genesis)
    assert replica.receive(env.raw).status is Status.INTEGRATED
    import memmesh.admission as admission_module

    def no_verify(*_: object, **__: object) -> object:
        raise AssertionError("a held envelope's signature was checked again")

    monkeypatch.setattr(admission_module, "open_envelope", no_verify)
    assert replica.receive(env.raw).status is Status.DUPLICATE


def test_receive_decoded_admits_what_receive_admits_and_checks_the_rest(
    mesh: MeshFixture,
) -> None:
    """An offline verifier's path: parts decoded by the caller give the same records and
    digest as the bytes would; the mesh id and the claims root are still checked."""
    source = Admission(MemoryStore(), mesh.genesis)
    made = [
        source.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], f"d{i}", i)], hlc=i + 1)
        for i in range(3)
    ]

    def parts(raw: bytes) -> tuple[Envelope, list[GrammarItem], list[Claim]]:
        env = decode_envelope(raw)
        items = decode_update(
            env.payload, client=client_id(env.author, env.epoch), start_clock=None
        )
        claims = [decode_claim(i.value, mesh_id=env.mesh_id, verify_signature=False) for i in items]
        return env, items, claims

    by_bytes = Admission(MemoryStore(), mesh.genesis)
    by_parts = Admission(MemoryStore(), mesh.genesis)
    for env in made:
        assert by_bytes.receive(env.raw).status is Status.INTEGRATED
        assert by_parts.receive_decoded(*parts(env.raw)).status is Status.INTEGRATED
    assert by_parts.records.keys() == by_bytes.records.keys()
    assert by_parts.claims_digest() == by_bytes.claims_digest()
    assert by_parts.receive_decoded(*parts(made[0].raw)).status is Status.DUPLICATE

    other = MeshFixture("another-mesh", nodes=1, writers=1)
    stranger = Admission(MemoryStore(), other.genesis).write_local(
        other.nodes[0], [other.claim(other.writers[0], "x", 1)], hlc=1
    )
    fresh = Admission(MemoryStore(), mesh.genesis)
    outcome = fresh.receive_decoded(*parts(stranger.raw))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.WRONG_MESH)
    env, items, claims = parts(made[0].raw)
    outcome = fresh.receive_decoded(env, items, claims[:0])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.BAD_CLAIMS_ROOT)
    assert not fresh.records


def test_only_the_newest_envelopes_keep_their_bytes_in_memory(
    mesh: MeshFixture, tmp_path: Path
) -> None:
    """Past ``held_envelope_bytes_max``, the oldest stored envelopes let go of their bytes (and
    so do their claims): they are read from the store when asked for, byte for byte, and the
    bytes held stay within the budget. Reopening does the same as it replays."""
    limits = AdmissionLimits(held_envelope_bytes_max=6_000)
    writer = mesh.writers[0]
    with LmdbStore(tmp_path / "s") as store:
        admission = Admission(store, mesh.genesis, limits=limits)
        written = []
        for i in range(12):
            claims = [mesh.claim(writer, f"k{i}-{j}", "x" * 200) for j in range(3)]
            expected = [c.raw for c in claims]
            written.append((admission.write_local(mesh.nodes[0], claims, hlc=i + 1), expected))
        held = [e for e, _ in written if admission.records[e.id].envelope.held is not None]
        assert 0 < len(held) < len(written)
        assert held == [e for e, _ in written][-len(held) :]  # the newest ones
        assert sum(e.size for e in held) <= 6_000
        for env, expected in written:
            assert admission.envelope_bytes(env.id) == env.raw
            record = admission.records[env.id]
            assert [c.raw for c in record.claims] == expected
            if record.envelope.held is None:
                with pytest.raises(EnvelopeDetached):
                    _ = record.envelope.raw
                assert all(callable(c.held) for c in record.claims)
        digest = admission.claims_digest()
    with LmdbStore(tmp_path / "s") as store:
        reopened = Admission.open(store, mesh.genesis, limits=limits)
        assert reopened.claims_digest() == digest
        kept = [r for r in reopened.records.values() if r.envelope.held is not None]
        assert sum(r.envelope.size for r in kept) <= 6_000
        assert all(reopened.envelope_bytes(e.id) == e.raw for e, _ in written)


def test_a_detached_envelope_the_store_cannot_read_is_an_error_not_wrong_bytes(
    mesh: MeshFixture,
) -> None:
    class Forgetful(MemoryStore):
        def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
            return None

    admission = Admission(
        Forgetful(), mesh.genesis, limits=AdmissionLimits(held_envelope_bytes_max=0)
    )
    env = admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "k")], hlc=1)
    with pytest.raises(StorageError, match="not where the store put it"):
        admission.envelope_bytes(env.id)
