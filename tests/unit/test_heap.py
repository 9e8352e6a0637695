"""The heap keeper: what a node integrates is frozen every ``freeze_every_claims`` claims (after
one collection of what is not frozen yet), so a full collection walks what arrived since, not the
whole history; a flood of inbound connections puts the freeze off; every collection is observed.

Freezing is process-wide: each test unfreezes what it froze, so the rest of the run collects as
before.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from memmesh.runtime.heap import HeapKeeper


class _Node:
    """Tracked objects, as a node's records are: no cycles among them."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.children: list[_Node] = []


@pytest.fixture
def keeper() -> Iterator[HeapKeeper]:
    kept = HeapKeeper(freeze_every_claims=100, inbound_max=4)
    kept.install(0)
    try:
        yield kept
    finally:
        kept.uninstall()
        gc.unfreeze()


def test_nothing_is_frozen_before_enough_claims_arrive(keeper: HeapKeeper) -> None:
    frozen = gc.get_freeze_count()
    assert not keeper.settle(99, inbound=0)
    assert keeper.freezes == 0
    assert gc.get_freeze_count() == frozen


def test_a_freeze_takes_what_is_alive_out_of_every_later_collection(keeper: HeapKeeper) -> None:
    history = [_Node(i) for i in range(20_000)]  # what the node integrated, alive for good
    walked_before = len(gc.get_objects())  # what a full collection walks now
    assert keeper.settle(100, inbound=0)
    assert keeper.freezes == 1
    assert gc.get_freeze_count() >= len(history)
    assert len(gc.get_objects()) <= walked_before - len(history)
    # The freeze's own collection was observed as a full one, and counted.
    assert keeper.pauses[2].count >= 1
    assert keeper.state()["freezes"] == 1
    assert keeper.state()["frozen_objects"] == gc.get_freeze_count()


def test_garbage_is_collected_before_the_freeze_not_frozen(keeper: HeapKeeper) -> None:
    """Cyclic garbage present at a freeze would never be collected once frozen: the freeze's
    collection frees it first."""
    gc.disable()  # no automatic collection may free it first: the freeze's must
    try:
        cycle = _Node(1)
        cycle.children.append(cycle)
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # garbage, but only a collection can free a cycle
        assert keeper.settle(100, inbound=0)
    finally:
        gc.enable()
    assert gone() is None


def test_a_frozen_object_is_still_freed_by_reference_counting(keeper: HeapKeeper) -> None:
    record = _Node(7)
    gone = weakref.ref(record)
    assert keeper.settle(100, inbound=0)
    del record
    assert gone() is None


def test_the_next_freeze_waits_for_as_many_claims_again(keeper: HeapKeeper) -> None:
    assert keeper.settle(150, inbound=0)
    assert not keeper.settle(249, inbound=0)  # 99 since the last freeze
    assert keeper.settle(250, inbound=0)
    assert keeper.freezes == 2


def test_a_flood_of_inbound_connections_puts_the_freeze_off(keeper: HeapKeeper) -> None:
    """What a flood of handshakes allocates is not to be frozen: it dies in cycles."""
    frozen = gc.get_freeze_count()
    assert not keeper.settle(500, inbound=5)
    assert keeper.freezes == 0
    assert keeper.freezes_put_off == 1
    assert gc.get_freeze_count() == frozen
    assert keeper.settle(500, inbound=4)  # the flood is over: frozen at the next settle
    assert keeper.freezes == 1


def test_zero_turns_the_policy_off() -> None:
    off = HeapKeeper(freeze_every_claims=0, inbound_max=4)
    off.install(0)
    try:
        assert not off.settle(10**9, inbound=0)
        assert off.freezes == 0
    finally:
        off.uninstall()


def test_every_collection_is_observed_until_uninstalled() -> None:
    observer = HeapKeeper(freeze_every_claims=0, inbound_max=0)
    observer.install(0)
    observer.install(0)  # once only
    try:
        assert gc.callbacks.count(observer._observe) == 1
        gc.collect(0)
        gc.collect()
        assert observer.pauses[0].count >= 1
        assert observer.pauses[2].count >= 1
        assert observer.pause_s_max > 0
    finally:
        observer.uninstall()
    observer.uninstall()  # and again: nothing to remove
    seen = observer.pauses[2].count
    gc.collect()
    assert observer.pauses[2].count == seen
    assert observer._observe not in gc.callbacks


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        HeapKeeper(freeze_every_claims=-1, inbound_max=0)
    with pytest.raises(ValueError, match=">= 0"):
        HeapKeeper(freeze_every_claims=1, inbound_max=-1)
