"""Hybrid logical clock timestamps (Kulkarni et al., 2014), packed in 64 bits.

A timestamp is ``physical_ms << 16 | logical``: 48 bits of milliseconds since the Unix epoch
(enough until the year 10889) and a 16-bit counter for events within one millisecond. Packed
values order like the (physical, logical) pairs they encode.

The clock is pure: the caller passes the physical time in. An honest node never moves its clock
more than ``drift_max_ms`` past its own physical time because of a remote timestamp; a remote
timestamp further ahead is still accepted as data (validity never depends on the local clock,
DESIGN §4 rule 2), it just does not drag this clock along.
"""

from __future__ import annotations

__all__ = ["HLC_LOGICAL_MAX", "HLC_PHYSICAL_MAX", "HybridClock", "hlc_pack", "hlc_unpack"]

_LOGICAL_BITS = 16
HLC_LOGICAL_MAX = (1 << _LOGICAL_BITS) - 1
HLC_PHYSICAL_MAX = (1 << (64 - _LOGICAL_BITS)) - 1
_HLC_MAX = (1 << 64) - 1


def hlc_pack(physical_ms: int, logical: int) -> int:
    if not 0 <= physical_ms <= HLC_PHYSICAL_MAX:
        raise ValueError(f"physical time out of range: {physical_ms}")
    if not 0 <= logical <= HLC_LOGICAL_MAX:
        raise ValueError(f"logical counter out of range: {logical}")
    return (physical_ms << _LOGICAL_BITS) | logical


def hlc_unpack(value: int) -> tuple[int, int]:
    return value >> _LOGICAL_BITS, value & HLC_LOGICAL_MAX


class HybridClock:
    """The local HLC. ``last`` is the last timestamp issued or observed."""

    __slots__ = ("drift_max_ms", "last")

    def __init__(self, drift_max_ms: int, last: int = 0) -> None:
        if drift_max_ms < 0:
            raise ValueError("drift_max_ms must be >= 0")
        if not 0 <= last <= _HLC_MAX:
            raise ValueError(f"last timestamp out of range: {last}")
        self.drift_max_ms = drift_max_ms
        self.last = last

    def tick(self, physical_ms: int) -> int:
        """A timestamp for a local event, strictly greater than every earlier one."""
        return self._advance(hlc_pack(physical_ms, 0))

    def observe(self, remote: int, physical_ms: int) -> int:
        """Merge a remote timestamp (capped at physical time + drift bound) and return a timestamp
        for the receive event: strictly greater than the remote one when it is within the bound,
        and than every timestamp issued before."""
        # One below the last value of the bound, so the receive event below stays within it.
        cap = hlc_pack(min(physical_ms + self.drift_max_ms, HLC_PHYSICAL_MAX), HLC_LOGICAL_MAX - 1)
        self.last = max(self.last, min(remote, cap))
        return self.tick(physical_ms)

    def _advance(self, candidate: int) -> int:
        if candidate > self.last:
            self.last = candidate
        else:
            # Same or earlier millisecond: count up. Carrying into the physical part when the
            # counter overflows keeps timestamps strictly increasing without ever wrapping.
            if self.last >= _HLC_MAX:
                raise OverflowError("hybrid logical clock exhausted (past the year 10889)")
            self.last += 1
        return self.last
