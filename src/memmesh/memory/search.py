"""Searching the view: values under a namespace prefix that match field conditions.

Conditions follow LangGraph's store filters: ``{"field": value}`` (equal) or
``{"field": {"$gt": value, ...}}`` with ``$eq $ne $gt $gte $lt $lte``. A field compares only with
a value of its own kind (integers with integers, strings with strings; ``true`` is not ``1``);
anything else does not match. Subjects come in namespace then key order, so a page
(``limit``, ``offset``) is stable while nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..canonical import JsonValue
from .types import RETRACTION
from .view import Subject, SubjectKey, View

__all__ = ["OPERATORS", "Condition", "matches", "parse_filter", "search"]

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
Condition = tuple[str, str, JsonValue]
"""(field, operator, operand)."""


def parse_filter(value: object) -> list[Condition]:
    """The conditions of a filter object; ``ValueError`` for anything else."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ValueError("filter is an object of field conditions")
    out: list[Condition] = []
    for name in sorted(value):
        condition = value[name]
        if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
            for op in sorted(condition):
                if op not in OPERATORS:
                    raise ValueError(f"unknown filter operator {op}; use {', '.join(OPERATORS)}")
                out.append((name, op, condition[op]))
        else:
            out.append((name, "$eq", condition))
    return out


def matches(value: JsonValue, condition: Condition) -> bool:
    name, op, operand = condition
    if not isinstance(value, dict) or name not in value:
        return op == "$ne"
    field = value[name]
    if op == "$eq":
        return _same(field, operand)
    if op == "$ne":
        return not _same(field, operand)
    if isinstance(field, bool) or isinstance(operand, bool):
        return False
    if isinstance(field, int) and isinstance(operand, int):
        return _compare(op, field, operand)
    if isinstance(field, str) and isinstance(operand, str):
        return _compare(op, field, operand)
    return False


def _compare(op: str, a: int | str, b: int | str) -> bool:
    if op == "$gt":
        return a > b  # type: ignore[operator]
    if op == "$gte":
        return a >= b  # type: ignore[operator]
    if op == "$lt":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]


def _same(a: JsonValue, b: JsonValue) -> bool:
    return type(a) is type(b) and a == b


def search(
    view: View,
    prefix: tuple[str, ...],
    conditions: list[Condition],
    *,
    limit: int,
    offset: int = 0,
) -> Iterator[tuple[SubjectKey, Subject]]:
    """Subjects under ``prefix`` whose shown value matches every condition (deleted ones and
    open conflicts, which show no value, are left out)."""
    skipped = found = 0
    for key, subject in view.items(prefix):
        entry = subject.value_entry()
        if entry is None or entry.claim.type == RETRACTION:
            continue
        if not all(matches(entry.claim.value, c) for c in conditions):
            continue
        if skipped < offset:
            skipped += 1
            continue
        yield key, subject
        found += 1
        if found >= limit:
            return
