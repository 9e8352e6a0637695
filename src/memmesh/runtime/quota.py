"""Per-agent write quotas: a token bucket for each agent key that writes through this node.

A member whose agent floods valid claims costs every node of the mesh a signature check, a
commit and an integration per claim; the place to stop it is the node it writes through, before
anything is signed. Each agent key gets ``per_s`` claims a second and may save up to ``burst``;
a write that would take more is refused whole (HTTP 429 ``rate_limited`` with ``Retry-After``)
and nothing of it is written. The buckets run on the runtime's monotonic clock: a quota decides
when this node accepts a write, never whether a claim is valid, so it is local configuration and
replicas cannot diverge over it. At most ``agents_max`` buckets are kept; when a new agent needs
room, the bucket that was idle longest goes (it would have refilled to ``burst`` anyway, unless
it was used within the last ``burst / per_s`` seconds, and then the agent gets a fresh burst).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WriteQuota"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class WriteQuota:
    def __init__(self, per_s: float, burst: int, *, agents_max: int = 4096) -> None:
        """``per_s`` 0 turns quotas off (every write passes)."""
        if per_s < 0 or burst < 1 or agents_max < 1:
            raise ValueError("a quota needs per_s >= 0, burst >= 1 and agents_max >= 1")
        self.per_s = per_s
        self.burst = burst
        self.agents_max = agents_max
        self._buckets: dict[bytes, _Bucket] = {}
        """Agent -> bucket, least recently used first."""
        self.refused = 0
        """Writes refused so far."""

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    def take(self, wants: dict[bytes, int], now_s: float) -> tuple[bytes, float] | None:
        """Take ``wants[agent]`` tokens from each agent's bucket, all or none. None when the
        write may go; else the first agent (by key) short of tokens and the seconds until it
        has them (a write asking more than ``burst`` at once never fits: infinity)."""
        if not self.enabled:
            return None
        buckets: dict[bytes, _Bucket] = {}
        for agent in sorted(wants):
            bucket = self._refilled(agent, now_s)
            buckets[agent] = bucket
            count = wants[agent]
            if bucket.tokens < count:
                self.refused += 1
                wait = float("inf") if count > self.burst else (count - bucket.tokens) / self.per_s
                return agent, wait
        for agent, bucket in buckets.items():
            bucket.tokens -= wants[agent]
        return None

    def _refilled(self, agent: bytes, now_s: float) -> _Bucket:
        bucket = self._buckets.pop(agent, None)
        if bucket is None:
            while len(self._buckets) >= self.agents_max:
                del self._buckets[next(iter(self._buckets))]
            bucket = _Bucket(float(self.burst), now_s)
        elapsed = max(0.0, now_s - bucket.at_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.per_s)
        bucket.at_s = now_s
        self._buckets[agent] = bucket  # most recently used last
        return bucket
