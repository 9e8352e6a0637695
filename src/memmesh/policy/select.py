"""Which rule governs a namespace: policy claims, patterns and the meta-rule (DESIGN §6).

A policy claim (type ``policy``, signed by an admin) holds::

    {"pattern": "a.b.*", "rule": "lww", "version": 3, "params": {...}}

A pattern is dot-separated labels: a literal label matches itself, ``*`` matches exactly one
label, and a final ``**`` matches any number (zero or more) of remaining labels. Among the
patterns that match a namespace the most specific governs; among the policy claims for one
pattern the meta-rule picks one: the highest version, then the smallest claim id. No match: the
default rule, ``lww`` version 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..canonical import JsonValue
from .model import RULE_NAME_RE, Rule, is_int
from .rules import BUILTIN_RULES

if TYPE_CHECKING:
    from ..claims import Claim

__all__ = [
    "DEFAULT_RULE",
    "POLICY_TYPE",
    "PolicyClaim",
    "PolicyTable",
    "parse_pattern",
    "parse_policy_value",
    "pattern_matches",
    "select_rule",
]

POLICY_TYPE = "policy"
DEFAULT_RULE = Rule("lww", 1, {})
PATTERN_LABELS_MAX = 16
"""A namespace has at most 16 labels (``claims.NAMESPACE_LABELS_MAX``); so has a pattern,
not counting a final ``**``."""
LABEL_BYTES_MAX = 128
_VALUE_MEMBERS = ("params", "pattern", "rule", "version")


def parse_pattern(pattern: object) -> tuple[str, ...]:
    """The labels of a valid pattern; ``ValueError`` saying what is wrong otherwise."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("pattern must be a non-empty string of dot-separated labels")
    labels = tuple(pattern.split("."))
    for at, label in enumerate(labels):
        if not label:
            raise ValueError(
                f"pattern {pattern[:100]!r} has an empty label (two dots, or a dot at an end)"
            )
        if label == "**" and at != len(labels) - 1:
            raise ValueError(f"pattern {pattern[:100]!r}: '**' may only be the last label")
        if "*" in label and label not in ("*", "**"):
            raise ValueError(
                f"pattern {pattern[:100]!r}: label {label[:40]!r} mixes '*' with text; "
                "a wildcard is a whole label, '*' or a final '**'"
            )
        if len(label.encode()) > LABEL_BYTES_MAX:
            raise ValueError(f"pattern {pattern[:100]!r}: a label exceeds {LABEL_BYTES_MAX} bytes")
    fixed = len(labels) - (labels[-1] == "**")
    if fixed > PATTERN_LABELS_MAX:
        raise ValueError(
            f"pattern {pattern[:100]!r} has {fixed} labels; namespaces have at most "
            f"{PATTERN_LABELS_MAX}"
        )
    return labels


def pattern_matches(labels: Sequence[str], namespace: Sequence[str]) -> bool:
    """Whether the parsed pattern ``labels`` matches ``namespace``."""
    if labels and labels[-1] == "**":
        head = labels[:-1]
        if len(namespace) < len(head):
            return False
    else:
        head = labels
        if len(namespace) != len(head):
            return False
    return all(p in ("*", n) for p, n in zip(head, namespace, strict=False))


def _specificity(labels: Sequence[str]) -> tuple[int, int, int, tuple[int, ...]]:
    """A sort key, smaller = more specific, total over distinct patterns matching one namespace.

    1. more literal labels; 2. no final ``**`` before one; 3. more ``*`` (a longer minimum
    length: ``a.*.**`` only matches what ``a.**`` matches); 4. literals further left
    (``a.*`` before ``*.b``). Two distinct patterns that match the same namespace always differ
    in one of these.
    """
    literal = tuple(0 if label in ("*", "**") else 1 for label in labels if label != "**")
    double = 1 if labels and labels[-1] == "**" else 0
    stars = sum(1 for label in labels if label == "*")
    return -sum(literal), double, -stars, tuple(-x for x in literal)


def _check_params(rule: str, params: Mapping[str, JsonValue]) -> None:
    builtin = BUILTIN_RULES.get(rule)
    if builtin is not None:
        builtin.check_params(params)


def parse_policy_value(value: object) -> tuple[str, Rule]:
    """The pattern and rule of a policy claim's value; ``ValueError`` with a clear message.

    Params of a built-in rule are checked here. A custom rule's name is accepted whether or not
    this node has it installed (every node must read a policy claim alike); its params are only
    checked, by the rule itself, when it decides.
    """
    if not isinstance(value, dict):
        raise ValueError(
            'a policy value is an object {"pattern", "rule", "version", "params"}, '
            f"not {type(value).__name__}"
        )
    unknown = sorted(name for name in value if name not in _VALUE_MEMBERS)
    if unknown:
        raise ValueError(
            f"policy value: unknown member(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(map(repr, _VALUE_MEMBERS))}"
        )
    for required in ("pattern", "rule", "version"):
        if required not in value:
            raise ValueError(f"policy value: {required!r} is required")
    pattern = value["pattern"]
    try:
        parse_pattern(pattern)
    except ValueError as exc:
        raise ValueError(f"policy value: {exc}") from None
    assert isinstance(pattern, str)
    rule = value["rule"]
    if not isinstance(rule, str) or not RULE_NAME_RE.fullmatch(rule):
        raise ValueError(
            f"policy value: 'rule' must be a rule name matching {RULE_NAME_RE.pattern}, "
            f"not {str(rule)[:70]!r}"
        )
    version = value["version"]
    if not (is_int(version) and isinstance(version, int) and version >= 1):
        raise ValueError(f"policy value: 'version' must be an integer >= 1, not {version!r}")
    params = value.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"policy value: 'params' must be an object, not {type(params).__name__}")
    try:
        _check_params(rule, params)
        parsed = Rule(rule, version, params)
    except ValueError as exc:
        raise ValueError(f"policy value: {exc}") from None
    return pattern, parsed


@dataclass(frozen=True, slots=True)
class PolicyClaim:
    """One parsed policy claim. Build it only from live ``policy`` claims whose author was an
    admin (checking that is membership's job, not this module's)."""

    claim_id: bytes
    pattern: str
    rule: Rule

    @classmethod
    def from_claim(cls, claim: Claim) -> PolicyClaim:
        """Parse a ``policy`` claim; ``ValueError`` for another type or an invalid value."""
        if claim.type != POLICY_TYPE:
            raise ValueError(f"a {claim.type!r} claim is not a policy claim")
        return cls.from_value(claim.id, claim.value)

    @classmethod
    def from_value(cls, claim_id: bytes, value: object) -> PolicyClaim:
        pattern, rule = parse_policy_value(value)
        return cls(claim_id, pattern, rule)


class PolicyTable:
    """The policy claims in force, indexed once: per pattern the meta-rule's choice, and the
    patterns in specificity order, so :meth:`select` is a scan of the distinct patterns."""

    def __init__(self, policies: Iterable[PolicyClaim]) -> None:
        chosen: dict[str, PolicyClaim] = {}
        for policy in policies:
            held = chosen.get(policy.pattern)
            if held is None or _meta_key(policy) < _meta_key(held):
                chosen[policy.pattern] = policy
        entries = [(parse_pattern(p.pattern), p) for p in chosen.values()]
        entries.sort(key=lambda entry: (_specificity(entry[0]), entry[1].pattern))
        self._entries = entries

    def select(self, namespace: Sequence[str]) -> tuple[Rule, bytes | None]:
        """The rule for ``namespace`` and the id of the policy claim it came from (``None``
        for the default rule)."""
        for labels, policy in self._entries:
            if pattern_matches(labels, namespace):
                return policy.rule, policy.claim_id
        return DEFAULT_RULE, None


def _meta_key(policy: PolicyClaim) -> tuple[int, bytes]:
    """The meta-rule: the highest version, then the smallest claim id (smaller key wins)."""
    return -policy.rule.version, policy.claim_id


def select_rule(
    policies: Iterable[PolicyClaim], namespace: Sequence[str]
) -> tuple[Rule, bytes | None]:
    """The rule governing ``namespace`` under ``policies``, and its source policy claim id."""
    return PolicyTable(policies).select(namespace)
