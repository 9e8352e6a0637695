"""Causal-past queries over admitted envelopes: did the writer of one envelope hold another?

Envelope ``e``'s causal past is everything reachable from it by ``prev`` and ``deps``. A writer's
next envelope depends on every DAG head it had integrated, so whatever a node held when it wrote
is in the past of what it wrote; a claim that supersedes, or types itself by, something outside
its envelope's past names what its writer never saw (DESIGN §5), and only a dishonest node
writes one.

The search walks back from ``later`` and prunes by causal rank (nothing below the rank of
``earlier`` can lead to it) and by log position: each log is a chain, so an envelope of
``earlier``'s log at a seq at or past it has ``earlier`` below it on its main branch, and one
before it cannot. The honest case ends in a step or two, because the writer's deps name the
recent heads of the other logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..envelope import Envelope
from ..ids import LogId

__all__ = ["CausalRecords", "precedes"]


class _Record(Protocol):
    @property
    def envelope(self) -> Envelope: ...

    @property
    def rank(self) -> int: ...

    @property
    def side(self) -> bool: ...


class CausalRecords(Protocol):
    """What the query reads: admission's records and main-branch logs."""

    @property
    def records(self) -> Mapping[bytes, _Record]: ...

    @property
    def logs(self) -> Mapping[LogId, Sequence[bytes]]: ...


def precedes(known: CausalRecords, earlier: bytes, later: bytes) -> bool:
    """Whether envelope ``earlier`` is ``later`` or in its causal past. Both must be stored."""
    if earlier == later:
        return True
    records, logs = known.records, known.logs
    target = records[earlier]
    goal = target.envelope
    goal_log = goal.log
    on_main = not target.side
    main = logs.get(goal_log, ())
    todo = [later]
    seen = {later}
    while todo:
        record = records[todo.pop()]
        env = record.envelope
        if env.id == earlier:
            return True
        if record.rank <= target.rank:
            continue
        if env.log == goal_log and not record.side and on_main:
            if env.seq < goal.seq:
                continue  # a chain: nothing before goal's seq on its log leads up to it
            if env.seq >= goal.seq and len(main) >= goal.seq and main[goal.seq - 1] == earlier:
                return True
        for parent in (env.prev, *env.deps):
            if parent in records and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return False
