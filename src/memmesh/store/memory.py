"""An in-memory ``Store``: the reference implementation, and the simulator's disk.

State lives in a :class:`MemoryDisk` that outlives any one ``MemoryStore``, so tests and the
simulator can "reopen" a store after a simulated crash. A commit builds the new state aside and
swaps it in at the end, so a batch refused half way changes nothing, as in LMDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import StoreClosed
from ..ids import Head, LogId
from ._base import WriteBatch, check_meta_names, plan_log_appends

__all__ = ["MemoryDisk", "MemoryStore"]


@dataclass(slots=True)
class MemoryDisk:
    """What a ``MemoryStore`` has committed."""

    envelopes: dict[bytes, bytes] = field(default_factory=dict)
    logs: dict[LogId, list[bytes]] = field(default_factory=dict)
    """Envelope ids of each log; index ``seq - 1``."""
    side: set[bytes] = field(default_factory=set)
    meta: dict[str, bytes] = field(default_factory=dict)
    evidence: dict[bytes, bytes] = field(default_factory=dict)
    checkpoints: dict[int, bytes] = field(default_factory=dict)
    commits: int = 0


class MemoryStore:
    """A ``Store`` over a :class:`MemoryDisk`; durable for as long as the disk object lives."""

    def __init__(self, disk: MemoryDisk | None = None) -> None:
        self.disk = disk if disk is not None else MemoryDisk()
        self._closed = False

    def _check_open(self) -> MemoryDisk:
        if self._closed:
            raise StoreClosed("memory store is closed")
        return self.disk

    def commit(self, batch: WriteBatch) -> None:
        disk = self._check_open()
        check_meta_names(batch.meta)
        fresh, heads = plan_log_appends(batch.envelopes, self.head, self.get_log_entry)
        # Nothing below can fail: the plan above already refused anything invalid.
        for env in fresh:
            disk.envelopes[env.id] = env.raw
            disk.logs.setdefault(env.log, []).append(env.id)
        for log, head in heads.items():
            assert len(disk.logs[log]) == head.seq
        for env in batch.side_envelopes:
            disk.envelopes[env.id] = env.raw
            disk.side.add(env.id)
        disk.meta.update(batch.meta)
        disk.evidence.update(batch.evidence)
        disk.checkpoints.update(batch.checkpoints)
        disk.commits += 1

    def get_log_entry(self, log: LogId, seq: int) -> bytes | None:
        ids = self._check_open().logs.get(log)
        if ids is None or not 1 <= seq <= len(ids):
            return None
        return ids[seq - 1]

    def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
        env_id = self.get_log_entry(log, seq)
        return None if env_id is None else self.disk.envelopes[env_id]

    def get_side_envelope(self, envelope_id: bytes) -> bytes | None:
        disk = self._check_open()
        return disk.envelopes[envelope_id] if envelope_id in disk.side else None

    def iter_log(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        ids = self._check_open().logs.get(log, [])
        last = len(ids) if end_seq is None else min(end_seq, len(ids))
        for seq in range(max(start_seq, 1), last + 1):
            yield seq, ids[seq - 1]

    def iter_log_envelopes(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        for seq, env_id in self.iter_log(log, start_seq, end_seq):
            yield seq, self.disk.envelopes[env_id]

    def head(self, log: LogId) -> Head | None:
        ids = self._check_open().logs.get(log)
        return Head(len(ids), ids[-1]) if ids else None

    def heads(self) -> list[tuple[LogId, Head]]:
        logs = self._check_open().logs
        return [(log, Head(len(logs[log]), logs[log][-1])) for log in sorted(logs) if logs[log]]

    def iter_side_envelopes(self) -> Iterator[bytes]:
        yield from sorted(self._check_open().side)

    def get_meta(self, name: str) -> bytes | None:
        return self._check_open().meta.get(name)

    def iter_meta(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        meta = self._check_open().meta
        for name in sorted((n for n in meta if n.startswith(prefix)), key=str.encode):
            yield name, meta[name]

    def get_evidence(self, key: bytes) -> bytes | None:
        return self._check_open().evidence.get(key)

    def iter_evidence(self) -> Iterator[tuple[bytes, bytes]]:
        evidence = self._check_open().evidence
        for key in sorted(evidence):
            yield key, evidence[key]

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        checkpoints = self._check_open().checkpoints
        if not checkpoints:
            return None
        number = max(checkpoints)
        return number, checkpoints[number]

    def get_checkpoint(self, number: int) -> bytes | None:
        return self._check_open().checkpoints.get(number)

    def release_mapped_pages(self) -> None:
        """Nothing is mapped here."""
        self._check_open()

    def close(self) -> None:
        self._closed = True
