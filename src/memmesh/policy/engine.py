"""Applying a rule to one subject's live candidates: :func:`decide` (DESIGN §6).

The engine sorts the candidates by claim id (so their order never matters), settles the trivial
cases itself, runs the rule, checks what a custom rule gave back, and wraps the result in the
explanation every decision shares. A rule that cannot be found, whose params are wrong, or that
raises or returns nonsense gives an escalation that says so; it never crashes the caller.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping

from ..canonical import JsonValue, canonical_bytes
from ..ids import short_id
from .model import ESCALATED, RESOLVED, Candidate, Context, Decision, Rule, RuleImpl
from .registry import DEFAULT_REGISTRY, Registry, RuleLoadError
from .rules import BUILTIN_RULES

__all__ = ["decide"]

_NO_CONTEXT = Context()


def decide(
    candidates: Iterable[Candidate],
    rule: Rule,
    ctx: Context | None = None,
    *,
    registry: Registry | None = None,
) -> Decision:
    """The decision of ``rule`` on the live ``candidates`` of one subject.

    Candidates may come in any order. None is a caller's error (``ValueError``), as are two with
    one claim id. One candidate is no conflict: it wins, whatever the rule (``single_candidate``).
    ``registry`` defaults to the process-wide one (built-ins and ``memmesh.policies`` entry
    points).
    """
    ordered = sorted(candidates, key=lambda c: c.claim_id)
    if not ordered:
        raise ValueError("a decision needs at least one candidate")
    for before, after in itertools.pairwise(ordered):
        if before.claim_id == after.claim_id:
            raise ValueError(f"candidate {short_id(before.claim_id)} is given twice")
    if len(ordered) == 1:
        only = ordered[0]
        why = f"{short_id(only.claim_id)} is the only live claim: there is no conflict"
        return _final(rule, None, ordered, _resolved(only.claim_id, "single_candidate", why))
    try:
        impl = (registry or DEFAULT_REGISTRY).get(rule.name)
    except RuleLoadError as exc:
        why = f"rule {rule.name!r} could not be loaded ({exc.error})"
        detail = {"stage": "load", "error": exc.error}
        return _final(rule, None, ordered, _escalated("rule_error", why, detail))
    if impl is None:
        why = f"no rule called {rule.name!r} is installed on this node"
        return _final(rule, None, ordered, _escalated("unknown_rule", why))
    builtin = BUILTIN_RULES.get(rule.name) is impl
    # A custom rule gets copies: whatever it does to them cannot leak into the caller's data.
    params = dict(rule.params) if builtin else copy.deepcopy(dict(rule.params))
    given = tuple(ordered) if builtin else copy.deepcopy(tuple(ordered))
    stage = "params"
    try:
        check = getattr(impl, "check_params", None)
        if check is not None:
            try:
                check(params)
            except ValueError as exc:
                message = str(exc)
                escalation = _escalated("bad_params", message, {"problem": message})
                return _final(rule, impl, ordered, escalation)
        stage = "decide"
        out = impl.decide(given, params, ctx or _NO_CONTEXT)
    except Exception as exc:  # noqa: BLE001 - a failing rule escalates, it never crashes
        name = type(exc).__name__
        why = f"rule {rule.name!r} raised {name}"
        detail = {"stage": stage, "error": name}
        return _final(rule, impl, ordered, _escalated("rule_error", why, detail))
    problem = _problem(out, ordered)
    if problem is not None:
        why = f"rule {rule.name!r} returned an invalid decision: {problem}"
        detail = {"stage": "result", "error": "invalid_decision", "problem": problem}
        return _final(rule, impl, ordered, _escalated("rule_error", why, detail))
    assert isinstance(out, Decision)
    return _final(rule, impl, ordered, out)


def _resolved(winner: bytes, reason: str, why: str) -> Decision:
    return Decision(RESOLVED, winner, "", 0, {"reason": reason, "why": why})


def _escalated(reason: str, why: str, detail: Mapping[str, JsonValue] | None = None) -> Decision:
    return Decision(ESCALATED, None, "", 0, {"reason": reason, "why": why, **(detail or {})})


def _problem(out: object, ordered: list[Candidate]) -> str | None:
    """What is wrong with a rule's result, or ``None``. Messages are fixed text, so the
    escalation they produce is the same on every node."""
    if not isinstance(out, Decision):
        return f"{type(out).__name__} is not a Decision"
    if out.winner is not None and all(c.claim_id != out.winner for c in ordered):
        return "the winner is not one of the candidates"
    if not all(isinstance(name, str) for name in out.explanation):
        return "the explanation has a member name that is not a string"
    try:
        canonical_bytes(dict(out.explanation))
    except (ValueError, RecursionError):
        return "the explanation is not canonical JSON"
    return None


def _final(rule: Rule, impl: RuleImpl | None, ordered: list[Candidate], out: Decision) -> Decision:
    """``out`` re-stamped with the policy's rule and version, its explanation wrapped in the
    members every decision shares; ``reason`` and ``why`` are lifted out of the rule's own
    explanation, the rest of it becomes ``detail``."""
    detail = dict(out.explanation)
    reason = detail.pop("reason", None)
    why = detail.pop("why", None)
    explanation: dict[str, JsonValue] = {
        "rule": rule.name,
        "version": rule.version,
        "impl_version": None if impl is None else impl.version,
        "candidates": [c.to_json() for c in ordered],
        "reason": reason if isinstance(reason, str) else out.status,
        "why": why if isinstance(why, str) else "",
        "detail": detail,
    }
    return Decision(out.status, out.winner, rule.name, rule.version, explanation)
