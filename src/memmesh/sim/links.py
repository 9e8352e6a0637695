"""The network model of one directed link: latency, jitter, capacity, loss, duplication,
reordering and clogging. Both the real-core simulation and the flooding baseline send through
it, so they face the same network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .options import SimOptions
from .seed import derive

__all__ = ["Link", "Links"]


@dataclass(slots=True)
class Link:
    latency_us: int
    busy_until_us: int = 0
    """When the link has finished putting the frames queued on it onto the wire."""
    last_arrival_us: int = 0
    """Arrival of the last in-order frame: the next one may not overtake it."""
    clogged_until_us: int = 0
    clog_extra_us: int = 0


class Links:
    """Every directed link between nodes ``a`` and ``b``, created on first use with a latency
    drawn from the pair's own sub-seed (so the order links are first used never matters)."""

    def __init__(self, options: SimOptions, rng: random.Random, seed_name: str) -> None:
        self.options = options
        self.rng = rng
        self.seed_name = seed_name
        self.faulty = True
        """Loss, duplication, reordering and clogs apply; the final heal switches them off."""
        self._links: dict[tuple[int, int], Link] = {}
        self.jitter_mean_us = options.jitter_ms_mean * 1000
        self.frames_lost = 0
        self.frames_duplicated = 0
        self.frames_reordered = 0

    def link(self, a: int, b: int) -> Link:
        link = self._links.get((a, b))
        if link is None:
            draw = random.Random(derive(self.options.seed, f"{self.seed_name}/{a}/{b}"))
            low, high = self.options.latency_ms_min * 1000, self.options.latency_ms_max * 1000
            link = Link(draw.randint(low, high))
            self._links[(a, b)] = link
        return link

    def clog(self, a: int, b: int, until_us: int, extra_us: int) -> None:
        link = self.link(a, b)
        link.clogged_until_us, link.clog_extra_us = until_us, extra_us

    def round_trip_us(self, a: int, b: int) -> int:
        return self.link(a, b).latency_us + self.link(b, a).latency_us

    def transmit(self, a: int, b: int, size_bytes: int, now_us: int) -> list[int]:
        """Arrival times of the copies of one frame from ``a`` to ``b`` (none when lost)."""
        link = self.link(a, b)
        options, rng = self.options, self.rng
        tx_us = size_bytes * 1000 // options.bandwidth_bytes_per_ms
        sent_us = max(now_us, link.busy_until_us) + tx_us
        link.busy_until_us = sent_us
        if self.faulty and options.loss and rng.random() < options.loss:
            self.frames_lost += 1
            return []
        copies = 1
        if self.faulty and options.duplicate and rng.random() < options.duplicate:
            copies = 2
            self.frames_duplicated += 1
        arrivals: list[int] = []
        for _ in range(copies):
            arrival = sent_us + link.latency_us
            if self.jitter_mean_us:
                arrival += int(rng.expovariate(1.0) * self.jitter_mean_us)
            if self.faulty and link.clogged_until_us > now_us:
                arrival += link.clog_extra_us
            if self.faulty and options.reorder and rng.random() < options.reorder:
                self.frames_reordered += 1
                arrival += rng.randint(1, 4 * link.latency_us + 50_000)
            else:
                arrival = max(arrival, link.last_arrival_us)
                link.last_arrival_us = arrival
            arrivals.append(arrival)
        return arrivals

    def in_order_after(self, a: int, b: int, now_us: int) -> int:
        """When something sent now from ``a`` to ``b`` after every frame queued arrives (a
        connection's close follows its last frame)."""
        link = self.link(a, b)
        return max(now_us + link.latency_us, link.last_arrival_us, link.busy_until_us)
