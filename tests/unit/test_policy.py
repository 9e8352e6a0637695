"""The policy layer: built-in rules, the engine's contract, custom rules (DESIGN §6)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.canonical import JsonValue, canonical_bytes, parse_canonical
from memmesh.claims import Claim, make_claim
from memmesh.membership import Role
from memmesh.policy import (
    BUILTIN_RULES,
    DEFAULT_REGISTRY,
    Candidate,
    Context,
    Decision,
    Registry,
    Rule,
    RuleLoadError,
    decide,
    get_rule,
)
from memmesh.policy import registry as registry_module
from memmesh.testing import MeshFixture, scaled

EXPLANATION_MEMBERS = {"rule", "version", "impl_version", "candidates", "reason", "why", "detail"}


def cid(n: int) -> bytes:
    """A claim id (or agent key) whose order follows ``n``."""
    return n.to_bytes(2, "big") + hashlib.sha256(n.to_bytes(2, "big")).digest()[:30]


def cand(
    n: int,
    *,
    agent: int = 100,
    role: str | None = "writer",
    type: str = "fact",
    hlc: tuple[int, int] = (1000, 0),
    value: JsonValue = "v",
    confidence: int | None = None,
) -> Candidate:
    if type == "retraction":
        value = None
    return Candidate(cid(n), cid(agent), role, type, hlc, value, confidence)


def explain(decision: Decision) -> dict[str, JsonValue]:
    """The decision as any node would serve it: parsed back from its canonical bytes."""
    doc = parse_canonical(decision.to_bytes(), what="decision", bytes_max=1 << 20)
    assert isinstance(doc, dict)
    explanation = doc["explanation"]
    assert isinstance(explanation, dict)
    assert set(explanation) == EXPLANATION_MEMBERS
    assert explanation["rule"] == doc["rule"] == decision.rule
    assert explanation["version"] == doc["version"] == decision.version
    assert doc["winner"] == (None if decision.winner is None else decision.winner.hex())
    return explanation


def detail(decision: Decision) -> dict[str, JsonValue]:
    value = explain(decision)["detail"]
    assert isinstance(value, dict)
    return value


def ranking_ids(decision: Decision) -> list[bytes]:
    ranking = detail(decision)["ranking"]
    assert isinstance(ranking, list)
    out = []
    for row in ranking:
        assert isinstance(row, dict) and isinstance(row["id"], str)
        out.append(bytes.fromhex(row["id"]))
    return out


# -- candidates from signed claims -----------------------------------------------------------


@pytest.fixture(scope="module")
def fx() -> MeshFixture:
    return MeshFixture("policy", nodes=1, writers=3)


def claim_at(
    fx: MeshFixture,
    who: int,
    hlc: tuple[int, int],
    value: JsonValue = "v",
    *,
    type: str = "fact",
    aseq: int = 1,
) -> Claim:
    """A claim by writer ``who`` (or the admin, ``who = -1``) with a chosen HLC."""
    key = fx.admin if who < 0 else fx.writers[who]
    return make_claim(
        key,
        mesh_id=fx.mesh_id,
        aseq=aseq,
        hlc=hlc,
        namespace=("team", "facts"),
        key="capital",
        type=type,
        value=value,
    )


def test_candidate_from_claim_keeps_what_policies_read(fx: MeshFixture) -> None:
    claim = make_claim(
        fx.writers[0],
        mesh_id=fx.mesh_id,
        aseq=3,
        hlc=(1_700_000_000_123, 4),
        namespace=("a",),
        key="k",
        type="observation",
        value={"b": [1, None], "a": True},
        confidence=7_500,
    )
    c = Candidate.from_claim(claim, Role.WRITER)
    assert (c.claim_id, c.agent, c.type, c.hlc, c.confidence) == (
        claim.id,
        fx.writers[0].public_key,
        "observation",
        (1_700_000_000_123, 4),
        7_500,
    )
    assert c.role == "writer" and type(c.role) is str
    assert c.value == {"a": True, "b": [1, None]}
    assert c.value_key == b'{"a":true,"b":[1,null]}'


def test_a_retraction_means_deleted_which_is_not_a_null_value(fx: MeshFixture) -> None:
    gone = Candidate.from_claim(claim_at(fx, 0, (5, 0), "ignored", type="retraction"), "writer")
    null = Candidate.from_claim(claim_at(fx, 1, (5, 0), None), "writer")
    assert gone.value is None and gone.deleted and not null.deleted
    assert gone.value_key != null.value_key
    with pytest.raises(ValueError, match="retraction candidate has the value None"):
        Candidate(cid(1), cid(2), None, "retraction", (1, 0), "x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"claim_id": b"short"}, "claim_id must be 32 bytes"),
        ({"agent": "00" * 32}, "agent must be 32 bytes"),
        ({"role": ""}, "role must be a non-empty string"),
        ({"type": ""}, "type must be a non-empty string"),
        ({"hlc": (1, -1)}, "hlc must be"),
        ({"hlc": [1, 0]}, "hlc must be"),
        ({"hlc": (1, 0, 0)}, "hlc must be"),
        ({"hlc": (True, 0)}, "hlc must be"),
        ({"confidence": 1.5}, "confidence"),
        ({"value": 0.5}, "float is not in the canonical JSON subset"),
        ({"value": 2**60}, "outside"),
    ],
)
def test_candidates_refuse_what_replicas_could_not_agree_on(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "claim_id": cid(1),
        "agent": cid(2),
        "role": "writer",
        "type": "fact",
        "hlc": (1, 0),
        "value": "v",
        "confidence": None,
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=message):
        Candidate(**fields)  # type: ignore[arg-type]


# -- lww ---------------------------------------------------------------------------------------


def test_lww_the_latest_hlc_wins(fx: MeshFixture) -> None:
    old = Candidate.from_claim(claim_at(fx, 0, (1_000, 9), "Paris"), "writer")
    new = Candidate.from_claim(claim_at(fx, 1, (1_001, 0), "Lyon"), "writer")
    logical = Candidate.from_claim(claim_at(fx, 2, (1_001, 1), "Nice"), "writer")
    d = decide([old, new], Rule("lww"))
    assert d.resolved and d.winner == new.claim_id
    assert detail(d)["decided_by"] == "hlc"
    assert explain(d)["reason"] == "latest_hlc"
    d = decide([old, new, logical], Rule("lww"))
    assert d.winner == logical.claim_id  # the logical counter breaks equal physical times
    assert ranking_ids(d) == [logical.claim_id, new.claim_id, old.claim_id]


def test_lww_on_equal_hlcs_the_smallest_claim_id_wins() -> None:
    a, b, c = cand(7, hlc=(5, 1)), cand(3, hlc=(5, 1)), cand(9, hlc=(5, 1))
    d = decide([a, b, c], Rule("lww"))
    assert d.winner == b.claim_id
    assert detail(d)["decided_by"] == "claim_id"
    assert "smallest claim id" in str(explain(d)["why"])
    assert ranking_ids(d) == [b.claim_id, a.claim_id, c.claim_id]


def test_lww_trusts_clocks_so_a_writer_with_a_future_hlc_wins(fx: MeshFixture) -> None:
    honest = Candidate.from_claim(claim_at(fx, -1, (1_700_000_000_000, 0), "truth"), "admin")
    liar = Candidate.from_claim(claim_at(fx, 0, (2**47, 0), "lie"), "writer")
    assert decide([honest, liar], Rule("lww")).winner == liar.claim_id
    # ... which is what trust (or quorum, or manual) is for.
    trust = Rule("trust", 1, {"roles": {"admin": 100, "writer": 10}})
    assert decide([honest, liar], trust).winner == honest.claim_id


# -- trust -------------------------------------------------------------------------------------


def test_trust_the_heaviest_role_wins_even_when_older() -> None:
    admin = cand(1, agent=201, role="admin", hlc=(10, 0))
    writer = cand(2, agent=202, role="writer", hlc=(99, 0))
    d = decide([writer, admin], Rule("trust", 4, {"roles": {"admin": 100, "writer": 10}}))
    assert d.winner == admin.claim_id
    assert detail(d)["decided_by"] == "weight"
    ranking = detail(d)["ranking"]
    assert isinstance(ranking, list)
    assert [row["score"] for row in ranking if isinstance(row, dict)] == [
        {"weight": 100, "from": "role", "hlc": [10, 0]},
        {"weight": 10, "from": "role", "hlc": [99, 0]},
    ]
    assert explain(d)["version"] == 4


def test_trust_an_agent_weight_overrides_its_role_and_unknowns_weigh_zero() -> None:
    admin = cand(1, agent=201, role="admin", hlc=(10, 0))
    writer = cand(2, agent=202, role="writer", hlc=(5, 0))
    nobody = cand(3, agent=203, role=None, hlc=(50, 0))
    params: dict[str, JsonValue] = {
        "roles": {"admin": 100, "writer": 10},
        "agents": {cid(202).hex(): 1_000},
    }
    d = decide([admin, writer, nobody], Rule("trust", 1, params))
    assert d.winner == writer.claim_id
    ranking = detail(d)["ranking"]
    assert isinstance(ranking, list)
    scores = [(row["score"]["weight"], row["score"]["from"]) for row in ranking]  # type: ignore[call-overload,index]
    assert scores == [(1_000, "agent"), (100, "role"), (0, "default")]
    # A negative weight ranks below anyone unknown.
    params["agents"] = {cid(201).hex(): -1}
    assert decide([admin, nobody], Rule("trust", 1, params)).winner == nobody.claim_id


def test_trust_ties_fall_to_lww_then_to_the_claim_id() -> None:
    early = cand(1, agent=201, role="writer", hlc=(10, 0))
    late = cand(2, agent=202, role="writer", hlc=(11, 0))
    rule = Rule("trust", 1, {"roles": {"writer": 10}})
    d = decide([early, late], rule)
    assert (d.winner, detail(d)["decided_by"]) == (late.claim_id, "hlc")
    twin = cand(0, agent=203, role="writer", hlc=(11, 0))
    d = decide([early, late, twin], rule)
    assert (d.winner, detail(d)["decided_by"]) == (twin.claim_id, "claim_id")
    # With no params at all everyone weighs 0: trust degenerates to lww.
    d = decide([early, late], Rule("trust"))
    assert (d.winner, detail(d)["decided_by"]) == (late.claim_id, "hlc")


# -- quorum ------------------------------------------------------------------------------------


def test_quorum_k_agreeing_agents_win_with_their_latest_claim(fx: MeshFixture) -> None:
    a = Candidate.from_claim(claim_at(fx, 0, (10, 0), {"city": "Paris", "n": 1}), "writer")
    b = Candidate.from_claim(claim_at(fx, 1, (12, 0), {"n": 1, "city": "Paris"}), "writer")
    c = Candidate.from_claim(claim_at(fx, 2, (20, 0), {"city": "Lyon", "n": 1}), "writer")
    d = decide([a, b, c], Rule("quorum", 1, {"k": 2}))
    assert d.resolved and d.winner == b.claim_id  # the later of the two Paris claims
    info = detail(d)
    assert (info["k"], info["decided_by"], explain(d)["reason"]) == (2, "quorum", "quorum_reached")
    groups = info["groups"]
    assert isinstance(groups, list) and len(groups) == 2
    paris, lyon = groups
    assert isinstance(paris, dict) and isinstance(lyon, dict)
    assert paris["backers"] == 2 and paris["latest"] == b.claim_id.hex()
    assert paris["agents"] == sorted([a.agent.hex(), b.agent.hex()])
    assert paris["claims"] == sorted([a.claim_id.hex(), b.claim_id.hex()])
    assert lyon["backers"] == 1 and paris["value_hash"] != lyon["value_hash"]
    assert paris["deleted"] is False


def test_quorum_without_k_agreeing_agents_escalates() -> None:
    cands = [cand(1, agent=201, value="x"), cand(2, agent=202, value="y"), cand(3, agent=203)]
    d = decide(cands, Rule("quorum", 1, {"k": 2}))
    assert d.status == "escalated" and d.winner is None
    assert explain(d)["reason"] == "no_quorum"
    assert "the most is 1" in str(explain(d)["why"])


def test_quorum_counts_distinct_agents_not_claims() -> None:
    same = [cand(1, agent=201, value="x", hlc=(1, 0)), cand(2, agent=201, value="x", hlc=(2, 0))]
    other = cand(3, agent=202, value="y")
    d = decide([*same, other], Rule("quorum", 1, {"k": 2}))
    assert d.status == "escalated"
    d = decide(
        [*same, other, cand(4, agent=203, value="x", hlc=(0, 5))], Rule("quorum", 1, {"k": 2})
    )
    assert d.winner == cid(2)  # three claims, two agents, the latest claim of the group


def test_quorum_several_groups_most_backers_then_lww_then_claim_id() -> None:
    x = [cand(1, agent=201, value="x", hlc=(9, 0)), cand(2, agent=202, value="x", hlc=(9, 0))]
    y = [cand(n, agent=200 + n, value="y", hlc=(1, 0)) for n in (3, 4, 5)]
    d = decide([*x, *y], Rule("quorum", 1, {"k": 2}))
    assert (d.winner, detail(d)["decided_by"]) == (cid(3), "backers")
    z = [cand(6, agent=206, value="z", hlc=(9, 1)), cand(7, agent=207, value="z", hlc=(0, 0))]
    d = decide([*x, *z], Rule("quorum", 1, {"k": 2}))
    assert (d.winner, detail(d)["decided_by"]) == (cid(6), "hlc")
    w = [cand(8, agent=208, value="w", hlc=(9, 0)), cand(0, agent=209, value="w", hlc=(9, 0))]
    d = decide([*x, *w], Rule("quorum", 1, {"k": 2}))
    assert (d.winner, detail(d)["decided_by"]) == (cid(0), "claim_id")


def test_quorum_agreeing_retractions_delete() -> None:
    gone = [cand(1, agent=201, type="retraction"), cand(2, agent=202, type="retraction")]
    null = [cand(3, agent=203, value=None), cand(4, agent=204, value="x")]
    d = decide([*gone, *null], Rule("quorum", 1, {"k": 2}))
    assert d.winner in (cid(1), cid(2))
    groups = detail(d)["groups"]
    assert isinstance(groups, list)
    first = groups[0]
    assert isinstance(first, dict)
    assert first["deleted"] is True and first["value_hash"] is None and first["backers"] == 2
    assert "deletion" in str(explain(d)["why"])


# -- priority ----------------------------------------------------------------------------------


def test_priority_an_admin_instruction_beats_a_newer_observation() -> None:
    rule = Rule("priority", 1, {"types": ["instruction", "fact"], "roles": ["admin", "writer"]})
    instruction = cand(1, agent=201, role="admin", type="instruction", hlc=(1, 0))
    observation = cand(2, agent=202, role="writer", type="observation", hlc=(99, 0))
    fact = cand(3, agent=203, role="writer", type="fact", hlc=(50, 0))
    d = decide([observation, fact, instruction], rule)
    assert (d.winner, detail(d)["decided_by"]) == (instruction.claim_id, "type")
    assert ranking_ids(d) == [instruction.claim_id, fact.claim_id, observation.claim_id]
    ranking = detail(d)["ranking"]
    assert isinstance(ranking, list) and isinstance(ranking[2], dict)
    assert ranking[2]["score"] == {"type_rank": None, "role_rank": 1, "hlc": [99, 0]}


def test_priority_same_type_then_role_then_lww() -> None:
    rule = Rule("priority", 1, {"types": ["fact"], "roles": ["resolver", "admin"]})
    admin = cand(1, agent=201, role="admin", hlc=(1, 0))
    resolver = cand(2, agent=202, role="resolver", hlc=(0, 0))
    unlisted = cand(3, agent=203, role="writer", hlc=(9, 0))
    d = decide([admin, resolver, unlisted], rule)
    assert (d.winner, detail(d)["decided_by"]) == (resolver.claim_id, "role")
    other = cand(4, agent=204, role=None, hlc=(10, 0))
    d = decide([unlisted, other], rule)  # neither role listed: lww
    assert (d.winner, detail(d)["decided_by"]) == (other.claim_id, "hlc")
    d = decide([cand(5, hlc=(1, 0)), cand(6, hlc=(1, 0))], Rule("priority"))
    assert (d.winner, detail(d)["decided_by"]) == (cid(5), "claim_id")


def test_priority_can_rank_a_deletion_first() -> None:
    rule = Rule("priority", 1, {"types": ["retraction"]})
    d = decide([cand(1, hlc=(9, 0)), cand(2, type="retraction", hlc=(1, 0))], rule)
    assert d.winner == cid(2)


# -- manual, and the engine ----------------------------------------------------------------------


def test_manual_always_escalates_a_conflict() -> None:
    d = decide([cand(1), cand(2, hlc=(99, 0))], Rule("manual", 2))
    assert d.status == "escalated" and d.winner is None
    assert explain(d)["reason"] == "manual" and "resolution" in str(explain(d)["why"])


@pytest.mark.parametrize("name", [*BUILTIN_RULES, "not-installed"])
def test_one_candidate_is_no_conflict_whatever_the_rule(name: str) -> None:
    d = decide([cand(1)], Rule(name, 3, {"k": 5} if name == "quorum" else {}))
    assert d.resolved and d.winner == cid(1)
    assert (d.rule, d.version) == (name, 3)
    info = explain(d)
    assert info["reason"] == "single_candidate" and info["impl_version"] is None


def test_no_candidates_or_a_candidate_twice_is_the_callers_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        decide([], Rule("lww"))
    with pytest.raises(ValueError, match="given twice"):
        decide([cand(1), cand(2), cand(1, hlc=(5, 0))], Rule("lww"))


def test_an_unknown_rule_escalates() -> None:
    d = decide([cand(1), cand(2)], Rule("no-such-rule", 7, {"any": [1]}))
    assert (d.status, d.rule, d.version) == ("escalated", "no-such-rule", 7)
    info = explain(d)
    assert info["reason"] == "unknown_rule" and info["impl_version"] is None


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("lww", {"by": "hlc"}, "lww params: unknown member(s) 'by'"),
        ("manual", {"who": "x"}, "manual params: unknown member(s) 'who'"),
        ("trust", {"roles": ["admin"]}, "'roles' must be an object"),
        ("trust", {"roles": {"admin": "high"}}, "weight of role 'admin' must be an integer"),
        ("trust", {"roles": {"admin": True}}, "weight of role 'admin' must be an integer"),
        ("trust", {"agents": {"ABCD": 1}}, "64 lowercase hex digits"),
        ("trust", {"agents": {"ab" * 32: None}}, "must be an integer"),
        ("trust", {"weights": {}}, "unknown member(s) 'weights'"),
        ("quorum", {}, "'k' (the number of agreeing agents) is required"),
        ("quorum", {"k": 0}, "'k' must be an integer >= 1"),
        ("quorum", {"k": "2"}, "'k' must be an integer >= 1"),
        ("priority", {"types": "fact"}, "'types' must be a list of names"),
        ("priority", {"roles": ["admin", "admin"]}, "'admin' appears twice in 'roles'"),
        ("priority", {"roles": [""]}, "'roles' must be a list of names"),
    ],
)
def test_bad_params_escalate_with_the_problem(
    name: str, params: dict[str, JsonValue], message: str
) -> None:
    d = decide([cand(1), cand(2)], Rule(name, 1, params))
    assert d.status == "escalated"
    info = explain(d)
    assert info["reason"] == "bad_params"
    problem = detail(d)["problem"]
    assert isinstance(problem, str)
    assert message in problem, problem


def test_the_explanation_lists_every_candidate_sorted_by_id() -> None:
    cands = [cand(3, confidence=9_000), cand(1, role=None), cand(2, type="retraction")]
    info = explain(decide(cands, Rule("lww")))
    assert info["candidates"] == [
        {
            "id": cid(n).hex(),
            "agent": cid(100).hex(),
            "role": role,
            "type": kind,
            "hlc": [1000, 0],
            "confidence": confidence,
        }
        for n, role, kind, confidence in [
            (1, None, "fact", None),
            (2, "writer", "retraction", None),
            (3, "writer", "fact", 9_000),
        ]
    ]


def test_decision_bytes_are_canonical_json_with_hex_ids() -> None:
    d = decide([cand(2, hlc=(2000, 0)), cand(1)], Rule("lww", 2))
    raw = d.to_bytes()
    doc = json.loads(raw)
    assert canonical_bytes(doc) == raw
    assert (doc["status"], doc["winner"], doc["rule"], doc["version"]) == (
        "resolved",
        cid(2).hex(),
        "lww",
        2,
    )


def test_decisions_refuse_to_be_inconsistent() -> None:
    with pytest.raises(ValueError, match="names a winner"):
        Decision("resolved", None, "lww", 1, {})
    with pytest.raises(ValueError, match="names a winner"):
        Decision("escalated", cid(1), "lww", 1, {})
    with pytest.raises(ValueError, match="status"):
        Decision("maybe", None, "lww", 1, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("LWW",), "rule name"),
        (("lww", 0), "version must be an integer >= 1"),
        (("lww", True), "version must be an integer >= 1"),
        (("lww", 1, {"x": 0.5}), "float"),
        (("lww", 1, ["x"]), "params must be a JSON object"),
    ],
)
def test_rules_refuse_bad_names_versions_and_params(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(*args)  # type: ignore[arg-type]


# -- input order never matters -----------------------------------------------------------------

AGENTS = [cid(200 + n) for n in range(4)]
ROLE_NAMES = ["admin", "writer", "resolver", None]
TYPE_NAMES = ["fact", "observation", "instruction", "retraction"]

candidate_sets = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.sampled_from(AGENTS),
        st.sampled_from(ROLE_NAMES),
        st.sampled_from(TYPE_NAMES),
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
        st.sampled_from(["a", "b", {"x": [1, 2]}, None, 7]),
    ),
    min_size=1,
    max_size=7,
    unique_by=lambda row: row[0],
).map(
    lambda rows: [
        Candidate(i, a, r, t, h, None if t == "retraction" else v) for i, a, r, t, h, v in rows
    ]
)
rules = st.sampled_from(
    [
        Rule("lww"),
        Rule("trust", 2, {"roles": {"admin": 5, "writer": 5}, "agents": {AGENTS[0].hex(): 5}}),
        Rule("quorum", 1, {"k": 1}),
        Rule("quorum", 1, {"k": 2}),
        Rule("priority", 1, {"types": ["instruction", "fact"], "roles": ["admin"]}),
        Rule("manual"),
        Rule("missing"),
    ]
)


@settings(max_examples=scaled(300))
@given(candidate_sets, rules, st.randoms(use_true_random=False))
def test_input_order_never_changes_the_decision_bytes(
    cands: list[Candidate], rule: Rule, rng: object
) -> None:
    reference = decide(cands, rule).to_bytes()
    shuffled = list(cands)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert decide(shuffled, rule).to_bytes() == reference
    assert decide(reversed(cands), rule).to_bytes() == reference
    assert decide(iter(sorted(cands, key=lambda c: c.hlc)), rule).to_bytes() == reference


@settings(max_examples=scaled(200))
@given(candidate_sets.filter(lambda cs: len(cs) >= 2), st.permutations(range(7)))
def test_every_permutation_gives_the_same_bytes(cands: list[Candidate], order: list[int]) -> None:
    permuted = [cands[i] for i in order if i < len(cands)]
    for rule in (
        Rule("lww"),
        Rule("quorum", 1, {"k": 2}),
        Rule("priority", 1, {"types": ["fact"]}),
    ):
        assert decide(permuted, rule).to_bytes() == decide(cands, rule).to_bytes()


# -- custom rules --------------------------------------------------------------------------------


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    target: object
    loads: list[str] = field(default_factory=list)

    def load(self) -> object:
        self.loads.append(self.name)
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


class MostConfident:
    """A custom rule: the highest confidence wins; escalate when no candidate states one."""

    name = "most-confident"
    version = 3

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        scored = [c for c in candidates if c.confidence is not None]
        if not scored:
            return Decision("escalated", None, self.name, self.version, {"reason": "no_confidence"})
        best = max(scored, key=lambda c: (c.confidence, c.hlc))
        return Decision(
            "resolved",
            best.claim_id,
            self.name,
            self.version,
            {
                "reason": "most_confident",
                "why": "highest confidence",
                "confidence": best.confidence,
            },
        )


class Boom:
    name = "boom"
    version = 1

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        raise ZeroDivisionError(f"object at {id(self):#x}")  # a message that differs per process


class FakeEntryPoints:
    """Stands in for the installed ``memmesh.policies`` entry points."""

    def __init__(self) -> None:
        self.table: dict[str, list[FakeEntryPoint]] = {}
        self.lookups: list[str] = []

    def __call__(self, name: str) -> list[FakeEntryPoint]:
        self.lookups.append(name)
        return self.table.get(name, [])

    def add(self, name: str, target: object) -> FakeEntryPoint:
        n = len(self.table.get(name, []))
        ep = FakeEntryPoint(name, f"plugin_{name.replace('-', '_')}:rule{n}", target)
        self.table.setdefault(name, []).append(ep)
        return ep


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEntryPoints]:
    """Replace the registry's entry-point lookup; the default registry starts empty."""
    fake = FakeEntryPoints()
    monkeypatch.setattr(registry_module, "entry_points_named", fake)
    DEFAULT_REGISTRY.clear()
    yield fake
    DEFAULT_REGISTRY.clear()


def test_a_custom_rule_from_an_entry_point_decides(
    entry_points: FakeEntryPoints,
) -> None:
    ep = entry_points.add("most-confident", MostConfident())
    cands = [cand(1, confidence=100, hlc=(9, 0)), cand(2, confidence=9_000), cand(3)]
    d = decide(cands, Rule("most-confident", 12, {"anything": ["goes"]}))
    assert (d.status, d.winner, d.rule, d.version) == ("resolved", cid(2), "most-confident", 12)
    info = explain(d)
    assert (info["reason"], info["why"], info["impl_version"]) == (
        "most_confident",
        "highest confidence",
        3,
    )
    assert info["detail"] == {"confidence": 9_000}
    d = decide([cand(1), cand(2)], Rule("most-confident"))
    assert d.status == "escalated" and explain(d)["reason"] == "no_confidence"
    assert explain(d)["why"] == ""
    # Loaded lazily, once, then cached.
    assert ep.loads == ["most-confident"]
    assert get_rule("most-confident") is not None and ep.loads == ["most-confident"]


def test_an_entry_point_giving_a_class_is_instantiated(
    entry_points: FakeEntryPoints,
) -> None:
    entry_points.add("most-confident", MostConfident)
    assert isinstance(get_rule("most-confident"), MostConfident)


def test_a_custom_rule_that_raises_escalates_with_the_exception_type(
    entry_points: FakeEntryPoints,
) -> None:
    entry_points.add("boom", Boom())
    d = decide([cand(1), cand(2)], Rule("boom"))
    assert d.status == "escalated"
    info = explain(d)
    assert info["reason"] == "rule_error"
    assert info["detail"] == {"stage": "decide", "error": "ZeroDivisionError"}
    assert "0x" not in d.to_bytes().decode()  # the (per-process) message stays out


@dataclass
class Returns:
    """A rule returning whatever it is given (to check the engine's checks on results)."""

    out: object
    name: str = "returns"
    version: int = 1
    seen: list[tuple[Sequence[Candidate], Mapping[str, JsonValue], Context]] = field(
        default_factory=list
    )

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> object:
        self.seen.append((candidates, params, ctx))
        return self.out


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        (None, "NoneType is not a Decision"),
        (Decision("resolved", cid(9), "returns", 1, {}), "the winner is not one of the candidates"),
        (
            Decision("resolved", cid(1), "returns", 1, {"x": 0.5}),  # type: ignore[dict-item]
            "the explanation is not canonical JSON",
        ),
        (
            Decision("resolved", cid(1), "returns", 1, {1: "x"}),  # type: ignore[dict-item]
            "the explanation has a member name that is not a string",
        ),
    ],
)
def test_a_custom_rule_returning_nonsense_escalates(out: object, problem: str) -> None:
    registry = Registry(find=lambda name: [])
    registry.register(Returns(out))
    d = decide([cand(1), cand(2)], Rule("returns"), registry=registry)
    assert d.status == "escalated"
    assert detail(d) == {"stage": "result", "error": "invalid_decision", "problem": problem}


def test_a_custom_rule_sees_sorted_copies_and_the_context() -> None:
    rule = Returns(Decision("resolved", cid(1), "x", 1, {"reason": "ok"}))
    registry = Registry(find=lambda name: [])
    registry.register(rule)
    params: dict[str, JsonValue] = {"list": [1]}
    cands = [cand(2, value={"a": [1]}), cand(1)]
    ctx = Context(("team",), "capital")
    d = decide(cands, Rule("returns", 5, params), ctx, registry=registry)
    assert (d.winner, d.rule, d.version) == (cid(1), "returns", 5)  # re-stamped by the engine
    given, seen_params, seen_ctx = rule.seen[0]
    assert [c.claim_id for c in given] == [cid(1), cid(2)]
    assert seen_ctx == ctx and seen_params == params
    mutable = given[1].value
    assert isinstance(mutable, dict) and isinstance(mutable["a"], list)
    mutable["a"].append(2)
    seen_params["list"].append(2)  # type: ignore[union-attr]
    assert cands[0].value == {"a": [1]} and params == {"list": [1]}


def test_a_custom_rule_can_refuse_its_params() -> None:
    class Picky(MostConfident):
        name = "picky"

        def check_params(self, params: Mapping[str, JsonValue]) -> None:
            if "level" not in params:
                raise ValueError("picky params: 'level' is required")

    registry = Registry(find=lambda name: [])
    registry.register(Picky())
    d = decide([cand(1), cand(2)], Rule("picky"), registry=registry)
    assert (explain(d)["reason"], detail(d)) == (
        "bad_params",
        {"problem": "picky params: 'level' is required"},
    )
    d = decide([cand(1, confidence=1), cand(2)], Rule("picky", 1, {"level": 1}), registry=registry)
    assert d.winner == cid(1)


@pytest.mark.parametrize(
    ("targets", "error"),
    [
        ([ImportError("no module named plugin")], "ImportError"),
        ([MostConfident(), Boom()], "ambiguous"),
        ([Boom()], "not_a_rule"),  # the entry point "x" gives a rule called "boom"
        ([object()], "not_a_rule"),
        ([type("NoVersion", (), {"name": "x", "decide": lambda self: None})()], "not_a_rule"),
    ],
)
def test_a_custom_rule_that_cannot_load_escalates(
    entry_points: FakeEntryPoints, targets: list[object], error: str
) -> None:
    name = "most-confident" if error == "ambiguous" else "x"
    for target in targets:
        entry_points.add(name, target)
    with pytest.raises(RuleLoadError) as raised:
        get_rule(name)
    assert raised.value.error == error
    d = decide([cand(1), cand(2)], Rule(name))
    assert detail(d) == {"stage": "load", "error": error}
    assert explain(d)["reason"] == "rule_error"


def test_built_in_names_are_never_looked_up_or_replaced(
    entry_points: FakeEntryPoints,
) -> None:
    ep = entry_points.add("lww", Boom())
    assert decide([cand(1), cand(2, hlc=(5000, 0))], Rule("lww")).winner == cid(2)
    assert ep.loads == [] and entry_points.lookups == []
    with pytest.raises(ValueError, match="built-in"):
        Registry().register(type("Fake", (MostConfident,), {"name": "quorum"})())


def test_unknown_names_are_looked_up_once(entry_points: FakeEntryPoints) -> None:
    for _ in range(3):
        assert decide([cand(1), cand(2)], Rule("nowhere")).status == "escalated"
    assert entry_points.lookups == ["nowhere"]


def test_the_real_entry_point_lookup_finds_nothing_unknown() -> None:
    assert registry_module.entry_points_named("memmesh-test-no-such-rule") == ()
    assert Registry().get("memmesh-test-no-such-rule") is None
    assert Registry().get("Not A Name") is None
