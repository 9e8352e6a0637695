"""Choosing the rule for a namespace: patterns, specificity, the meta-rule (DESIGN §6)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.canonical import JsonValue
from memmesh.claims import make_claim
from memmesh.policy import (
    DEFAULT_RULE,
    PolicyClaim,
    PolicyTable,
    Rule,
    parse_pattern,
    parse_policy_value,
    pattern_matches,
    select_rule,
)
from memmesh.policy.select import _specificity
from memmesh.testing import MeshFixture, scaled


def pid(n: int) -> bytes:
    return n.to_bytes(2, "big") + hashlib.sha256(b"policy" + n.to_bytes(2, "big")).digest()[:30]


def policy(n: int, pattern: str, rule: str = "lww", version: int = 1) -> PolicyClaim:
    params: dict[str, JsonValue] = {"k": 1} if rule == "quorum" else {}
    return PolicyClaim.from_value(
        pid(n), {"pattern": pattern, "rule": rule, "version": version, "params": params}
    )


@pytest.mark.parametrize(
    ("pattern", "namespace", "matches"),
    [
        ("a", ("a",), True),
        ("a", ("b",), False),
        ("a", ("a", "b"), False),
        ("a.b", ("a", "b"), True),
        ("a.*", ("a", "b"), True),
        ("a.*", ("a",), False),
        ("a.*", ("a", "b", "c"), False),
        ("*.b", ("x", "b"), True),
        ("*", ("anything",), True),
        ("a.**", ("a",), True),
        ("a.**", ("a", "b", "c", "d"), True),
        ("a.**", ("b", "a"), False),
        ("**", ("x", "y"), True),
        ("a.*.**", ("a",), False),
        ("a.*.**", ("a", "b"), True),
        ("a.*.c.**", ("a", "b", "c", "d"), True),
        ("a.*.c.**", ("a", "b", "x", "d"), False),
        ("A", ("a",), False),
    ],
)
def test_pattern_matching(pattern: str, namespace: tuple[str, ...], matches: bool) -> None:
    assert pattern_matches(parse_pattern(pattern), namespace) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "non-empty string"),
        (3, "non-empty string"),
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a.", "empty label"),
        ("**.a", "'**' may only be the last label"),
        ("a.**.**", "'**' may only be the last label"),
        ("a.b*", "mixes '*' with text"),
        ("***", "mixes '*' with text"),
        (".".join(["x"] * 17), "has 17 labels"),
        ("x" * 129, "exceeds 128 bytes"),
    ],
)
def test_invalid_patterns_are_refused_with_the_reason(pattern: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        parse_pattern(pattern)


def test_sixteen_labels_and_a_final_double_star_are_allowed() -> None:
    labels = parse_pattern(".".join(["x"] * 16) + ".**")
    assert len(labels) == 17
    assert pattern_matches(labels, ("x",) * 16)


def test_no_policy_means_lww_version_1() -> None:
    assert select_rule([], ("a", "b")) == (Rule("lww", 1, {}), None)
    assert Rule("lww") == DEFAULT_RULE
    assert select_rule([policy(1, "other")], ("a",)) == (DEFAULT_RULE, None)


@pytest.mark.parametrize(
    ("namespace", "patterns", "winner"),
    [
        # more literal labels first
        (("a", "b", "c"), ["**", "a.**", "a.b.**", "*.b.c"], "*.b.c"),
        (("a", "b"), ["*.*", "a.*", "*.b", "a.b"], "a.b"),
        # then an exact length before a final **
        (("a",), ["a.**", "a"], "a"),
        (("a", "b", "c"), ["a.**", "a.*.*"], "a.*.*"),
        # then more * (a.*.** only matches what a.** matches)
        (("a", "b", "c"), ["a.**", "a.*.**"], "a.*.**"),
        # then literals further left
        (("a", "b"), ["*.b", "a.*"], "a.*"),
        (("a", "b", "c"), ["*.b.**", "a.*.**"], "a.*.**"),
        (("x", "y"), ["**", "*.**"], "*.**"),
    ],
)
def test_the_most_specific_matching_pattern_governs(
    namespace: tuple[str, ...], patterns: list[str], winner: str
) -> None:
    policies = [policy(n, p, "quorum" if p == winner else "manual") for n, p in enumerate(patterns)]
    for order in (policies, policies[::-1]):
        rule, source = select_rule(order, namespace)
        assert rule.name == "quorum"
        assert source == next(p.claim_id for p in policies if p.pattern == winner)


def test_the_meta_rule_highest_version_then_smallest_claim_id() -> None:
    v2 = policy(5, "a.*", "trust", 2)
    v3_big = policy(9, "a.*", "manual", 3)
    v3_small = policy(4, "a.*", "quorum", 3)
    v1 = policy(1, "a.*", "lww", 1)
    for order in ([v2, v3_big, v3_small, v1], [v1, v3_small, v3_big, v2]):
        assert select_rule(order, ("a", "z")) == (v3_small.rule, pid(4))
    assert select_rule([v2, v1], ("a", "z")) == (v2.rule, pid(5))
    # The meta-rule orders claims for one pattern; it never makes a vaguer pattern win.
    assert select_rule([v3_small, policy(2, "a.z", "lww", 1)], ("a", "z"))[1] == pid(2)


def test_a_table_answers_many_namespaces() -> None:
    table = PolicyTable([policy(1, "team.**", "manual"), policy(2, "team.private.*", "quorum")])
    assert table.select(("team",))[0].name == "manual"
    assert table.select(("team", "private", "x"))[0].name == "quorum"
    assert table.select(("team", "private"))[0].name == "manual"
    assert table.select(("other",)) == (DEFAULT_RULE, None)


# -- parsing policy values -----------------------------------------------------------------------


def test_a_valid_policy_value_parses() -> None:
    value: dict[str, JsonValue] = {
        "pattern": "a.b.*",
        "rule": "trust",
        "version": 3,
        "params": {"roles": {"admin": 100, "writer": 10}},
    }
    assert parse_policy_value(value) == (
        "a.b.*",
        Rule("trust", 3, {"roles": {"admin": 100, "writer": 10}}),
    )
    assert parse_policy_value({"pattern": "x", "rule": "manual", "version": 1}) == (
        "x",
        Rule("manual", 1, {}),
    )
    # A custom rule is accepted whether or not this node has it: nodes must read policies alike.
    assert parse_policy_value(
        {"pattern": "x", "rule": "my-org.rule", "version": 2, "params": {"any": [1]}}
    ) == ("x", Rule("my-org.rule", 2, {"any": [1]}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lww", "a policy value is an object"),
        ({"pattern": "a", "rule": "lww", "version": 1, "scope": "x"}, "unknown member(s) 'scope'"),
        ({"rule": "lww", "version": 1}, "'pattern' is required"),
        ({"pattern": "a", "version": 1}, "'rule' is required"),
        ({"pattern": "a", "rule": "lww"}, "'version' is required"),
        ({"pattern": "a..b", "rule": "lww", "version": 1}, "empty label"),
        ({"pattern": ["a"], "rule": "lww", "version": 1}, "pattern must be a non-empty string"),
        ({"pattern": "a", "rule": "LWW", "version": 1}, "'rule' must be a rule name"),
        ({"pattern": "a", "rule": "", "version": 1}, "'rule' must be a rule name"),
        ({"pattern": "a", "rule": "lww", "version": 0}, "'version' must be an integer >= 1"),
        ({"pattern": "a", "rule": "lww", "version": True}, "'version' must be an integer >= 1"),
        ({"pattern": "a", "rule": "lww", "version": "3"}, "'version' must be an integer >= 1"),
        ({"pattern": "a", "rule": "lww", "version": 1, "params": []}, "'params' must be an object"),
        (
            {"pattern": "a", "rule": "lww", "version": 1, "params": {"x": 1}},
            "lww params: unknown member(s) 'x'",
        ),
        (
            {"pattern": "a", "rule": "quorum", "version": 1, "params": {}},
            "quorum params: 'k' (the number of agreeing agents) is required",
        ),
        (
            {"pattern": "a", "rule": "trust", "version": 1, "params": {"roles": {"admin": "9"}}},
            "the weight of role 'admin' must be an integer",
        ),
        (
            {"pattern": "a", "rule": "priority", "version": 1, "params": {"types": ["a", "a"]}},
            "'a' appears twice in 'types'",
        ),
    ],
)
def test_invalid_policy_values_are_refused_clearly(value: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_policy_value(value)
    assert message in str(raised.value)
    assert str(raised.value).startswith(("policy value", "a policy value"))


def test_policy_claims_come_from_signed_policy_claims() -> None:
    fx = MeshFixture("policy-select")
    value = {"pattern": "team.**", "rule": "quorum", "version": 2, "params": {"k": 2}}
    claim = fx.claim(fx.admin, "team.**", value, type="policy", namespace=("_mesh", "policies"))
    parsed = PolicyClaim.from_claim(claim)
    assert parsed == PolicyClaim(claim.id, "team.**", Rule("quorum", 2, {"k": 2}))
    assert select_rule([parsed], ("team", "x")) == (parsed.rule, claim.id)
    fact = make_claim(
        fx.admin,
        mesh_id=fx.mesh_id,
        aseq=99,
        hlc=(1, 0),
        namespace=("_mesh", "policies"),
        key="k",
        type="fact",
        value=value,
    )
    with pytest.raises(ValueError, match="not a policy claim"):
        PolicyClaim.from_claim(fact)


# -- properties ----------------------------------------------------------------------------------

labels = st.sampled_from(["a", "b", "*"])
patterns = st.builds(
    lambda body, tail: ".".join(body + (["**"] if tail else [])),
    st.lists(labels, min_size=0, max_size=4),
    st.booleans(),
).filter(bool)
namespaces = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=5).map(tuple)


@settings(max_examples=scaled(300))
@given(st.lists(patterns, min_size=1, max_size=8, unique=True), namespaces)
def test_specificity_is_total_among_the_patterns_matching_a_namespace(
    pats: list[str], namespace: tuple[str, ...]
) -> None:
    matching = [p for p in pats if pattern_matches(parse_pattern(p), namespace)]
    keys = [_specificity(parse_pattern(p)) for p in matching]
    assert len(set(keys)) == len(keys), matching
    policies = [policy(n, p) for n, p in enumerate(pats)]
    _, source = select_rule(policies, namespace)
    if not matching:
        assert source is None
    else:
        best = min(matching, key=lambda p: _specificity(parse_pattern(p)))
        assert source == pid(pats.index(best))


@settings(max_examples=scaled(200))
@given(
    st.lists(
        st.tuples(st.sampled_from(["a.*", "a.**", "*.b", "a.b"]), st.integers(1, 3)),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_selection_does_not_depend_on_the_order_of_policy_claims(
    rows: list[tuple[str, int]], rng: object
) -> None:
    policies = [policy(n, p, "lww", v) for n, (p, v) in enumerate(rows)]
    expected = select_rule(policies, ("a", "b"))
    shuffled = list(policies)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert select_rule(shuffled, ("a", "b")) == expected
    # ... and the winner is the meta-rule's choice for the most specific pattern present.
    present = {p for p, _ in rows}
    top = next(p for p in ("a.b", "a.*", "*.b", "a.**") if p in present)
    versions = [(v, pid(n)) for n, (p, v) in enumerate(rows) if p == top]
    best_version = max(v for v, _ in versions)
    assert expected[1] == min(i for v, i in versions if v == best_version)
