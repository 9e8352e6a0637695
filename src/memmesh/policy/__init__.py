"""The deterministic policy layer (DESIGN §6): who wins a conflict, and why.

A policy is a pure function from the live candidate claims of one subject, the rule's params and
the authors' roles to a :class:`Decision`: a winner with an explanation, or an escalation. The
output is the same bytes on every node: no clock, no floats, no hash or set order, no locale.

- :func:`decide` applies a :class:`Rule` to :class:`Candidate` s.
- :func:`select_rule` picks the rule for a namespace from admin-signed ``policy`` claims.
- :func:`get_rule` finds built-in rules and custom ones (``memmesh.policies`` entry points).

See ``docs/policies.md``.
"""

from .engine import decide
from .model import ESCALATED, RESOLVED, RETRACTION, Candidate, Context, Decision, Rule, RuleImpl
from .registry import (
    DEFAULT_REGISTRY,
    ENTRY_POINT_GROUP,
    Registry,
    RuleLoadError,
    get_rule,
)
from .rules import BUILTIN_RULES
from .select import (
    DEFAULT_RULE,
    POLICY_TYPE,
    PolicyClaim,
    PolicyTable,
    parse_pattern,
    parse_policy_value,
    pattern_matches,
    select_rule,
)

__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_REGISTRY",
    "DEFAULT_RULE",
    "ENTRY_POINT_GROUP",
    "ESCALATED",
    "POLICY_TYPE",
    "RESOLVED",
    "RETRACTION",
    "Candidate",
    "Context",
    "Decision",
    "PolicyClaim",
    "PolicyTable",
    "Registry",
    "Rule",
    "RuleImpl",
    "RuleLoadError",
    "decide",
    "get_rule",
    "parse_pattern",
    "parse_policy_value",
    "pattern_matches",
    "select_rule",
]
