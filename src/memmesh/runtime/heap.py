"""The node's garbage-collector pauses, measured and kept short as the node's memory grows.

CPython's cycle collector walks every object it tracks in a full collection, and runs one each
time the objects that outlived the younger generations grow by a quarter. A node's memory is
mostly what it has integrated (with one claim per envelope, as a node commits at low load, about
ten tracked objects a claim: the claim, its envelope and record, its view entry, their
containers), kept for the life of the process. So the pause of each full collection grows with
the node's history, and each holds the event loop (gossip, heartbeats, every request): 25 ms at
10,000 claims and 0.49 s at 100,000 in one process's admission and view written that way; 81 ms
at 100,000 claims written 256 to an envelope (``memmesh bench view``).

Start-up already moves what it built out of every later collection (``gc.freeze``).
:class:`HeapKeeper` does the same as the node grows: once ``freeze_every_claims`` more claims
have been integrated since the last freeze, it runs one full collection, which walks only what
is not frozen (roughly what arrived since), and freezes what survived. Each pause, its own and
CPython's automatic ones in between, is then bounded by what arrives between two freezes, not
by the whole history.

The cost, and how it is bounded: a frozen object is still freed by reference counting, which is
how the node's data goes (its records, claims and views hold no reference cycles: a replayed
admission and its view, dropped, leave no cyclic garbage); but a frozen object in a reference
cycle is never collected. What can be caught that way is what was alive at a freeze and dies in
a cycle later: a connection's objects, a request in flight. Measured on a node process: 60
freezes, each with 20 idle inbound connections open that closed after it, cost 9.6 MB more than
the same run without freezes, about 8 KB per connection caught. Each object can be frozen once,
and a freeze is put off while more than ``inbound_max`` inbound connections are open (a flood
of handshakes is exactly what should not be frozen: with 40 open, 127 freezes were put off and
the frozen set did not grow), so what can leak is at most ``inbound_max`` connections per
``freeze_every_claims`` claims (32 per 5,000 by default: about 50 bytes a claim, against the 2
to 3 KB a claim holds), not whatever an attacker opens. ``freeze_every_claims = 0`` turns the
policy off (start-up still freezes).

Every collection's pause is observed through ``gc.callbacks``, by generation, for
``memmesh_gc_pause_seconds`` and ``/v1/state``.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from .signals import Histogram

__all__ = ["GC_PAUSE_BUCKETS_S", "HeapKeeper", "freeze_heap"]

GC_PAUSE_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def freeze_heap() -> None:
    """Collect, then leave every object alive now out of every later garbage collection.

    A node calls it once start-up has built what lives as long as the process (modules, the
    web application, the replica and the index replayed from the store: on a receiver at 1,000
    updates/s in the transport bench a full collection over them took 99 ms, 4 ms at most once
    frozen), and :class:`HeapKeeper` again as the node grows. ``gc.freeze`` moves the objects
    alive now to a generation the collector never scans; collecting first keeps the garbage of
    the moment out of it. A frozen object is never freed by the cycle collector (reference
    counting still frees it)."""
    gc.collect()  # walks what is not frozen yet
    gc.freeze()


class HeapKeeper:
    """Observes every garbage collection of the process and freezes the node's growth."""

    def __init__(self, *, freeze_every_claims: int, inbound_max: int) -> None:
        if freeze_every_claims < 0 or inbound_max < 0:
            raise ValueError("freeze_every_claims and inbound_max are >= 0")
        self.freeze_every_claims = freeze_every_claims
        self.inbound_max = inbound_max
        self.pauses = tuple(Histogram(GC_PAUSE_BUCKETS_S) for _ in range(3))
        """Collections by generation (0, 1, 2: the last is a full collection)."""
        self.pause_s_max = 0.0
        self.freezes = 0
        self.freeze_s_max = 0.0
        """The longest freeze, its full collection included."""
        self.freezes_put_off = 0
        self._claims_at_freeze = 0
        self._started: float | None = None
        self._installed = False

    def install(self, claims_now: int) -> None:
        """Start observing; ``claims_now`` is what start-up froze (counted from there)."""
        self._claims_at_freeze = claims_now
        if not self._installed:
            gc.callbacks.append(self._observe)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._observe)
            self._installed = False

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        # A collection runs whole under the GIL and never nests: a start is followed by its
        # own stop, whichever thread triggered it.
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:
            return
        elapsed = time.perf_counter() - self._started
        self._started = None
        self.pauses[info["generation"]].observe(elapsed)
        self.pause_s_max = max(self.pause_s_max, elapsed)

    def settle(self, claims_now: int, inbound: int) -> bool:
        """After the node integrated claims: freeze if ``freeze_every_claims`` more arrived
        since the last freeze and the inbound connections allow it. True if it froze."""
        if self.freeze_every_claims == 0:
            return False
        if claims_now - self._claims_at_freeze < self.freeze_every_claims:
            return False
        if inbound > self.inbound_max:
            self.freezes_put_off += 1
            return False
        started = time.perf_counter()
        freeze_heap()  # its collection walks about what arrived since the last freeze
        self.freeze_s_max = max(self.freeze_s_max, time.perf_counter() - started)
        self.freezes += 1
        self._claims_at_freeze = claims_now
        return True

    def state(self) -> dict[str, Any]:
        full = self.pauses[2]
        return {
            "frozen_objects": gc.get_freeze_count(),
            "freezes": self.freezes,
            "freezes_put_off": self.freezes_put_off,
            "freeze_ms_max": round(self.freeze_s_max * 1e3, 3),
            "pause_ms_max": round(self.pause_s_max * 1e3, 3),
            "full_collections": full.count,
        }
