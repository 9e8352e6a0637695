"""The client's request generators follow the node's page cursors (``next``) to the end; the
node's answers are scripted here, the requests checked one by one."""

from __future__ import annotations

from typing import Any

from memmesh.client import _conflicts, _history, _search


def _drive(op: Any, answers: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    calls = []
    try:
        call = next(op)
        for answer in answers:
            calls.append(call)
            call = op.send(answer)
    except StopIteration as stop:
        return calls, stop.value
    raise AssertionError("the generator asked for more than the script answers")


def test_conflicts_are_collected_page_after_page() -> None:
    pages = [
        {"conflicts": [{"id": "a"}, {"id": "b"}], "next": "b"},
        {"conflicts": [{"id": "c"}], "next": "c"},
        {"conflicts": [], "next": None},
    ]
    calls, found = _drive(_conflicts("all"), pages)
    assert [c["id"] for c in found] == ["a", "b", "c"]
    assert [c.path for c in calls] == [
        "/v1/conflicts?status=all",
        "/v1/conflicts?status=all&after=b",
        "/v1/conflicts?status=all&after=c",
    ]


def _item(key: str) -> dict[str, Any]:
    return {"namespace": ["n"], "key": key, "value": 1, "state": "value", "live": [],
            "claim": None, "conflict": None}  # fmt: skip


def test_a_search_goes_on_from_each_cursor_until_it_holds_limit() -> None:
    receipt = {"id": "r"}
    cursor = {"after": {"namespace": ["n"], "key": "k"}, "offset": 1}
    pages = [
        {"items": [], "receipt": receipt, "next": cursor},  # the budget ran out: empty page
        {"items": [_item("a"), _item("b")], "receipt": receipt, "next": {"after": 1}},
    ]
    calls, found = _drive(_search(["n"], None, 2, 3), pages)
    assert len(found) == 2
    assert calls[0].body == {"namespace_prefix": ["n"], "filter": None, "limit": 2, "offset": 3}
    assert calls[1].body == {"namespace_prefix": ["n"], "filter": None, "limit": 2,
                             "cursor": cursor}  # fmt: skip


def test_a_history_is_collected_page_after_page_and_none_is_empty() -> None:
    pages = [{"entries": [{"n": 1}], "next": "c1"}, {"entries": [{"n": 2}], "next": None}]
    calls, found = _drive(_history("h", "k"), pages)
    assert found == [{"n": 1}, {"n": 2}]
    assert [c.path for c in calls] == [
        "/v1/store/items/history?namespace=h&key=k",
        "/v1/store/items/history?namespace=h&key=k&after=c1",
    ]
    assert all(c.missing_ok for c in calls)
    assert _drive(_history("h", "k"), [None])[1] == []
