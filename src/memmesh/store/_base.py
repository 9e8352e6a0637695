"""The synchronous ``Store`` protocol and the rules every implementation shares.

A store keeps, durably and atomically per :class:`WriteBatch`:

- logs: (author, epoch, seq) -> the envelope there (its id and exact signed bytes), contiguous
  from seq 1 and hash-chained by ``prev``;
- "side" envelopes by id, kept off their log (the other branch of an equivocation, still needed
  as evidence and to satisfy others' deps);
- heads: (author, epoch) -> (seq, id) of the last envelope of each log;
- checkpoints by number, evidence by key, and metadata by name.

``commit`` is the acknowledgement point: when it returns, the batch survives a crash of the process
(and, for LMDB with ``sync=True``, of the machine); when it raises, nothing of the batch was
written. A log never reuses a seq: re-committing the same envelope is a no-op, a different envelope
for a taken seq raises :class:`~memmesh.errors.LogConflict` (equivocation is evidence, not log).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..envelope import Envelope
from ..errors import LogConflict
from ..ids import ZERO_ID, Head, LogId, short_id

__all__ = ["Store", "WriteBatch", "plan_log_appends"]


@dataclass(slots=True)
class WriteBatch:
    """Everything one commit writes, atomically. Many envelopes per batch is group commit."""

    envelopes: list[Envelope] = field(default_factory=list)
    side_envelopes: list[Envelope] = field(default_factory=list)
    """Envelopes kept by id but off their log: the other branch of an equivocation."""
    meta: dict[str, bytes] = field(default_factory=dict)
    evidence: dict[bytes, bytes] = field(default_factory=dict)
    checkpoints: dict[int, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.envelopes or self.side_envelopes or self.meta or self.evidence or self.checkpoints
        )


class Store(Protocol):
    """Durable storage for one node. Synchronous: the core calls it; the runtime batches it."""

    def commit(self, batch: WriteBatch) -> None:
        """Write ``batch`` atomically and durably, or raise and write nothing of it."""

    def get_log_entry(self, log: LogId, seq: int) -> bytes | None:
        """The id of the envelope at ``seq`` in ``log``, or None."""

    def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
        """The exact bytes of the envelope at ``seq`` in ``log``, or None."""

    def get_side_envelope(self, envelope_id: bytes) -> bytes | None:
        """The exact bytes of a side envelope (kept off its log), or None.

        There is no look-up by id for envelopes on their logs: a store keeps them in log order,
        so a commit appends instead of inserting at random, and the node indexes ids in memory.
        """

    def iter_log(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, envelope id) for ``start_seq <= seq <= end_seq`` of ``log``, in seq order."""

    def iter_log_envelopes(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, envelope bytes), as :meth:`iter_log`."""

    def head(self, log: LogId) -> Head | None:
        """The last envelope of ``log``, or None when the store has none of it."""

    def heads(self) -> list[tuple[LogId, Head]]:
        """Every log's head, sorted by log id (author bytes, then epoch)."""

    def iter_side_envelopes(self) -> Iterator[bytes]:
        """Ids of the envelopes stored off their logs (equivocation branches), sorted."""

    def get_meta(self, name: str) -> bytes | None: ...

    def iter_meta(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """Every (name, value) of the metadata whose name starts with ``prefix``, sorted by
        name (as UTF-8 bytes)."""

    def get_evidence(self, key: bytes) -> bytes | None: ...

    def iter_evidence(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, evidence) pair, sorted by key."""

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The checkpoint with the highest number, or None."""

    def get_checkpoint(self, number: int) -> bytes | None: ...

    def release_mapped_pages(self) -> None:
        """Let go of file pages that reads mapped into the process (content is unaffected;
        a hint about resident memory, called after a node's start has read everything)."""

    def close(self) -> None:
        """Release the store; later calls raise ``StoreClosed``. Idempotent."""


def plan_log_appends(
    envelopes: Sequence[Envelope],
    head_of: Callable[[LogId], Head | None],
    entry_of: Callable[[LogId, int], bytes | None],
) -> tuple[list[Envelope], dict[LogId, Head]]:
    """Decide what a batch appends, or raise ``LogConflict`` before anything is written.

    Pure given the two look-ups, so both stores judge a batch identically. Returns the envelopes
    that are new (in batch order) and the new head of every log they extend. An envelope already
    stored at its seq with the same id is skipped (replay after a crash is harmless); anything else
    must extend its log by exactly one seq and name the current head as ``prev``.
    """
    heads: dict[LogId, Head] = {}
    appended: dict[tuple[LogId, int], bytes] = {}
    fresh: list[Envelope] = []
    for env in envelopes:
        log = env.log
        head = heads[log] if log in heads else head_of(log)
        top = head.seq if head is not None else 0
        if env.seq <= top:
            existing = appended.get((log, env.seq)) or entry_of(log, env.seq)
            if existing == env.id:
                continue
            raise LogConflict(
                f"log {log} seq {env.seq} already holds {short_id(existing or ZERO_ID)}; refusing "
                f"{short_id(env.id)} (a seq is never reused)"
            )
        if env.seq != top + 1:
            raise LogConflict(f"log {log} is at seq {top}; {env.seq} would leave a gap")
        if head is not None and env.prev != head.id:
            raise LogConflict(
                f"log {log} seq {env.seq} names prev {short_id(env.prev)}, "
                f"but seq {head.seq} is {short_id(head.id)}"
            )
        heads[log] = env.head
        appended[(log, env.seq)] = env.id
        fresh.append(env)
    return fresh, heads


def check_meta_names(names: Mapping[str, bytes]) -> None:
    for name in names:
        if not name or len(name.encode()) > 255:
            raise ValueError(f"metadata names are 1..255 bytes of UTF-8, got {name!r}")
