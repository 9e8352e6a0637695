"""Hybrid logical clock timestamps (docs/PROTOCOL.md §5). The clock is pure: time is passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.hlc import HLC_LOGICAL_MAX, HLC_PHYSICAL_MAX, HybridClock, hlc_pack, hlc_unpack
from memmesh.testing import scaled

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def test_constants() -> None:
    assert HLC_LOGICAL_MAX == 0xFFFF
    assert HLC_PHYSICAL_MAX == 2**48 - 1
    assert hlc_pack(HLC_PHYSICAL_MAX, HLC_LOGICAL_MAX) == 2**64 - 1


def test_pack_layout() -> None:
    assert hlc_pack(T0, 1) == 0x019B_76DA_A800_0001
    assert hlc_pack(T0, 0) == T0 << 16
    assert hlc_pack(0, 0) == 0
    assert hlc_pack(1, 0) == 0x1_0000
    assert hlc_pack(0, HLC_LOGICAL_MAX) == 0xFFFF


@given(
    st.integers(min_value=0, max_value=HLC_PHYSICAL_MAX),
    st.integers(min_value=0, max_value=HLC_LOGICAL_MAX),
)
def test_pack_unpack_round_trip(physical: int, logical: int) -> None:
    packed = hlc_pack(physical, logical)
    assert 0 <= packed < 2**64
    assert hlc_unpack(packed) == (physical, logical)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_unpack_pack_round_trip(value: int) -> None:
    assert hlc_pack(*hlc_unpack(value)) == value


@given(
    st.tuples(
        st.integers(min_value=0, max_value=HLC_PHYSICAL_MAX),
        st.integers(min_value=0, max_value=HLC_LOGICAL_MAX),
    ),
    st.tuples(
        st.integers(min_value=0, max_value=HLC_PHYSICAL_MAX),
        st.integers(min_value=0, max_value=HLC_LOGICAL_MAX),
    ),
)
def test_packed_values_order_like_the_pairs(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (hlc_pack(*a) < hlc_pack(*b)) == (a < b)
    assert (hlc_pack(*a) == hlc_pack(*b)) == (a == b)


@pytest.mark.parametrize(
    ("physical", "logical"),
    [(-1, 0), (HLC_PHYSICAL_MAX + 1, 0), (0, -1), (0, HLC_LOGICAL_MAX + 1)],
)
def test_pack_refuses_out_of_range(physical: int, logical: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        hlc_pack(physical, logical)


def test_clock_refuses_negative_drift() -> None:
    with pytest.raises(ValueError, match="drift_max_ms"):
        HybridClock(drift_max_ms=-1)


def test_tick_follows_physical_time() -> None:
    clock = HybridClock(drift_max_ms=1000)
    assert clock.tick(T0) == hlc_pack(T0, 0)
    assert clock.tick(T0 + 5) == hlc_pack(T0 + 5, 0)
    assert clock.last == hlc_pack(T0 + 5, 0)


def test_tick_counts_up_when_time_stands_still() -> None:
    clock = HybridClock(drift_max_ms=1000)
    stamps = [clock.tick(T0) for _ in range(5)]
    assert stamps == [hlc_pack(T0, i) for i in range(5)]


def test_tick_is_strictly_increasing_when_time_goes_backwards() -> None:
    clock = HybridClock(drift_max_ms=1000)
    first = clock.tick(T0)
    second = clock.tick(T0 - 60_000)  # the wall clock stepped back a minute
    third = clock.tick(T0 - 120_000)
    assert first < second < third
    assert hlc_unpack(second) == (T0, 1)
    assert hlc_unpack(third) == (T0, 2)
    assert clock.tick(T0 + 1) == hlc_pack(T0 + 1, 0)  # physical time catches up


def test_clock_resumes_from_a_stored_last() -> None:
    clock = HybridClock(drift_max_ms=1000, last=hlc_pack(T0, 7))
    assert clock.tick(T0 - 1) == hlc_pack(T0, 8)


def test_logical_overflow_carries_into_the_physical_part() -> None:
    clock = HybridClock(drift_max_ms=1000, last=hlc_pack(T0, HLC_LOGICAL_MAX - 1))
    a = clock.tick(T0)
    b = clock.tick(T0)
    c = clock.tick(T0)
    assert a < b < c
    assert hlc_unpack(a) == (T0, HLC_LOGICAL_MAX)
    assert hlc_unpack(b) == (T0 + 1, 0)
    assert hlc_unpack(c) == (T0 + 1, 1)


def test_observe_caps_a_far_future_remote() -> None:
    drift = 500
    clock = HybridClock(drift_max_ms=drift)
    clock.tick(T0)
    far_future = hlc_pack(T0 + 10**9, 3)
    merged = clock.observe(far_future, T0)
    assert merged < far_future
    physical, _ = hlc_unpack(merged)
    assert physical == T0 + drift
    assert clock.last == merged
    after = clock.tick(T0)
    assert after > merged
    assert hlc_unpack(after)[0] <= T0 + drift + 1


def test_observe_cap_saturates_at_the_maximum_physical_time() -> None:
    clock = HybridClock(drift_max_ms=1000)
    merged = clock.observe(2**64 - 1, HLC_PHYSICAL_MAX - 10)
    assert hlc_unpack(merged)[0] == HLC_PHYSICAL_MAX


def test_observe_adopts_a_remote_within_the_bound() -> None:
    clock = HybridClock(drift_max_ms=500)
    clock.tick(T0)
    remote = hlc_pack(T0 + 200, 9)
    merged = clock.observe(remote, T0)
    assert merged >= remote
    assert hlc_unpack(merged)[0] == T0 + 200
    assert clock.last == merged
    assert clock.tick(T0) > remote  # the next local event follows the remote one


def test_observe_of_a_past_remote_keeps_the_local_clock() -> None:
    clock = HybridClock(drift_max_ms=500)
    local = clock.tick(T0 + 100)
    merged = clock.observe(hlc_pack(T0, 3), T0 + 50)
    assert merged == local + 1
    assert clock.observe(hlc_pack(T0, 3), T0 + 300) == hlc_pack(T0 + 300, 0)


def test_observe_with_zero_drift_never_passes_physical_time() -> None:
    clock = HybridClock(drift_max_ms=0)
    merged = clock.observe(hlc_pack(T0 + 1, 0), T0)
    assert hlc_unpack(merged)[0] == T0


DRIFT = 5_000
_PHYSICAL = st.integers(min_value=0, max_value=2**47)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), _PHYSICAL, st.just(0)),
        st.tuples(st.just("observe"), _PHYSICAL, st.integers(min_value=0, max_value=2**64 - 1)),
        # Remotes near the local time, where adoption (not capping) happens.
        st.tuples(
            st.just("observe_near"), _PHYSICAL, st.integers(min_value=-DRIFT, max_value=2 * DRIFT)
        ),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=scaled(300))
@given(st.integers(min_value=0, max_value=2**63), _OPS)
def test_property_outputs_strictly_increase_and_drift_is_bounded(
    start: int, ops: list[tuple[str, int, int]]
) -> None:
    clock = HybridClock(drift_max_ms=DRIFT, last=start)
    previous = start
    for op, physical, arg in ops:
        if op == "tick":
            out = clock.tick(physical)
            assert out >= hlc_pack(physical, 0)
        else:
            remote = arg if op == "observe" else hlc_pack(max(physical + arg, 0), 5)
            out = clock.observe(remote, physical)
            assert out >= min(remote, hlc_pack(physical + DRIFT, HLC_LOGICAL_MAX))
        assert out > previous
        assert clock.last == out
        # A remote never drags the clock more than DRIFT past local physical time; beyond that
        # the clock only counts up from where it was.
        assert hlc_unpack(out)[0] <= max(hlc_unpack(previous)[0] + 1, physical + DRIFT)
        previous = out
    assert previous < 2**64
