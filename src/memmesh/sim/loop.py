"""The discrete-event loop on virtual time, and the rolling trace hash.

Events wait in a heap keyed by (time, sequence number): two events at the same virtual time run
in the order they were scheduled, so the order never depends on hashing or on the wall clock.
Time is an integer of microseconds from the start of the run.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["EventLoop", "Trace"]

Handler = Callable[[Any], None]


class Trace:
    """SHA-256 over a canonical encoding of every event processed: one seed, one hash.

    Each part is typed and length-prefixed (``i`` ints, ``s`` text, ``b`` bytes), so no two
    different traces encode alike. The encoding is gathered in a buffer and hashed in large
    pieces (the same digest as hashing each event: SHA-256 is over the byte stream)."""

    __slots__ = ("_buffer", "_hash", "_texts", "events")

    _FLUSH_BYTES = 1 << 16
    _TEXTS_MAX = 4096

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"memmesh-sim-trace/v1\x00")
        self._buffer = bytearray()
        self._texts: dict[str, bytes] = {}
        """Text part -> its encoding (the texts are mostly a few message and event kinds)."""
        self.events = 0

    def add(self, *parts: int | str | bytes) -> None:
        self.events += 1
        out = self._buffer
        out += b"\n"
        for part in parts:
            kind = part.__class__
            if kind is int:  # exact types first: the common cases, without isinstance
                out += b"i%d;" % part  # type: ignore[str-format]
            elif kind is str:
                encoded = self._texts.get(part)  # type: ignore[arg-type]
                if encoded is None:
                    encoded = self._text(part)  # type: ignore[arg-type]
                out += encoded
            elif isinstance(part, bytes):
                out += b"b%d:" % len(part)
                out += part
            elif isinstance(part, str):
                out += self._text(part)
            else:
                out += b"i%d;" % part
        if len(out) >= self._FLUSH_BYTES:
            self._hash.update(out)
            out.clear()

    def _text(self, text: str) -> bytes:
        data = text.encode()
        encoded = b"s%d:" % len(data) + data
        if len(self._texts) >= self._TEXTS_MAX:
            self._texts.clear()
        self._texts[text] = encoded
        return encoded

    def hexdigest(self) -> str:
        if self._buffer:
            self._hash.update(self._buffer)
            self._buffer.clear()
        return self._hash.hexdigest()


class EventLoop:
    """Run handlers at virtual times; ``now_us`` is the time of the event being run."""

    __slots__ = ("_heap", "_seq", "now_us", "processed")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Handler, Any]] = []
        self._seq = 0
        self.now_us = 0
        self.processed = 0

    def at(self, time_us: int, handler: Handler, arg: Any = None) -> None:
        assert time_us >= self.now_us, "an event cannot be scheduled in the past"
        self._seq += 1
        heapq.heappush(self._heap, (time_us, self._seq, handler, arg))

    def after(self, delay_us: int, handler: Handler, arg: Any = None) -> None:
        self.at(self.now_us + max(0, delay_us), handler, arg)

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pending(self) -> int:
        return len(self._heap)

    def run_until(self, end_us: int, stop: Callable[[], bool] | None = None) -> bool:
        """Run every event due at or before ``end_us``; return True if ``stop`` said so first.
        The clock ends at ``end_us`` unless stopped early."""
        heap = self._heap
        while heap and heap[0][0] <= end_us:
            time_us, _, handler, arg = heapq.heappop(heap)
            self.now_us = time_us
            self.processed += 1
            handler(arg)
            if stop is not None and stop():
                return True
        self.now_us = max(self.now_us, end_us)
        return False
