"""The flooding baseline: every node forwards every new envelope to all its neighbours.

It runs in the same process as the real simulation, over the same topology (the overlay of
active sessions the real cores hold at the end of the run), the same link model with the same
per-link latencies and the same loss, duplication, reordering and capacity (off after the
final heal, as in the real run), carrying frames of the same size as the real push of each
update. It models no partitions, crashes,
joins, leaves, handshakes or anti-entropy: it is the cost of plain eager push alone, the figure
to compare ``deliveries_per_update_per_node`` and rounds against.
"""

from __future__ import annotations

from dataclasses import dataclass

from .links import Links
from .loop import EventLoop
from .metrics import percentile
from .options import SimOptions
from .seed import rng_for

__all__ = ["FloodResult", "FloodUpdate", "run_flood"]


@dataclass(frozen=True, slots=True)
class FloodUpdate:
    at_us: int
    origin: int
    frame_bytes: int


@dataclass(slots=True)
class FloodResult:
    updates: int
    nodes: int
    deliveries: int
    frames_bytes: int
    hops: list[int]
    """Per update, the hop at which the last node it reached got it."""
    spread_us: list[int]
    reached: list[int]
    """Per update, the nodes it reached (writer included)."""
    events: int

    def figures(self) -> dict[str, object]:
        pairs = self.updates * max(1, self.nodes - 1)
        return {
            "protocol": "flooding (every node forwards each new envelope to every neighbour)",
            "same_network": "same overlay (the cores' active sessions at the end of the run), "
            "link latencies, loss, duplication, reordering, capacity and frame sizes; no "
            "partitions, crashes, churn or anti-entropy",
            "updates_simulated": self.updates,
            "deliveries_per_update_per_node": round(self.deliveries / pairs, 4) if pairs else 0,
            "bytes_per_update": round(self.frames_bytes / self.updates, 1) if self.updates else 0,
            "rounds_p50": percentile(self.hops, 0.5),
            "rounds_p99": percentile(self.hops, 0.99),
            "spread_ms_p50": percentile(self.spread_us, 0.5) / 1000,
            "spread_ms_p99": percentile(self.spread_us, 0.99) / 1000,
            "coverage": round(sum(self.reached) / (self.updates * self.nodes), 6)
            if self.updates
            else 1.0,
            "events": self.events,
        }


def run_flood(
    options: SimOptions, edges: list[tuple[int, int]], updates: list[FloodUpdate]
) -> FloodResult:
    nodes = options.nodes
    neighbours: list[list[int]] = [[] for _ in range(nodes)]
    for a, b in edges:
        if a < nodes and b < nodes:
            neighbours[a].append(b)
            neighbours[b].append(a)
    links = Links(options, rng_for(options.seed, "flood/network"), "link")
    loop = EventLoop()
    heal_us = options.duration_ms * 1000
    seen = [bytearray(nodes) for _ in updates]
    hop_max = [0] * len(updates)
    last_us = [u.at_us for u in updates]
    reached = [0] * len(updates)
    totals = [0, 0]  # deliveries, bytes

    def forward(node: int, update: int, hop: int, sender: int) -> None:
        size = updates[update].frame_bytes
        links.faulty = loop.now_us < heal_us
        for other in neighbours[node]:
            if other == sender:
                continue
            totals[1] += size
            for arrival in links.transmit(node, other, size, loop.now_us):
                loop.at(arrival, deliver, (other, update, hop + 1, node))

    def deliver(arg: tuple[int, int, int, int]) -> None:
        node, update, hop, sender = arg
        if sender >= 0:
            totals[0] += 1
        if seen[update][node]:
            return
        seen[update][node] = 1
        reached[update] += 1
        hop_max[update] = max(hop_max[update], hop)
        last_us[update] = max(last_us[update], loop.now_us)
        forward(node, update, hop, sender)

    for index, update in enumerate(updates):
        loop.at(update.at_us, deliver, (update.origin, index, 0, -1))
    loop.run_until(1 << 62)
    return FloodResult(
        updates=len(updates),
        nodes=nodes,
        deliveries=totals[0],
        frames_bytes=totals[1],
        hops=hop_max,
        spread_us=[last - u.at_us for last, u in zip(last_us, updates, strict=True)],
        reached=reached,
        events=loop.processed,
    )
