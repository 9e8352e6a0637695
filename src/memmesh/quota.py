"""Quotas: a token bucket per key (an agent, a member node), on a clock the caller gives.

Two users. The runtime holds a write quota per agent key that writes through the node
(``agent_writes_per_s_max``): a member whose agent floods valid claims costs every node of the
mesh a signature check, a commit and an integration per claim, and the place to stop it is the
node it writes through, before anything is signed; a write that would take more is refused whole
(HTTP 429 ``rate_limited`` with ``Retry-After``). The sync core holds a push budget per author
node (``SyncLimits.author_pushes_per_s``): a member node that signs its spam itself gets no
more than its budget pushed through this node; the rest waits for anti-entropy, which this node
paces (see :meth:`memmesh.core.MeshCore`).

Each key gets ``per_s`` tokens a second and may save up to ``burst``. A quota decides when this
node takes something, never whether it is valid, so it is local configuration and replicas
cannot diverge over it. At most ``keys_max`` buckets are kept; when a new key needs room, the
bucket that was idle longest goes (it would have refilled to ``burst`` anyway, unless it was
used within the last ``burst / per_s`` seconds, and then the key gets a fresh burst).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Quota"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class Quota:
    def __init__(self, per_s: float, burst: int, *, keys_max: int = 4096) -> None:
        """``per_s`` 0 turns the quota off (everything passes)."""
        if per_s < 0 or burst < 1 or keys_max < 1:
            raise ValueError("a quota needs per_s >= 0, burst >= 1 and keys_max >= 1")
        self.per_s = per_s
        self.burst = burst
        self.keys_max = keys_max
        self._buckets: dict[bytes, _Bucket] = {}
        """Key -> bucket, least recently used first."""
        self.refused = 0
        """Takes refused so far (by :meth:`take`; :meth:`take_up_to` counts in ``short``)."""
        self.short = 0
        """Tokens :meth:`take_up_to` was asked for and could not give."""

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    def take(self, wants: dict[bytes, int], now_s: float) -> tuple[bytes, float] | None:
        """Take ``wants[key]`` tokens from each key's bucket, all or none. None when the take
        may go; else the first key (in sorted order) short of tokens and the seconds until it
        has them (asking more than ``burst`` at once never fits: infinity)."""
        if not self.enabled:
            return None
        buckets: dict[bytes, _Bucket] = {}
        for key in sorted(wants):
            bucket = self._refilled(key, now_s)
            buckets[key] = bucket
            count = wants[key]
            if bucket.tokens < count:
                self.refused += 1
                wait = float("inf") if count > self.burst else (count - bucket.tokens) / self.per_s
                return key, wait
        for key, bucket in buckets.items():
            bucket.tokens -= wants[key]
        return None

    def take_up_to(self, key: bytes, count: int, now_s: float) -> int:
        """Take as many of ``count`` whole tokens as ``key``'s bucket holds; how many."""
        if not self.enabled:
            return count
        bucket = self._refilled(key, now_s)
        taken = min(count, int(bucket.tokens))
        bucket.tokens -= taken
        self.short += count - taken
        return taken

    def charge(self, key: bytes, count: int, now_s: float) -> float:
        """Take ``count`` tokens whatever the bucket holds (it may go into debt); the seconds
        until it is out of debt, which a pacer waits before taking more."""
        if not self.enabled:
            return 0.0
        bucket = self._refilled(key, now_s)
        bucket.tokens -= count
        return max(0.0, -bucket.tokens / self.per_s)

    def _refilled(self, key: bytes, now_s: float) -> _Bucket:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            while len(self._buckets) >= self.keys_max:
                del self._buckets[next(iter(self._buckets))]
            bucket = _Bucket(float(self.burst), now_s)
        elapsed = max(0.0, now_s - bucket.at_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.per_s)
        bucket.at_s = now_s
        self._buckets[key] = bucket  # most recently used last
        return bucket
