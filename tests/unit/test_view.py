"""The memory view (``memmesh.memory``): updates, conflicts, policies, resolutions, validity.

Replicas are real ``Admission`` pipelines over in-memory stores; envelopes travel between them by
their bytes, so every claim here went through the same checks as on the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memmesh.admission import Admission, Status
from memmesh.claims import Claim
from memmesh.crypto import SigningKey
from memmesh.envelope import Envelope
from memmesh.memory import Invalid, View, describe
from memmesh.memory.types import POLICY_NAMESPACE, SYSTEM_PREFIX, TYPES_NAMESPACE
from memmesh.memory.view import Conflict, Entries, Entry, SortedSet, Subject
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture, scaled, seeded_key

NS = ("ops", "contracts")


class Replica:
    def __init__(self, mesh: MeshFixture, node: SigningKey, *, tick: int = 0) -> None:
        self.mesh, self.node = mesh, node
        self.admission = Admission(MemoryStore(), mesh.genesis)
        self.view = View(self.admission)
        self.hlc = 0
        self.now = 1_000
        self.tick = tick
        """Milliseconds the local clock moves at each write and each envelope taken."""

    def write(self, claims: Sequence[Claim]) -> Envelope:
        self.hlc += 1
        self.now += self.tick
        env = self.admission.write_local(self.node, list(claims), hlc=self.hlc)
        self.view.apply([env.id], self.now)
        return env

    def take(self, *others: Replica) -> None:
        """Receive every envelope the others hold, in causal order."""
        for other in others:
            records = other.admission.records
            for env_id in sorted(records, key=lambda i: (records[i].rank, i)):
                outcome = self.admission.receive(other.admission.envelope_bytes(env_id))
                assert outcome.status in (Status.INTEGRATED, Status.DUPLICATE), outcome
                self.now += self.tick
                self.view.apply(outcome.admitted, self.now)

    def live(self, key: str, ns: tuple[str, ...] = NS) -> tuple[bytes, ...]:
        subject = self.view.get(ns, key)
        return () if subject is None else subject.live

    def value(self, key: str, ns: tuple[str, ...] = NS) -> object:
        subject = self.view.get(ns, key)
        entry = None if subject is None else subject.value_entry()
        return None if entry is None else entry.claim.value

    def check_rebuild(self) -> None:
        assert self.view.snapshot() == View.build(self.admission).snapshot()


@pytest.fixture
def mesh() -> MeshFixture:
    return MeshFixture("view", nodes=2, writers=2)


def _pair(mesh: MeshFixture) -> tuple[Replica, Replica]:
    return Replica(mesh, mesh.nodes[0]), Replica(mesh, mesh.nodes[1])


def _policy(mesh: MeshFixture, pattern: str, rule: str, version: int = 1) -> Claim:
    value = {"pattern": pattern, "rule": rule, "version": version, "params": {}}
    return mesh.claim(mesh.admin, pattern, value, type="policy", namespace=POLICY_NAMESPACE)


def test_an_update_that_saw_the_value_is_not_a_conflict(mesh: MeshFixture) -> None:
    a, b = _pair(mesh)
    first = mesh.claim(mesh.writers[0], "acme", {"tier": "gold"}, namespace=NS)
    a.write([first])
    b.take(a)
    second = mesh.claim(
        mesh.writers[1], "acme", {"tier": "silver"}, namespace=NS, supersedes=(first.id,)
    )
    b.write([second])
    a.take(b)
    for replica in (a, b):
        assert replica.live("acme") == (second.id,)
        assert replica.value("acme") == {"tier": "silver"}
        assert replica.view.open_conflicts() == []
        history = replica.view.history(NS, "acme")
        assert [e.claim.id for e in history] == [first.id, second.id]
        replica.check_rebuild()


def test_concurrent_writes_are_one_conflict_decided_alike_by_lww(mesh: MeshFixture) -> None:
    a, b = _pair(mesh)
    x = mesh.claim(mesh.writers[0], "acme", "renews", namespace=NS)
    y = mesh.claim(mesh.writers[1], "acme", "churns", namespace=NS)
    a.write([x])
    b.write([y])
    a.take(b)
    b.take(a)
    conflicts = [r.view.open_conflicts() for r in (a, b)]
    assert [len(c) for c in conflicts] == [1, 1]
    ca, cb = conflicts[0][0], conflicts[1][0]
    assert ca.id == cb.id
    assert ca.candidates == cb.candidates == tuple(sorted((x.id, y.id)))
    assert ca.decision.to_bytes() == cb.decision.to_bytes()
    assert ca.decision.status == "resolved" and ca.decision.rule == "lww"
    assert ca.settled_by == "policy" and ca.resolved_ms == ca.detected_ms
    assert a.value("acme") == b.value("acme") == "churns"  # y has the later HLC
    for replica in (a, b):
        replica.check_rebuild()


def test_manual_policy_holds_the_conflict_until_a_resolver_settles_it(
    mesh: MeshFixture,
) -> None:
    a, b = _pair(mesh)
    resolver = seeded_key("view/resolver")
    a.write([_policy(mesh, "ops.**", "manual"), mesh.admit(resolver.public_key, "resolver")])
    b.take(a)
    x = mesh.claim(mesh.writers[0], "acme", "renews", namespace=NS)
    y = mesh.claim(mesh.writers[1], "acme", "churns", namespace=NS)
    a.write([x])
    b.write([y])
    a.take(b)
    b.take(a)
    for replica in (a, b):
        (conflict,) = replica.view.open_conflicts()
        assert conflict.decision.status == "escalated"
        assert conflict.decision.rule == "manual"
        assert replica.value("acme") is None
    a.now = 5_000
    resolution = mesh.claim(
        resolver, "acme", {"winner": x.id.hex()}, type="resolution", namespace=NS,
        supersedes=(x.id, y.id),
    )  # fmt: skip
    a.write([resolution])
    b.take(a)
    for replica in (a, b):
        assert replica.live("acme") == (resolution.id,)
        assert replica.value("acme") == "renews"
        assert replica.view.open_conflicts() == []
        replica.check_rebuild()
    (record,) = a.view.conflicts.values()
    assert (record.detected_ms, record.resolved_ms, record.settled_by) == (1_000, 5_000, "write")


def test_a_resolution_by_a_plain_writer_does_not_count(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    x = mesh.claim(mesh.writers[0], "k", 1, namespace=NS)
    a.write([x])
    fake = mesh.claim(
        mesh.writers[1], "k", {"winner": x.id.hex()}, type="resolution", namespace=NS,
        supersedes=(x.id,),
    )  # fmt: skip
    a.write([fake])
    entry = a.view.get(NS, "k").entries[fake.id]  # type: ignore[union-attr]
    assert entry.invalid == Invalid.ROLE_NOT_ALLOWED
    assert a.live("k") == (x.id,)


def test_superseding_what_the_writer_never_saw_is_marked_and_ignored(mesh: MeshFixture) -> None:
    a, b = _pair(mesh)
    x = mesh.claim(mesh.writers[0], "k", "a's", namespace=NS)
    a.write([x])
    # b never received x, yet names it: only a dishonest node writes this.
    liar = mesh.claim(mesh.writers[1], "k", "b's", namespace=NS, supersedes=(x.id,))
    b.write([liar])
    a.take(b)
    b.take(a)
    for replica in (a, b):
        entry = replica.view.get(NS, "k").entries[liar.id]  # type: ignore[union-attr]
        assert entry.invalid == Invalid.SUPERSEDES_UNSEEN
        assert replica.live("k") == (x.id,)
        replica.check_rebuild()


def test_superseding_another_subject_is_refused(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    x = mesh.claim(mesh.writers[0], "one", 1, namespace=NS)
    a.write([x])
    other = mesh.claim(mesh.writers[0], "two", 2, namespace=NS, supersedes=(x.id,))
    a.write([other])
    entry = a.view.get(NS, "two").entries[other.id]  # type: ignore[union-attr]
    assert entry.invalid == Invalid.SUPERSEDES_OTHER_SUBJECT
    assert a.live("one") == (x.id,)


def test_a_retraction_deletes_and_a_concurrent_put_conflicts_with_it(mesh: MeshFixture) -> None:
    a, b = _pair(mesh)
    x = mesh.claim(mesh.writers[0], "k", "v", namespace=NS)
    a.write([x])
    b.take(a)
    gone = mesh.claim(mesh.writers[0], "k", None, type="retraction", namespace=NS,
                      supersedes=(x.id,))  # fmt: skip
    a.write([gone])
    assert a.live("k") == (gone.id,)
    entry = a.view.get(NS, "k").value_entry()  # type: ignore[union-attr]
    assert entry is not None and entry.claim.type == "retraction"
    update = mesh.claim(mesh.writers[1], "k", "v2", namespace=NS, supersedes=(x.id,))
    b.write([update])
    a.take(b)
    assert a.live("k") == tuple(sorted((gone.id, update.id)))
    assert len(a.view.open_conflicts()) == 1
    a.check_rebuild()


def test_custom_types_follow_the_schema_their_writer_saw(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    amount = {"amount": {"type": "integer"}}
    schema = {"type": "object", "required": ["amount"], "properties": amount}
    registration = mesh.claim(
        mesh.admin, "invoice", {"schema": schema, "version": 1}, type="schema",
        namespace=TYPES_NAMESPACE,
    )  # fmt: skip
    early = mesh.claim(mesh.writers[0], "early", {"amount": 1}, type="invoice", namespace=NS)
    a.write([early])  # before the registration: an unknown type
    a.write([registration])
    good = mesh.claim(mesh.writers[0], "good", {"amount": 5}, type="invoice", namespace=NS)
    bad = mesh.claim(mesh.writers[0], "bad", {"amount": "5"}, type="invoice", namespace=NS)
    a.write([good, bad])
    entries = {k: a.view.get(NS, k).entries for k in ("early", "good", "bad")}  # type: ignore[union-attr]
    assert entries["early"][early.id].invalid == Invalid.UNKNOWN_TYPE
    assert entries["good"][good.id].invalid is None
    assert entries["bad"][bad.id].invalid == Invalid.SCHEMA_VIOLATION
    assert "amount" in entries["bad"][bad.id].detail
    assert a.live("bad") == ()
    a.check_rebuild()


@pytest.mark.parametrize(
    ("claim_type", "namespace", "value", "reason"),
    [
        ("fact", ("_mesh", "x"), 1, Invalid.RESERVED_NAMESPACE),
        ("policy", NS, {"pattern": "a", "rule": "lww", "version": 1, "params": {}},
         Invalid.RESERVED_NAMESPACE),
        ("schema", TYPES_NAMESPACE, {"schema": {"type": 7}, "version": 1}, Invalid.BAD_VALUE),
        ("retraction", NS, "not null", Invalid.BAD_VALUE),
        ("receipt", ("_mesh", "receipts"), {"frontier": "00", "claims": [], "reader": "00"},
         Invalid.BAD_VALUE),
    ],
)  # fmt: skip
def test_malformed_system_claims_are_marked(
    mesh: MeshFixture, claim_type: str, namespace: tuple[str, ...], value: object, reason: Invalid
) -> None:
    a, _ = _pair(mesh)
    claim = mesh.claim(mesh.admin, "k", value, type=claim_type, namespace=namespace)
    a.write([claim])
    assert a.view.get(namespace, "k").entries[claim.id].invalid == reason  # type: ignore[union-attr]


def test_a_policy_by_a_writer_is_ignored(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    value = {"pattern": "ops.**", "rule": "manual", "version": 1, "params": {}}
    claim = mesh.claim(mesh.writers[0], "ops.**", value, type="policy", namespace=POLICY_NAMESPACE)
    a.write([claim])
    entry = a.view.get(POLICY_NAMESPACE, "ops.**").entries[claim.id]  # type: ignore[union-attr]
    assert entry.invalid == Invalid.ROLE_NOT_ALLOWED
    assert a.view.rule_for(NS)[0].name == "lww"


def test_a_policy_change_redecides_open_conflicts(mesh: MeshFixture) -> None:
    a, b = _pair(mesh)
    a.write([mesh.claim(mesh.writers[0], "k", 1, namespace=NS)])
    b.write([mesh.claim(mesh.writers[1], "k", 2, namespace=NS)])
    a.take(b)
    (conflict,) = a.view.open_conflicts()
    assert conflict.decision.status == "resolved"
    a.write([_policy(mesh, "ops.*", "manual")])
    (conflict,) = a.view.open_conflicts()
    assert conflict.decision.status == "escalated"
    assert conflict.resolved_ms is None
    a.check_rebuild()


def test_revoking_a_writer_takes_its_later_claims_out_of_the_view(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    writer = mesh.writers[1]
    first = mesh.claim(writer, "k", "first", namespace=NS)
    a.write([first])
    later = mesh.claim(writer, "k", "later", namespace=NS, supersedes=(first.id,))
    a.write([later])
    assert a.live("k") == (later.id,)
    a.write([mesh.revoke_agent(writer.public_key, first.aseq)])
    # The later claim is past the cutoff: excluded, so the first is live again.
    entry = a.view.get(NS, "k").entries[later.id]  # type: ignore[union-attr]
    assert entry.excluded == "revoked"
    assert a.live("k") == (first.id,)
    a.check_rebuild()


def test_revoking_a_node_takes_the_claims_of_its_later_envelopes_out_of_the_view(
    mesh: MeshFixture,
) -> None:
    """A node revocation is a membership change of the node's key: the view rechecks the
    claims its envelopes carry (whoever their agent), not only the claims of the key."""
    a, b = _pair(mesh)
    first = mesh.claim(mesh.writers[0], "k", "first", namespace=NS)
    b.write([first])
    later = mesh.claim(mesh.writers[0], "k", "later", namespace=NS, supersedes=(first.id,))
    b.write([later])
    a.take(b)
    assert a.live("k") == (later.id,)
    a.write([mesh.revoke_node(mesh.nodes[1].public_key, 1, 1)])  # b's envelopes after seq 1
    entry = a.view.get(NS, "k").entries[later.id]  # type: ignore[union-attr]
    assert entry.excluded == "revoked"
    assert a.live("k") == (first.id,)
    a.check_rebuild()


def test_a_view_built_at_once_decides_by_the_policies_it_holds(mesh: MeshFixture) -> None:
    """Found by the view machine: a conflict that sorts before the policy subjects (two
    admits of one key, in ``_mesh.members``) was decided first, and the policy table built
    then, before the policies' live sets were worked out, was kept for every other conflict
    of the call. A view built in one call, as at every start, decided by the default rules."""
    a, _ = _pair(mesh)
    newcomer = seeded_key("view/newcomer")
    a.write([mesh.admit(newcomer.public_key, "writer")])
    a.write([_policy(mesh, "ops.**", "lww", version=2)])
    a.write([mesh.admit(newcomer.public_key, "writer")])  # saw nothing: a conflict
    for value in (1, 2):  # neither saw the other: a conflict
        a.write([mesh.claim(mesh.writers[0], "k", value, namespace=NS)])
    for view in (a.view, View.build(a.admission)):
        decision = view.subjects[(NS, "k")].decision
        assert decision is not None and (decision.rule, decision.version) == ("lww", 2)
    a.check_rebuild()


# -- incremental == rebuilt, after every step -----------------------------------------------------


KEYS = ("a", "b", "c")


class ViewMachine(RuleBasedStateMachine):
    """Three replicas write (updates, concurrent writes, retractions, resolutions, lies about
    what they saw, policies) and exchange envelopes; a writer is revoked midway. After every
    step, on every replica, the incremental view equals one rebuilt from the stored claims."""

    @initialize()
    def start(self) -> None:
        self.mesh = MeshFixture("viewmachine", nodes=3, writers=2)
        # The clock moves, so conflicts settle after different times (settle_times).
        self.replicas = [Replica(self.mesh, node, tick=7) for node in self.mesh.nodes]
        self.revoked = False
        # An agent that writes before and after it is admitted (its earlier claims count
        # from the admit on), and a role that changes: membership moves the view rechecks.
        self.newcomer = seeded_key("viewmachine/newcomer")
        self.newcomer_roles: list[str] = []

    @rule(r=st.integers(0, 2), key=st.sampled_from(KEYS), value=st.integers(0, 3))
    def newcomer_puts(self, r: int, key: str, value: int) -> None:
        replica = self.replicas[r]
        claim = self.mesh.claim(self.newcomer, key, value, namespace=NS,
                                supersedes=replica.live(key))  # fmt: skip
        replica.write([claim])

    @rule(r=st.integers(0, 2), role=st.sampled_from(["writer", "reader"]))
    def admit_newcomer(self, r: int, role: str) -> None:
        if len(self.newcomer_roles) < 2:
            self.newcomer_roles.append(role)
            self.replicas[r].write([self.mesh.admit(self.newcomer.public_key, role)])

    def _agent(self, index: int) -> SigningKey:
        return (self.mesh.writers[0], self.mesh.writers[1], self.mesh.admin)[index % 3]

    @rule(r=st.integers(0, 2), agent=st.integers(0, 2), key=st.sampled_from(KEYS),
          seen=st.booleans(), value=st.integers(0, 3))  # fmt: skip
    def put(self, r: int, agent: int, key: str, seen: bool, value: int) -> None:
        replica = self.replicas[r]
        supersedes = replica.live(key) if seen else ()
        claim = self.mesh.claim(self._agent(agent), key, value, namespace=NS,
                                supersedes=supersedes)  # fmt: skip
        replica.write([claim])

    @rule(r=st.integers(0, 2), key=st.sampled_from(KEYS))
    def retract(self, r: int, key: str) -> None:
        replica = self.replicas[r]
        live = replica.live(key)
        if live:
            replica.write([self.mesh.claim(self.mesh.writers[0], key, None, type="retraction",
                                           namespace=NS, supersedes=live)])  # fmt: skip

    @rule(r=st.integers(0, 2), key=st.sampled_from(KEYS), pick=st.integers(0, 5))
    def resolve(self, r: int, key: str, pick: int) -> None:
        replica = self.replicas[r]
        live = replica.live(key)
        if len(live) > 1:
            winner = live[pick % len(live)]
            replica.write([self.mesh.claim(self.mesh.admin, key, {"winner": winner.hex()},
                                           type="resolution", namespace=NS,
                                           supersedes=live)])  # fmt: skip

    @rule(r=st.integers(0, 2), other=st.integers(0, 2), key=st.sampled_from(KEYS))
    def lie(self, r: int, other: int, key: str) -> None:
        """Supersede what another replica holds, unseen."""
        target = self.replicas[other].live(key)
        if target:
            claim = self.mesh.claim(self.mesh.writers[1], key, "lie", namespace=NS,
                                    supersedes=target)  # fmt: skip
            self.replicas[r].write([claim])

    @rule(r=st.integers(0, 2), rule_name=st.sampled_from(["lww", "manual", "priority"]),
          version=st.integers(1, 3))  # fmt: skip
    def policy(self, r: int, rule_name: str, version: int) -> None:
        value = {"pattern": "ops.**", "rule": rule_name, "version": version, "params": {}}
        claim = self.mesh.claim(self.mesh.admin, "ops.**", value, type="policy",
                                namespace=POLICY_NAMESPACE)  # fmt: skip
        self.replicas[r].write([claim])

    @rule(r=st.integers(0, 2))
    def revoke(self, r: int) -> None:
        if not self.revoked:
            self.revoked = True
            writer = self.mesh.writers[1]
            cutoff = max(1, self.mesh._aseq.get(writer.public_key, 0) - 1)
            self.replicas[r].write([self.mesh.revoke_agent(writer.public_key, cutoff)])

    @rule(r=st.integers(0, 2), other=st.integers(0, 2))
    def sync(self, r: int, other: int) -> None:
        if r != other:
            self.replicas[r].take(self.replicas[other])

    @invariant()
    def incremental_equals_rebuilt(self) -> None:
        for replica in getattr(self, "replicas", []):
            replica.check_rebuild()

    @invariant()
    def open_conflicts_are_every_subject_with_one(self) -> None:
        """``open_conflicts`` reads an index of the subjects with a conflict; it must list what
        walking every subject lists."""
        for replica in getattr(self, "replicas", []):
            view = replica.view
            every = [
                view.conflicts[s.conflict]
                for _, s in sorted(view.subjects.items())
                if s.conflict is not None
            ]
            assert view.open_conflicts() == every
            unsettled = [c for c in every if c.decision.status != "resolved"]
            assert view.unsettled_conflicts() == len(unsettled)
            by_detection = sorted(view.conflicts.values(), key=lambda c: (c.detected_ms, c.id))
            assert _conflict_pages(view, "all") == by_detection
            assert _conflict_pages(view, "current") == every

    @invariant()
    def histories_are_every_entry_sorted(self) -> None:
        """:meth:`View.history` keeps the histories asked for and places only what came
        since (claims from a sync can sort among the kept ones); it must be a full sort."""
        for replica in getattr(self, "replicas", []):
            view = replica.view
            for (namespace, key), subject in sorted(view.subjects.items()):
                every = sorted(subject.entries.values(), key=view.history_order)
                assert view.history(namespace, key) == every

    @invariant()
    def present_counts_are_the_present_subjects(self) -> None:
        """Listings ask a per-namespace count of present subjects kept at each recompute; it
        must be what walking the subjects counts."""
        for replica in getattr(self, "replicas", []):
            view = replica.view
            walked: dict[tuple[str, ...], int] = {}
            for (namespace, _), subject in view.subjects.items():
                assert subject.shown == subject.present
                walked[namespace] = walked.get(namespace, 0) + subject.present
            assert {ns: n for ns, n in view._present.items() if n} == {
                ns: n for ns, n in walked.items() if n
            }

    @invariant()
    def settle_times_are_those_of_the_settled_conflicts(self) -> None:
        """The signals read :attr:`View.settle_times`, kept as conflicts settle and reopen; it
        must hold what walking every conflict record gives."""
        for replica in getattr(self, "replicas", []):
            view = replica.view
            walked = sorted(
                c.resolved_ms - c.detected_ms
                for c in view.conflicts.values()
                if c.resolved_ms is not None
            )
            assert list(view.settle_times) == walked
            assert view.settle_times.total_ms == sum(walked)
            assert view.settle_times.median() == (walked[len(walked) // 2] if walked else None)

    @invariant()
    def every_claim_is_attributed_signed_timed_and_has_provenance_fields(self) -> None:
        for replica in getattr(self, "replicas", []):
            for subject in replica.view.subjects.values():
                for entry in subject.entries.values():
                    shown = describe(entry)
                    assert len(str(shown["agent"])) == 64 and shown["signature"] == "verified"
                    assert isinstance(shown["hlc"], list) and shown["hlc"][0] > 0
                    for name in ("source", "derived_from", "based_on", "valid_at", "confidence"):
                        assert name in shown


ViewMachine.TestCase.settings = settings(
    max_examples=scaled(40), stateful_step_count=30, deadline=None
)
test_the_incremental_view_equals_a_rebuild = ViewMachine.TestCase


def test_the_signature_status_is_checked_not_assumed(mesh: MeshFixture) -> None:
    a, _ = _pair(mesh)
    claim = mesh.claim(mesh.writers[0], "k", "v", namespace=NS)
    a.write([claim])
    entry = a.view.get(NS, "k").entries[claim.id]  # type: ignore[union-attr]
    assert describe(entry)["signature"] == "verified"
    forged = dataclasses.replace(claim, held=claim.raw[:-1] + bytes([claim.raw[-1] ^ 1]), at=0)
    assert describe(dataclasses.replace(entry, claim=forged))["signature"] == "invalid"


def test_a_subjects_entries_behave_as_a_dict_of_claim_ids() -> None:
    """One entry is held without a dict; the second turns it into one, in arrival order."""
    mesh = MeshFixture("entries")
    claims = [mesh.claim(mesh.writers[0], "k", i, namespace=NS) for i in range(3)]
    made = [Entry(c, b"\0" * 32, None, None) for c in claims]
    entries, plain = Entries(), {}
    assert len(entries) == 0 and entries.get(claims[0].id) is None and list(entries) == []
    for entry in (*made, made[0]):  # the last replaces the first, in its place
        entries[entry.claim.id] = entry
        plain[entry.claim.id] = entry
        assert list(entries) == list(plain) and entries.values() == list(plain.values())
        assert len(entries) == len(plain)
        assert all(entries[k] is v and k in entries for k, v in plain.items())
        for count in range(-1, len(plain) + 2):  # the last ones that came, in their order
            assert entries.last(count) == (list(plain.values())[-count:] if count > 0 else [])
    one, other = Entries(), Entries()
    one[claims[1].id], one[claims[2].id] = made[1], made[2]
    other[claims[2].id], other[claims[1].id] = made[2], made[1]
    assert one == other and one != entries and b"x" not in one
    with pytest.raises(KeyError):
        one[claims[0].id]
    with pytest.raises(ValueError, match="own claim"):
        one[claims[0].id] = made[1]


def test_a_subject_holds_its_entries_itself() -> None:
    """No ``Entries`` object beside each subject (48 bytes each): the subject is its entries.
    Still true as a subject with none yet, and equal only with equal entries."""
    mesh = MeshFixture("entries")
    claims = [mesh.claim(mesh.writers[0], "k", i, namespace=NS) for i in range(2)]
    made = [Entry(c, b"\0" * 32, None, None) for c in claims]
    subject, twin = Subject(key=(NS, "k")), Subject(key=(NS, "k"))
    assert subject.entries is subject and len(subject) == 0 and bool(subject)
    assert subject == twin
    subject.entries[claims[0].id] = made[0]
    assert subject != twin and subject.entries.values() == [made[0]]
    twin.entries[claims[0].id] = made[0]
    assert subject == twin
    twin.live = (claims[0].id,)
    assert subject != twin


_LABELS = st.sampled_from(["a", "b", "ab", "b0", SYSTEM_PREFIX, "z"])


def _cuts_as_before(
    view: View, prefix: tuple[str, ...], depth: int | None, suffix: tuple[str, ...]
) -> list[tuple[str, ...]]:
    """What the namespaces endpoint computed before ``View.namespace_cuts``: every cut of every
    listed namespace, deduplicated (by a walk of the list: quadratic)."""
    cuts: list[tuple[str, ...]] = []
    for namespace in view.list_namespaces(prefix):
        if suffix and namespace[-len(suffix) :] != suffix:
            continue
        cut = namespace if depth is None else namespace[: max(depth, 0)]
        if cut and cut not in cuts:
            cuts.append(cut)
    return cuts


@settings(max_examples=scaled(60), deadline=None)
@given(
    writes=st.lists(
        st.tuples(
            st.lists(_LABELS, min_size=1, max_size=3).map(tuple),
            st.sampled_from(["k", "k2", "a", "z9"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    ),
    prefixes=st.lists(st.lists(_LABELS, max_size=3).map(tuple), min_size=1, max_size=6),
)
def test_namespace_and_item_reads_match_sorting_everything(
    writes: list[tuple[tuple[str, ...], str, bool]], prefixes: list[tuple[str, ...]]
) -> None:
    """``list_namespaces`` and ``items`` read ordered indexes kept as subjects appear; they
    return exactly what sorting and filtering every namespace and key at each read returns
    (what they did before), deleted subjects, system namespaces and nested prefixes included."""
    mesh = MeshFixture("view-index", nodes=1, writers=1)
    replica = Replica(mesh, mesh.nodes[0])
    replica.write([_policy(mesh, "a.*", "lww")])  # a system namespace with a value
    for namespace, key, delete in writes:
        value = mesh.claim(mesh.writers[0], key, 1, namespace=namespace)
        replica.write([value])
        if delete:
            held = replica.view.get(namespace, key)
            assert held is not None
            retraction = mesh.claim(
                mesh.writers[0],
                key,
                None,
                type="retraction",
                namespace=namespace,
                supersedes=tuple(held.live),
            )
            replica.write([retraction])
    view = replica.view
    assert view.list_namespaces((SYSTEM_PREFIX,)) == [POLICY_NAMESPACE]
    for prefix in [(), *prefixes, (SYSTEM_PREFIX,)]:
        expected = []
        for namespace in sorted(view.namespaces):
            if namespace[: len(prefix)] != prefix:
                continue
            if namespace[0] == SYSTEM_PREFIX and prefix[:1] != (SYSTEM_PREFIX,):
                continue
            if any(view.subjects[(namespace, k)].present for k in view.namespaces[namespace]):
                expected.append(namespace)
        assert view.list_namespaces(prefix) == expected
        items = [
            ((namespace, key), view.subjects[(namespace, key)])
            for namespace in expected
            for key in sorted(set(view.namespaces[namespace]))
        ]
        assert list(view.items(prefix)) == items
        if prefix:  # a namespace read: exactly this namespace's subjects, none deeper
            exact = [(key, subject) for (namespace, key), subject in items if namespace == prefix]
            assert view.subjects_of(prefix) == (exact, False)
            paged, after = [], None  # in pages of two, each past the last key of the one before
            while True:
                page, more = view.subjects_of(prefix, after=after, limit=2)
                paged += page
                if not more:
                    break
                after = page[-1][0]
            assert paged == exact
        _check_namespace_cuts(view, prefix)


def _conflict_pages(view: View, status: str) -> list[Conflict]:
    """Every conflict ``conflicts_page`` lists two at a time, each page after the last
    conflict of the one before."""
    found: list[Conflict] = []
    while True:
        page, more = view.conflicts_page(status, found[-1] if found else None, 2)
        assert len(page) <= 2
        found += page
        if not more:
            return found


@settings(max_examples=scaled(100), deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.booleans()), max_size=60))
def test_a_sorted_set_reads_as_sorting_its_items(steps: list[tuple[bool, int, bool]]) -> None:
    """Adds (in order or not), discards and reads in any interleaving: every read is the
    sorted items, whether the index kept its order or had to sort again."""
    index: SortedSet[tuple[int, bytes]] = SortedSet()
    held: set[tuple[int, bytes]] = set()
    for add, n, read in steps:
        item = (n, bytes([n % 3]))
        if add:
            index.add(item)
            held.add(item)
        else:
            index.discard(item)
            held.discard(item)
        assert len(index) == len(held) and (item in index) == (item in held)
        if read:
            assert index.ordered() == sorted(held)
    assert index.ordered() == sorted(held)


def _check_namespace_cuts(view: View, prefix: tuple[str, ...]) -> None:
    """``namespace_cuts`` lists what the endpoint listed before it, and following
    ``namespace_page`` cursors lists the same from any offset, whatever the page bounds."""
    for depth in (None, -1, 0, 1, 2, 3):
        for suffix in ((), prefix[-1:], ("b",), ("a", "b")):
            cuts = list(view.namespace_cuts(prefix, depth=depth, suffix=suffix))
            assert cuts == _cuts_as_before(view, prefix, depth, suffix)
            for limit, scan_max, offset in ((1, 1, 0), (2, 3, 1), (3, 1, 2), (50, 50, 0)):
                paged = _namespace_pages(
                    view,
                    prefix,
                    depth=depth,
                    suffix=suffix,
                    bounds=(limit, scan_max),
                    offset=offset,
                )
                assert paged == cuts[offset:]


def _namespace_pages(
    view: View,
    prefix: tuple[str, ...],
    *,
    depth: int | None,
    suffix: tuple[str, ...],
    bounds: tuple[int, int],
    offset: int,
) -> list[tuple[str, ...]]:
    """Every cut ``namespace_page`` lists from ``offset`` on, following ``next`` page after
    page; each page within its bounds, and ``next`` None only when nothing is left."""
    limit, scan_max = bounds
    found: list[tuple[str, ...]] = []
    start: tuple[str, ...] | None = None
    while True:
        page = view.namespace_page(
            prefix,
            depth=depth,
            suffix=suffix,
            start=start,
            offset=offset,
            limit=limit,
            scan_max=scan_max,
        )
        assert len(page.found) <= limit and page.scanned <= scan_max
        assert len(page.found) == limit or page.scanned == scan_max or page.next is None
        found += page.found
        if page.next is None:
            return found
        assert page.next.start[: len(prefix)] == prefix
        start, offset = page.next.start, page.next.offset
