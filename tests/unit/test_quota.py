"""Per-agent write quotas (``memmesh.quota``): token buckets on a given clock."""

from __future__ import annotations

import math

import pytest

from memmesh.quota import Quota

A, B = b"\x01" * 32, b"\x02" * 32


def test_a_burst_then_the_rate() -> None:
    quota = Quota(per_s=10, burst=5)
    assert all(quota.take({A: 1}, 0.0) is None for _ in range(5))
    refused = quota.take({A: 1}, 0.0)
    assert refused is not None
    agent, wait = refused
    assert agent == A and wait == pytest.approx(0.1)
    assert quota.take({A: 1}, 0.05) is not None  # half a token: still short
    assert quota.take({A: 1}, 0.1) is None
    assert quota.take({A: 1}, 0.1) is not None
    assert quota.refused == 3
    assert quota.take({A: 5}, 10.0) is None  # refilled up to the burst, never past it
    assert quota.take({A: 1}, 10.0) is not None


def test_agents_have_their_own_buckets_and_a_write_is_all_or_nothing() -> None:
    quota = Quota(per_s=1, burst=3)
    assert quota.take({A: 3}, 0.0) is None
    assert quota.take({B: 2}, 0.0) is None
    # B still has one token, A none: the write of both is refused and takes nothing from B.
    assert quota.take({A: 1, B: 1}, 0.0) == (A, pytest.approx(1.0))
    assert quota.take({B: 1}, 0.0) is None


def test_more_than_the_burst_at_once_never_fits() -> None:
    quota = Quota(per_s=100, burst=4)
    refused = quota.take({A: 5}, 0.0)
    assert refused is not None and math.isinf(refused[1])


def test_off_and_bounds() -> None:
    off = Quota(per_s=0, burst=1)
    assert not off.enabled
    assert all(off.take({A: 1000}, 0.0) is None for _ in range(3))
    with pytest.raises(ValueError):
        Quota(per_s=-1, burst=1)
    with pytest.raises(ValueError):
        Quota(per_s=1, burst=0)


def test_the_idlest_bucket_makes_room() -> None:
    quota = Quota(per_s=1, burst=1, keys_max=2)
    keys = [bytes([i]) * 32 for i in range(3)]
    assert quota.take({keys[0]: 1}, 0.0) is None
    assert quota.take({keys[1]: 1}, 0.0) is None
    assert quota.take({keys[2]: 1}, 0.0) is None  # keys[0], the idlest, is forgotten
    assert quota.take({keys[1]: 1}, 0.0) is not None  # still remembered: empty
    assert quota.take({keys[0]: 1}, 0.0) is None  # a fresh bucket


def test_take_up_to_gives_what_the_bucket_holds_and_counts_the_rest() -> None:
    quota = Quota(per_s=4, burst=10)
    assert quota.take_up_to(A, 6, 0.0) == 6
    assert quota.take_up_to(A, 6, 0.0) == 4  # the burst's last four
    assert quota.take_up_to(A, 3, 0.0) == 0
    assert quota.take_up_to(A, 3, 0.5) == 2  # half a second: two tokens
    assert quota.take_up_to(B, 1, 0.5) == 1  # a key of its own
    assert quota.short == 2 + 3 + 1
    assert Quota(per_s=0, burst=1).take_up_to(A, 1_000, 0.0) == 1_000  # off


def test_charge_runs_into_debt_and_says_how_long_it_lasts() -> None:
    quota = Quota(per_s=1_000, burst=2_000)
    assert quota.charge(A, 1_500, 0.0) == 0.0
    assert quota.charge(A, 1_500, 0.0) == pytest.approx(1.0)  # 1,000 in debt
    assert quota.charge(A, 0, 0.5) == pytest.approx(0.5)
    assert quota.charge(A, 0, 1.0) == 0.0
    assert quota.charge(A, 2_000, 3.0) == 0.0  # refilled to the burst, no further
    assert quota.charge(A, 1, 3.0) == pytest.approx(0.001)
    assert Quota(per_s=0, burst=1).charge(A, 10**9, 0.0) == 0.0
