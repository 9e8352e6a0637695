"""What the node keeps for the operating signals beyond the view's own counts (DESIGN §9).

- :class:`Histogram`: fixed buckets, for ``memmesh_propagation_seconds`` (observed here when a
  peer's envelope is integrated: this node's clock minus the envelope's hybrid logical time,
  which includes any clock skew between the two nodes; negative differences count as 0).
- :class:`Traceability`: which ``decision`` claims cite a snapshot or a receipt this node can
  name: a receipt it issued (remembered, bounded), one recorded here (``POST /v1/receipts``) or
  replicated as a ``receipt`` claim, or an attestation it holds. A decision whose ``based_on``
  names none of those (only other claims, or receipts nobody recorded) is not traceable.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..claims import Claim
from ..memory.types import DECISION, RECEIPT, RECEIPT_NAMESPACE, SYSTEM_PREFIX

__all__ = [
    "COMMIT_BUCKETS_S",
    "PROPAGATION_BUCKETS_S",
    "RESOLUTION_BUCKETS_S",
    "Histogram",
    "Traceability",
]

PROPAGATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RESOLUTION_BUCKETS_S = (0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60, 300, 3600, 86400)
COMMIT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
"""A durable commit is two device flushes: a tenth of a millisecond on a fast disk alone,
milliseconds on a shared virtual one."""


@dataclass(slots=True)
class Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(init=False)
    """Observations per bucket (not cumulative); the last one is +Inf."""
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, observations at or below it)."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    @classmethod
    def of(cls, buckets: Sequence[float], values: Iterable[float]) -> Histogram:
        made = cls(buckets)
        for value in values:
            made.observe(value)
        return made


@dataclass(slots=True)
class Traceability:
    issued_max: int = 100_000
    issued: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    """Receipts this node handed out, newest last (the oldest forgotten past ``issued_max``)."""
    replicated: set[bytes] = field(default_factory=set)
    """Receipt ids recorded as replicated ``receipt`` claims."""
    recorded: set[bytes] = field(default_factory=set)
    """Receipt ids recorded on this node only."""
    decisions: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    """Content ``decision`` claims: id -> what they cite in ``based_on``."""

    def issue(self, receipt_id: bytes) -> None:
        self.issued[receipt_id] = None
        self.issued.move_to_end(receipt_id)
        while len(self.issued) > self.issued_max:
            self.issued.popitem(last=False)

    def integrated(self, claims: Iterable[Claim]) -> None:
        for claim in claims:
            if claim.type == DECISION and claim.namespace[:1] != (SYSTEM_PREFIX,):
                self.decisions[claim.id] = claim.based_on
            elif claim.type == RECEIPT and claim.namespace == RECEIPT_NAMESPACE:
                try:
                    self.replicated.add(bytes.fromhex(claim.key))
                except ValueError:
                    continue

    def traceable(self, attested: Callable[[bytes], bool]) -> int:
        """Decisions citing at least one receipt or attestation this node can name."""
        known = (self.issued, self.replicated, self.recorded)
        return sum(
            any(any(ref in k for k in known) or attested(ref) for ref in cited)
            for cited in self.decisions.values()
        )
