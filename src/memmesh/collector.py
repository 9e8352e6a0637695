"""The cyclic garbage collector's pace during a large, bounded piece of work.

A simulation run or a full verification makes hundreds of thousands of objects that live until
it ends, and almost no cyclic garbage. CPython's default thresholds (700, 10, 10) then run a
full collection, which walks the whole heap, every time the long-lived objects grow by a
quarter: 2.3 of the 22.5 s a 100,000-claim verification took went to three of them, and 3.9 of
40 s to fourteen in a 400-node simulation. Within :func:`fewer_collections` the collector
still runs, about seventy times less often; the thresholds are restored when the last block
open in the process ends (blocks may overlap, in threads: a node verifies in a worker thread).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["THRESHOLDS", "fewer_collections"]

THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds inside a block (CPython's defaults: 700, 10, 10)."""


class _Pace:
    """How many blocks are open in the process, and the thresholds to restore after them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.before: tuple[int, int, int] = gc.get_threshold()


_pace = _Pace()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often inside this block, then as before."""
    with _pace.lock:
        if _pace.open == 0:
            _pace.before = gc.get_threshold()
            gc.set_threshold(*THRESHOLDS)
        _pace.open += 1
    try:
        yield
    finally:
        with _pace.lock:
            _pace.open -= 1
            if _pace.open == 0:
                gc.set_threshold(*_pace.before)
