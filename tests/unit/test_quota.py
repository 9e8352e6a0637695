"""Per-agent write quotas (``memmesh.runtime.quota``): token buckets on a given clock."""

from __future__ import annotations

import math

import pytest

from memmesh.runtime.quota import WriteQuota

A, B = b"\x01" * 32, b"\x02" * 32


def test_a_burst_then_the_rate() -> None:
    quota = WriteQuota(per_s=10, burst=5)
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
    quota = WriteQuota(per_s=1, burst=3)
    assert quota.take({A: 3}, 0.0) is None
    assert quota.take({B: 2}, 0.0) is None
    # B still has one token, A none: the write of both is refused and takes nothing from B.
    assert quota.take({A: 1, B: 1}, 0.0) == (A, pytest.approx(1.0))
    assert quota.take({B: 1}, 0.0) is None


def test_more_than_the_burst_at_once_never_fits() -> None:
    quota = WriteQuota(per_s=100, burst=4)
    refused = quota.take({A: 5}, 0.0)
    assert refused is not None and math.isinf(refused[1])


def test_off_and_bounds() -> None:
    off = WriteQuota(per_s=0, burst=1)
    assert not off.enabled
    assert all(off.take({A: 1000}, 0.0) is None for _ in range(3))
    with pytest.raises(ValueError):
        WriteQuota(per_s=-1, burst=1)
    with pytest.raises(ValueError):
        WriteQuota(per_s=1, burst=0)


def test_the_idlest_bucket_makes_room() -> None:
    quota = WriteQuota(per_s=1, burst=1, agents_max=2)
    keys = [bytes([i]) * 32 for i in range(3)]
    assert quota.take({keys[0]: 1}, 0.0) is None
    assert quota.take({keys[1]: 1}, 0.0) is None
    assert quota.take({keys[2]: 1}, 0.0) is None  # keys[0], the idlest, is forgotten
    assert quota.take({keys[1]: 1}, 0.0) is not None  # still remembered: empty
    assert quota.take({keys[0]: 1}, 0.0) is None  # a fresh bucket
