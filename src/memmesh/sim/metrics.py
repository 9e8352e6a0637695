"""What the run measures: how far and how fast each update spread, and at what cost.

**Rounds** (``hops``): every envelope copy on the wire carries, in the simulator's bookkeeping
only, its number of message generations from the writer: the writer holds its envelope at hop
0, and a copy sent by a node that holds it at hop h travels at hop h + 1, whether it was pushed
or fetched by anti-entropy. A node holds an envelope at the hop of the first copy it received
before integrating it. An update's rounds are the largest hop at which any node integrated it,
i.e. the gossip generations after which the last node had it.

**Deliveries** are envelope copies received by nodes (duplicates included, whatever message
carried them); ``deliveries_per_update_per_node`` divides them by updates x (nodes - 1), where
an update is one envelope its author committed during the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Metrics", "Spread", "percentile"]


@dataclass(slots=True)
class Spread:
    origin: int
    written_us: int
    last_us: int
    hops_max: int = 0
    nodes: int = 0
    """Integrations of it (the writer's included)."""


@dataclass(slots=True)
class Metrics:
    spread: dict[bytes, Spread] = field(default_factory=dict)
    copies_delivered: int = 0
    copies_already_held: int = 0
    first_copies_pushed: int = 0
    """Envelopes whose first copy at a node came by eager push..."""
    first_copies_fetched: int = 0
    """... or in an answer to a request (anti-entropy, a missing dependency)."""
    hops_unknown: int = 0
    """Integrations whose copy was never seen on the wire (should stay 0)."""
    backlog: list[tuple[int, int, int]] = field(default_factory=list)
    """Samples of (virtual us, envelopes missing summed over up nodes, events pending)."""
    writes_acked: int = 0
    writes_failed: dict[str, int] = field(default_factory=dict)
    writes_lost_in_crash: int = 0
    writes_skipped: int = 0
    """Writes due while no node could take them (all down or leaving)."""

    def on_written(self, node: int, env_id: bytes, now_us: int) -> None:
        if env_id not in self.spread:
            self.spread[env_id] = Spread(node, now_us, now_us)

    def on_integrated(self, env_id: bytes, hop: int, now_us: int) -> None:
        spread = self.spread.get(env_id)
        if spread is not None:
            spread.nodes += 1
            spread.last_us = max(spread.last_us, now_us)
            spread.hops_max = max(spread.hops_max, hop)


def percentile(values: list[int] | list[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))
    return float(ordered[min(len(ordered), rank) - 1])
