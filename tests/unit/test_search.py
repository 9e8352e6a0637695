"""Search filters (``memmesh.memory.search``): LangGraph's operators, kinds never mixed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.admission import Admission
from memmesh.memory import View
from memmesh.memory.search import matches, parse_filter, search, search_page
from memmesh.memory.types import RETRACTION
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture, scaled

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


# -- pages: bounded reads that go on from a cursor -----------------------------------------------

_LABEL = st.sampled_from(["a", "b", "c"])
_WRITES = st.lists(
    st.tuples(
        st.lists(_LABEL, min_size=1, max_size=3).map(tuple),  # namespace
        st.sampled_from(["k1", "k2", "k3", "k4"]),
        st.integers(0, 3),  # the value's n
        st.booleans(),  # deleted after
    ),
    max_size=30,
)


def _view_of(writes: list[tuple[tuple[str, ...], str, int, bool]]) -> tuple[View, MeshFixture]:
    mesh = MeshFixture("search-pages", nodes=1, writers=1)
    view = View(Admission(MemoryStore(), mesh.genesis))
    for namespace, key, n, delete in writes:
        _write(view, mesh, namespace, key, n, delete=delete)
    return view, mesh


def _write(
    view: View, mesh: MeshFixture, namespace: tuple[str, ...], key: str, n: int, *, delete: bool
) -> None:
    held = view.get(namespace, key)
    claims = [mesh.claim(mesh.writers[0], key, {"n": n}, namespace=namespace,
                         supersedes=held.live if held else ())]  # fmt: skip
    if delete:
        claims.append(mesh.claim(mesh.writers[0], key, None, type="retraction",
                                 namespace=namespace, supersedes=(claims[0].id,)))  # fmt: skip
    admission = view.admission
    env = admission.write_local(mesh.nodes[0], claims, hlc=len(admission.records) + 1)
    view.apply([env.id], 0)


@given(
    _WRITES,
    st.lists(_LABEL, max_size=2).map(tuple),
    st.sampled_from([None, {"n": 1}, {"n": {"$gte": 2}}, {"m": 1}]),
    st.data(),
)
@settings(max_examples=scaled(200), deadline=None)
def test_following_pages_finds_what_one_unbounded_search_finds(
    writes: list[tuple[tuple[str, ...], str, int, bool]],
    prefix: tuple[str, ...],
    wanted: dict[str, object] | None,
    data: st.DataObject,
) -> None:
    """Pages that read at most ``scan_max`` subjects each, each going on from the last one's
    cursor (with what is left of the offset), return together the same subjects in the same
    order as one unbounded search; only the last page has no cursor, and a page ends early
    only at its reading budget."""
    limit, offset = data.draw(st.integers(1, 6)), data.draw(st.integers(0, 4))
    scan_max = data.draw(st.integers(1, 7))
    view, _ = _view_of(writes)
    conditions = parse_filter(wanted)
    shown = [
        (key, subject)
        for key, subject in view.items(prefix)
        if (entry := subject.value_entry()) is not None
        and entry.claim.type != RETRACTION
        and all(matches(entry.claim.value, c) for c in conditions)
    ]
    expected = shown[offset : offset + limit]
    assert search(view, prefix, conditions, limit=limit, offset=offset) == expected
    under = sum(1 for _ in view.scan(prefix))  # steps: subjects and emptied namespaces
    found: list[object] = []
    after, skip = None, offset
    for _ in range(under + 2):
        asked = limit - len(found)
        page = search_page(view, prefix, conditions, limit=asked, offset=skip, after=after,
                           scan_max=scan_max)  # fmt: skip
        assert page.scanned <= scan_max
        found += page.found
        if page.next is None or len(found) == limit:
            break
        if len(page.found) < asked:
            assert page.scanned == scan_max  # short only where the budget ran out
        after, skip = page.next.after, page.next.offset
    else:
        raise AssertionError("the cursors never reached the end")
    assert found == expected


def test_a_cursor_stays_right_while_subjects_are_added_before_it() -> None:
    """Paging by offset shows a subject twice when one is added before the page; a cursor
    goes on after the last subject shown."""
    view, mesh = _view_of([(("a",), k, 1, False) for k in ("k2", "k3", "k4")])
    first = search_page(view, ("a",), [], limit=2, scan_max=100)
    assert [key for (_, key), _ in first.found] == ["k2", "k3"]
    assert first.next is not None and first.next.after == (("a",), "k3")
    _write(view, mesh, ("a",), "k1", 1, delete=False)  # sorts first: shifts every offset
    rest = search_page(view, ("a",), [], limit=2, after=first.next.after, scan_max=100)
    assert [key for (_, key), _ in rest.found] == ["k4"] and rest.next is None


def test_emptied_namespaces_count_against_a_pages_reading_budget() -> None:
    """A prefix of many namespaces whose every subject was deleted: a page reads at most
    ``scan_max`` of them (each is one step, not its keys), and its cursor goes on past the
    last one read, to the one value after them."""
    writes = [((("a", f"n{i:02d}")), "k1", 1, True) for i in range(30)]
    view, mesh = _view_of(writes)
    _write(view, mesh, ("a", "z"), "k1", 1, delete=False)
    assert [key for key, _ in view.items(("a",))] == [(("a", "z"), "k1")]
    steps = list(view.scan(("a",)))
    assert len(steps) == 31 and [s for _, s in steps[:30]] == [None] * 30
    pages, after = [], None
    while True:
        page = search_page(view, ("a",), [], limit=10, after=after, scan_max=4)
        assert page.scanned <= 4
        pages.append(page.found)
        if page.next is None or page.found:
            break
        after = page.next.after
    assert len(pages) == 8 and not any(pages[:-1])  # 30 emptied namespaces, 4 a page
    assert [key for key, _ in pages[-1]] == [(("a", "z"), "k1")]


def test_a_page_that_reads_nothing_is_refused() -> None:
    view, _ = _view_of([])
    with pytest.raises(ValueError, match="at least one"):
        search_page(view, (), [], limit=1, scan_max=0)
