"""Each node's wall clock: virtual time plus a fixed skew plus a drift that grows with time.

A core only ever sees its own clock (``now_ms``), so skew and drift move its timers and its HLC
exactly as a bad NTP setup would on a real machine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EPOCH_MS", "NodeClock"]

EPOCH_MS = 1_700_000_000_000
"""Virtual time 0 on a correct clock (November 2023): HLC values look like real ones."""


@dataclass(frozen=True, slots=True)
class NodeClock:
    skew_ms: int = 0
    drift_ppm: int = 0
    """Parts per million the clock runs fast (positive) or slow (negative)."""

    def local_ms(self, now_us: int) -> int:
        return EPOCH_MS + self.skew_ms + (now_us * (1_000_000 + self.drift_ppm)) // 1_000_000_000

    def virtual_us(self, local_ms: int, now_us: int) -> int:
        """The first virtual time, not before ``now_us``, at which this clock shows
        ``local_ms``. ``local_ms(t) >= m`` exactly when ``t * rate >= (m - base) * 10**9``
        (``rate`` = 10**6 + drift ppm), so the answer is a ceiling division."""
        target = local_ms - EPOCH_MS - self.skew_ms
        rate = 1_000_000 + self.drift_ppm
        return max(now_us, -((-target * 1_000_000_000) // rate))
