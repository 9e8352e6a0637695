"""Simulated disks: a ``MemoryDisk`` that outlives the node's process, behind a store that
injects faults.

**The durability model.** ``Store.commit`` is the acknowledgement point (what LMDB with
``sync=True`` gives): once it returns, the batch survives any crash, and the core acknowledges
a write only after it returned. What a crash can lose is everything not yet committed: what
the core staged and had not flushed (the ``Persist`` to ``Flush`` window), and a commit in
flight. A crash that strikes *during* a commit (``arm_crash``) raises :class:`SimCrash` out of
the commit, with the batch either wholly on disk or wholly absent (the store is atomic), and the
core never returns to acknowledge it. So "no acknowledged write lost" is checked against the
exact promise the core relies on, and unacknowledged writes may or may not survive.

Faults: a write fault makes ``commit`` raise ``StorageError`` before anything is written (the
core sees a failed commit); a read fault makes one read of a restart fail with
``CorruptRecord`` (the node fails to start and is started again later).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from ..envelope import Envelope
from ..errors import CorruptRecord, StorageError
from ..ids import Head, LogId
from ..store import MemoryStore, WriteBatch
from ..store.memory import MemoryDisk

__all__ = ["FaultyStore", "SimCrash", "SimDisk"]

_READ_FAULT_WINDOW = 64
"""A read fault strikes at one of the first reads of an open."""


class SimCrash(BaseException):
    """The process dies inside a commit. A ``BaseException``, so nothing in the core swallows
    it; the cluster catches it and crashes the node."""


class SimDisk:
    """One node's disk across its restarts."""

    def __init__(
        self,
        rng: random.Random,
        *,
        write_fault: float,
        read_fault: float,
        on_commit: Callable[[list[Envelope]], None],
    ) -> None:
        self.memory = MemoryDisk()
        self.rng = rng
        self.write_fault = write_fault
        self.read_fault = read_fault
        self.faults_on = True
        self.on_commit = on_commit
        self.crash_armed: bool | None = None
        """Crash at the next commit: True once the batch is on disk, False before it is."""
        self.write_faults = 0
        self.read_faults = 0

    def open(self) -> FaultyStore:
        """A store over this disk for a new process; may be set to fail one of its reads."""
        fail_at = None
        if self.faults_on and self.read_fault and self.rng.random() < self.read_fault:
            fail_at = self.rng.randrange(_READ_FAULT_WINDOW)
        return FaultyStore(self, fail_at)

    def holds(self, envelope_id: bytes) -> bool:
        return envelope_id in self.memory.envelopes


class FaultyStore:
    """A ``Store`` over a :class:`SimDisk`, with its faults."""

    def __init__(self, disk: SimDisk, fail_read_at: int | None) -> None:
        self.disk = disk
        self._inner = MemoryStore(disk.memory)
        self._fail_read_at = fail_read_at
        self._reads = 0

    def _read(self) -> None:
        if self._fail_read_at is not None:
            self._reads += 1
            if self._reads > self._fail_read_at:
                self._fail_read_at = None
                self.disk.read_faults += 1
                raise CorruptRecord("injected read fault")

    def commit(self, batch: WriteBatch) -> None:
        disk = self.disk
        if disk.crash_armed is not None:
            lands, disk.crash_armed = disk.crash_armed, None
            if lands:
                self._inner.commit(batch)
                disk.on_commit([*batch.envelopes, *batch.side_envelopes])
            raise SimCrash("crashed during a commit" + (" (batch on disk)" if lands else ""))
        if disk.faults_on and disk.write_fault and disk.rng.random() < disk.write_fault:
            disk.write_faults += 1
            raise StorageError("injected write fault")
        self._inner.commit(batch)
        disk.on_commit([*batch.envelopes, *batch.side_envelopes])

    def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
        self._read()
        return self._inner.get_log_envelope(log, seq)

    def get_side_envelope(self, envelope_id: bytes) -> bytes | None:
        self._read()
        return self._inner.get_side_envelope(envelope_id)

    def iter_log_envelopes(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """A read for the log, then one for each envelope, as separate look-ups would be: a
        fault can strike at any envelope read at start."""
        self._read()
        for item in self._inner.iter_log_envelopes(log, start_seq, end_seq):
            self._read()
            yield item

    def get_log_entry(self, log: LogId, seq: int) -> bytes | None:
        self._read()
        return self._inner.get_log_entry(log, seq)

    def iter_log(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        self._read()
        return self._inner.iter_log(log, start_seq, end_seq)

    def head(self, log: LogId) -> Head | None:
        return self._inner.head(log)

    def heads(self) -> list[tuple[LogId, Head]]:
        self._read()
        return self._inner.heads()

    def iter_side_envelopes(self) -> Iterator[bytes]:
        return self._inner.iter_side_envelopes()

    def release_mapped_pages(self) -> None:
        self._inner.release_mapped_pages()

    def get_meta(self, name: str) -> bytes | None:
        return self._inner.get_meta(name)

    def iter_meta(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return self._inner.iter_meta(prefix)

    def get_evidence(self, key: bytes) -> bytes | None:
        return self._inner.get_evidence(key)

    def iter_evidence(self) -> Iterator[tuple[bytes, bytes]]:
        return self._inner.iter_evidence()

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        return self._inner.latest_checkpoint()

    def get_checkpoint(self, number: int) -> bytes | None:
        return self._inner.get_checkpoint(number)

    def close(self) -> None:
        self._inner.close()
