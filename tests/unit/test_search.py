"""Search filters (``memmesh.memory.search``): LangGraph's operators, kinds never mixed."""

from __future__ import annotations

import pytest

from memmesh.memory.search import matches, parse_filter

VALUE = {"tier": "gold", "seats": 40, "active": True, "tags": ["a"]}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"tier": "gold"}, True),
        ({"tier": "silver"}, False),
        ({"seats": {"$gt": 39}}, True),
        ({"seats": {"$gt": 40}}, False),
        ({"seats": {"$gte": 40, "$lte": 40}}, True),
        ({"seats": {"$lt": 40}}, False),
        ({"seats": {"$ne": 41}}, True),
        ({"missing": {"$ne": 1}}, True),
        ({"missing": 1}, False),
        ({"active": 1}, False),  # true is not 1
        ({"active": True}, True),
        ({"seats": {"$gt": "a"}}, False),  # no comparing across kinds
        ({"tier": {"$gte": "gold"}}, True),
        ({"active": {"$gt": 0}}, False),
        ({"tags": ["a"]}, True),
        ({"tier": "gold", "seats": {"$gt": 50}}, False),
    ],
)
def test_conditions(conditions: dict[str, object], expected: bool) -> None:
    assert all(matches(VALUE, c) for c in parse_filter(conditions)) is expected


def test_a_value_that_is_not_an_object_matches_only_ne() -> None:
    (eq,) = parse_filter({"x": 1})
    (ne,) = parse_filter({"x": {"$ne": 1}})
    assert not matches("text", eq) and matches("text", ne)


@pytest.mark.parametrize("bad", [[1], "x", {"x": {"$regex": "a"}}])
def test_bad_filters_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"filter|operator"):
        parse_filter(bad)
