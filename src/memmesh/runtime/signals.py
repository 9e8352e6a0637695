"""What the node keeps for the operating signals beyond the view's own counts (DESIGN §9).

- :class:`Histogram`: fixed buckets, for ``memmesh_propagation_seconds`` (observed here when a
  peer's envelope is integrated: this node's clock minus the envelope's hybrid logical time,
  which includes any clock skew between the two nodes; negative differences count as 0).
- :class:`Traceability`: which ``decision`` claims cite a snapshot or a receipt this node can
  name: a receipt it issued (remembered, bounded), one recorded here (``POST /v1/receipts``) or
  replicated as a ``receipt`` claim, or an attestation it holds. A decision whose ``based_on``
  names none of those (only other claims, or receipts nobody recorded) is not traceable. The
  count is kept as things arrive, never recomputed by walking the decisions.
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
    def of_counts(
        cls, buckets: Sequence[float], at_most: Callable[[float], int], count: int, total: float
    ) -> Histogram:
        """From a sorted source that answers how many observations are at most each bound (in
        O(log n) each), instead of observing every value again."""
        made = cls(buckets)
        below = 0
        for i, bound in enumerate(buckets):
            upto = at_most(bound)
            made.counts[i], below = upto - below, upto
        made.counts[-1] = count - below
        made.count, made.total = count, total
        return made

    @classmethod
    def of(cls, buckets: Sequence[float], values: Iterable[float]) -> Histogram:
        made = cls(buckets)
        for value in values:
            made.observe(value)
        return made


@dataclass(slots=True)
class Traceability:
    """Which content ``decision`` claims cite something this node can name, kept as decisions
    and the things they cite arrive (and as issued receipts are forgotten), so the count is
    read in constant time: walking every decision at each ``/metrics`` scrape and
    ``/v1/state`` made both linear in the mesh's history."""

    issued_max: int = 100_000
    issued: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    """Receipts this node handed out, newest last (the oldest forgotten past ``issued_max``)."""
    replicated: set[bytes] = field(default_factory=set)
    """Receipt ids recorded as replicated ``receipt`` claims."""
    recorded: set[bytes] = field(default_factory=set)
    """Receipt ids recorded on this node only."""
    attested: set[bytes] = field(default_factory=set)
    """Ids of the attestations this node holds."""
    decisions: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    """Content ``decision`` claims: id -> what they cite in ``based_on``."""
    traceable: int = 0
    """Decisions citing at least one receipt or attestation this node can name."""
    _citing: dict[bytes, list[bytes]] = field(default_factory=dict)
    """Cited id -> the decisions citing it."""
    _named: dict[bytes, int] = field(default_factory=dict)
    """Decision id -> how many of the ids it cites this node can name now."""

    def known(self, ref: bytes) -> bool:
        return (
            ref in self.issued or ref in self.replicated or ref in self.recorded
            or ref in self.attested
        )  # fmt: skip

    def issue(self, receipt_id: bytes) -> None:
        was = self.known(receipt_id)
        self.issued[receipt_id] = None
        self.issued.move_to_end(receipt_id)
        if not was:
            self._named_now(receipt_id, 1)
        while len(self.issued) > self.issued_max:
            forgotten, _ = self.issued.popitem(last=False)
            if not self.known(forgotten):
                self._named_now(forgotten, -1)

    def record(self, receipt_id: bytes) -> None:
        """A receipt recorded on this node (``POST /v1/receipts``)."""
        self._add(self.recorded, receipt_id)

    def attest(self, attestation_id: bytes) -> None:
        """An attestation this node now holds (its own or another signer's)."""
        self._add(self.attested, attestation_id)

    def integrated(self, claims: Iterable[Claim]) -> None:
        for claim in claims:
            if claim.type == DECISION and claim.namespace[:1] != (SYSTEM_PREFIX,):
                self._decision(claim.id, claim.based_on)
            elif claim.type == RECEIPT and claim.namespace == RECEIPT_NAMESPACE:
                try:
                    self._add(self.replicated, bytes.fromhex(claim.key))
                except ValueError:
                    continue

    def _decision(self, decision_id: bytes, cited: tuple[bytes, ...]) -> None:
        if decision_id in self.decisions:
            return
        self.decisions[decision_id] = cited
        refs = dict.fromkeys(cited)  # distinct, in order (a canonical claim's already are)
        for ref in refs:
            self._citing.setdefault(ref, []).append(decision_id)
        named = sum(self.known(ref) for ref in refs)
        self._named[decision_id] = named
        self.traceable += named > 0

    def _add(self, table: set[bytes], ref: bytes) -> None:
        if ref in table:
            return
        was = self.known(ref)
        table.add(ref)
        if not was:
            self._named_now(ref, 1)

    def _named_now(self, ref: bytes, change: int) -> None:
        """``ref`` became nameable (``change`` 1) or stopped being so (-1)."""
        for decision_id in self._citing.get(ref, ()):
            before = self._named[decision_id]
            self._named[decision_id] = before + change
            if change > 0 and before == 0:
                self.traceable += 1
            elif change < 0 and before == 1:
                self.traceable -= 1

    def count_by_walking(self) -> int:
        """:attr:`traceable` computed from nothing (what tests hold it to)."""
        return sum(any(self.known(ref) for ref in cited) for cited in self.decisions.values())
