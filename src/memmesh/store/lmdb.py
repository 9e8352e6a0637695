"""The LMDB ``Store``: durable, crash-safe, one writer process per data dir.

Environment flags are fixed where durability depends on them: ``sync=True`` and ``metasync=True``
(a commit returns only after fsync), ``writemap=False`` (a stray write through the map cannot
corrupt the file, and a full disk fails the commit instead of raising SIGBUS), ``map_async=False``.

Layout (format 2): named databases ``logs`` ((author, epoch, seq) -> envelope id || envelope
bytes), ``heads``, ``side`` (envelope id -> bytes of the envelopes kept off their log),
``checkpoints``, ``evidence``, ``meta`` and ``info`` (the on-disk format version). Every value is
stored as a record: ``crc32(key || value) u32 || value``, checked on every read, so damage at
rest is reported as :class:`~memmesh.errors.CorruptRecord` instead of being served.

Envelopes are keyed by their place in their log, not by their id: a commit then appends at the
end of each log's key range and dirties a few pages, where keys that are hashes land on a random
leaf each (measured with 64 envelopes a commit: 3.2 ms against 1.1 ms at 100,000 envelopes, and
the gap grows with the store). Nothing reads an envelope by id from the store: the node holds
the index in memory. Format 1 (an ``envelopes`` database keyed by id, ``logs`` holding ids) is
migrated in one transaction when the store is opened.

A ``LOCK`` file in the data dir is held with ``flock`` for the store's lifetime (LMDB's own lock
serialises writers but lets two processes write the same dir; we must not, DESIGN §4 rule 1).
The kernel drops it when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from ..errors import CorruptRecord, DataDirLocked, StorageError, StorageFull, StoreClosed
from ..ids import HASH_BYTES, Head, LogId
from ..wire import crc32, pack_u32, pack_u64, unpack_u32, unpack_u64
from ._base import WriteBatch, check_meta_names, plan_log_appends

__all__ = ["FORMAT_VERSION", "LmdbStore"]

_T = TypeVar("_T")
_Bytes = TypeVar("_Bytes", bytes, memoryview)

FORMAT_VERSION = 2
MIGRATED_FORMATS = frozenset({1})
"""Older formats that opening a store migrates to ``FORMAT_VERSION``."""
_DB_NAMES = (
    b"logs",
    b"heads",
    b"side",
    b"checkpoints",
    b"evidence",
    b"meta",
    b"info",
)
_ITER_CHUNK = 1024
"""Log entries read per read transaction: no transaction stays open while the caller iterates."""
_ENVELOPE_CHUNK = 128
"""The same when the envelopes' bytes come along (a few MB at most)."""
_LEGACY_ENVELOPES = b"envelopes"
"""Format 1's envelopes by id: read once, by the migration, then dropped."""
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_FREE_BYTES_MIN = 1 << 20
"""After an I/O error, a disk with less free space than this is reported as full.

LMDB turns a short ``pwrite`` (what a full disk gives) into EIO, so EIO alone cannot tell a full
disk from a failing one; the free space decides.
"""


class LmdbStore:
    """A ``Store`` in an LMDB environment in ``path`` (created 0700 if missing)."""

    def __init__(
        self,
        path: Path,
        *,
        map_size_bytes: int = 64 << 20,
        map_size_max_bytes: int = 1 << 40,
        map_growth: bool = True,
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        """``on_commit`` is called after each successful commit with its duration in seconds
        (wall time around the write transaction, its two device flushes included). It must
        not raise: the batch is durable by then, and the caller would take it as lost."""
        if map_size_bytes > map_size_max_bytes:
            raise ValueError("map_size_bytes must not exceed map_size_max_bytes")
        self.path = Path(path)
        self.map_size_max_bytes = map_size_max_bytes
        self.map_growth = map_growth
        self.on_commit = on_commit
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = _acquire_lock(self.path / "LOCK")
        try:
            self._open_environment(map_size_bytes)
            self._env.reader_check()  # clear reader slots left by killed processes
            self._check_format()
        except BaseException:
            with contextlib.suppress(Exception):
                self._env.close()
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _open_environment(self, map_size_bytes: int) -> None:
        self._env = lmdb.open(
            str(self.path),
            map_size=map_size_bytes,
            subdir=True,
            readonly=False,
            metasync=True,
            sync=True,
            map_async=False,
            writemap=False,
            lock=True,
            mode=0o600,
            max_dbs=len(_DB_NAMES) + 1,  # the legacy database, while migrating
        )
        self._dbs = {name: self._env.open_db(name) for name in _DB_NAMES}

    # -- lifecycle --------------------------------------------------------------------------

    def release_mapped_pages(self) -> None:
        """Unmap the pages reads have mapped (by closing the environment and opening it again,
        the lock held throughout). They stay in the page cache, and the kernel maps them again
        on the next read; but after a node's start, which reads every envelope once into its
        heap, the process would otherwise count each envelope twice in its resident memory
        (and in its OOM score) until the kernel reclaimed the mapped copy. No transaction may
        be open."""
        self._check_open()
        size: int = self._env.info()["map_size"]
        self._env.close()
        self._open_environment(size)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._env.close()
        os.close(self._lock_fd)  # closing the descriptor releases the flock

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """Environment flags, map size and usage, for operators and the flags test."""
        self._check_open()
        flags: dict[str, Any] = dict(self._env.flags())
        env_info = self._env.info()
        return {
            "path": str(self.path),
            "flags": flags,
            "map_size_bytes": env_info["map_size"],
            "map_size_max_bytes": self.map_size_max_bytes,
            "map_growth": self.map_growth,
            "last_page": env_info["last_pgno"],
            "page_bytes": self._env.stat()["psize"],
        }

    # -- writes -----------------------------------------------------------------------------

    def commit(self, batch: WriteBatch) -> None:
        self._check_open()
        check_meta_names(batch.meta)
        started = time.perf_counter()
        while True:
            try:
                self._write(batch)
                break
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as exc:
                raise self._translate(exc, "commit") from exc
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started)

    def _write(self, batch: WriteBatch) -> None:
        logs, heads, side = self._dbs[b"logs"], self._dbs[b"heads"], self._dbs[b"side"]
        with self._env.begin(write=True) as txn:
            fresh, new_heads = plan_log_appends(
                batch.envelopes,
                lambda log: self._head_in(txn, log),
                lambda log, seq: self._entry_id(txn, log, seq),
            )
            for env in fresh:
                _put(txn, logs, _log_key(env.log, env.seq), env.id + env.raw)
            for log, head in new_heads.items():
                _put(txn, heads, _head_key(log), pack_u64(head.seq) + head.id)
            for env in batch.side_envelopes:
                _put(txn, side, env.id, env.raw)
            for name, value in batch.meta.items():
                _put(txn, self._dbs[b"meta"], name.encode(), value)
            for key, value in batch.evidence.items():
                _put(txn, self._dbs[b"evidence"], key, value)
            for number, value in batch.checkpoints.items():
                _put(txn, self._dbs[b"checkpoints"], pack_u64(number), value)

    def _grow_map(self) -> None:
        size: int = self._env.info()["map_size"]
        if not self.map_growth or size >= self.map_size_max_bytes:
            raise StorageFull(
                f"{self.path}: LMDB map is full at {size} bytes "
                f"(map_growth={self.map_growth}, map_size_max_bytes={self.map_size_max_bytes})"
            )
        self._env.set_mapsize(min(size * 2, self.map_size_max_bytes))

    def _translate(self, exc: lmdb.Error, action: str) -> StorageError:
        message = str(exc)
        code = _errno_in(message)
        if code in _DISK_FULL_ERRNOS or (code == errno.EIO and self._disk_nearly_full()):
            free = shutil.disk_usage(self.path).free
            return StorageFull(f"{self.path}: disk full during {action} ({free} bytes free)")
        return StorageError(f"{self.path}: LMDB {action} failed: {message}")

    def _disk_nearly_full(self) -> bool:
        try:
            return shutil.disk_usage(self.path).free < _DISK_FREE_BYTES_MIN
        except OSError:
            return False

    # -- reads ------------------------------------------------------------------------------

    def get_log_entry(self, log: LogId, seq: int) -> bytes | None:
        return self._read(lambda txn: self._entry_id(txn, log, seq))

    def get_log_envelope(self, log: LogId, seq: int) -> bytes | None:
        # Zero-copy inside the read transaction: the checksum runs over the mapped record and
        # only the envelope's bytes are copied out (a node reads envelopes it no longer holds
        # in memory whenever it serves or proves them; copies of 100 KB add up).
        key = _log_key(log, seq)

        def read(txn: lmdb.Transaction) -> bytes | None:
            value = txn.get(key, db=self._dbs[b"logs"])
            if value is None:
                return None
            return bytes(_open_record(b"logs", key, memoryview(value))[HASH_BYTES:])

        return self._read(read, buffers=True)

    def get_side_envelope(self, envelope_id: bytes) -> bytes | None:
        return self._read(lambda txn: self._get(txn, b"side", envelope_id))

    def iter_log(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        for seq, entry in self._iter_entries(log, start_seq, end_seq, _ITER_CHUNK):
            yield seq, entry[:HASH_BYTES]

    def iter_log_envelopes(
        self, log: LogId, start_seq: int = 1, end_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        for seq, entry in self._iter_entries(log, start_seq, end_seq, _ENVELOPE_CHUNK):
            yield seq, entry[HASH_BYTES:]

    def _iter_entries(
        self, log: LogId, start_seq: int, end_seq: int | None, chunk_size: int
    ) -> Iterator[tuple[int, bytes]]:
        seq = max(start_seq, 1)
        while end_seq is None or seq <= end_seq:
            chunk = self._read(
                functools.partial(self._log_chunk, log=log, start=seq, end=end_seq, size=chunk_size)
            )
            yield from chunk
            if len(chunk) < chunk_size:
                return
            seq = chunk[-1][0] + 1

    def _log_chunk(
        self, txn: lmdb.Transaction, log: LogId, start: int, end: int | None, size: int
    ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        prefix = _head_key(log)
        cursor = txn.cursor(db=self._dbs[b"logs"])
        if not cursor.set_range(_log_key(log, start)):
            return out
        for raw_key, value in cursor:
            key = bytes(raw_key)
            if not key.startswith(prefix) or len(out) >= size:
                break
            seq = unpack_u64(key[len(prefix) :])
            if end is not None and seq > end:
                break
            out.append((seq, _open_record(b"logs", key, bytes(value))))
        return out

    def head(self, log: LogId) -> Head | None:
        return self._read(lambda txn: self._head_in(txn, log))

    def heads(self) -> list[tuple[LogId, Head]]:
        def scan(txn: lmdb.Transaction) -> list[tuple[LogId, Head]]:
            out = []
            for raw_key, value in txn.cursor(db=self._dbs[b"heads"]):
                key = bytes(raw_key)
                body = _open_record(b"heads", key, bytes(value))
                log = LogId(key[:HASH_BYTES], unpack_u32(key[HASH_BYTES:]))
                out.append((log, Head(unpack_u64(body[:8]), body[8:])))
            return out

        return self._read(scan)  # LMDB keys sort bytewise: author, then big-endian epoch

    def iter_side_envelopes(self) -> Iterator[bytes]:
        def scan(txn: lmdb.Transaction) -> list[bytes]:
            cursor = txn.cursor(db=self._dbs[b"side"])
            return [bytes(k) for k, v in cursor if _open_record(b"side", bytes(k), bytes(v))]

        yield from self._read(scan)

    def get_meta(self, name: str) -> bytes | None:
        return self._read(lambda txn: self._get(txn, b"meta", name.encode()))

    def iter_meta(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        start = prefix.encode()

        def scan(txn: lmdb.Transaction) -> list[tuple[str, bytes]]:
            cursor = txn.cursor(db=self._dbs[b"meta"])
            out: list[tuple[str, bytes]] = []
            if not cursor.set_range(start):
                return out
            for raw_key, value in cursor:
                key = bytes(raw_key)
                if not key.startswith(start):
                    break
                out.append((key.decode(), _open_record(b"meta", key, bytes(value))))
            return out

        yield from self._read(scan)

    def get_evidence(self, key: bytes) -> bytes | None:
        return self._read(lambda txn: self._get(txn, b"evidence", key))

    def iter_evidence(self) -> Iterator[tuple[bytes, bytes]]:
        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=self._dbs[b"evidence"])
            return [(bytes(k), _open_record(b"evidence", bytes(k), bytes(v))) for k, v in cursor]

        yield from self._read(scan)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        def last(txn: lmdb.Transaction) -> tuple[int, bytes] | None:
            cursor = txn.cursor(db=self._dbs[b"checkpoints"])
            if not cursor.last():
                return None
            key, value = bytes(cursor.key()), bytes(cursor.value())
            return unpack_u64(key), _open_record(b"checkpoints", key, value)

        return self._read(last)

    def get_checkpoint(self, number: int) -> bytes | None:
        return self._read(lambda txn: self._get(txn, b"checkpoints", pack_u64(number)))

    # -- helpers ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.path}: store is closed")

    def _read(self, body: Callable[[lmdb.Transaction], _T], *, buffers: bool = False) -> _T:
        """``body`` in a read transaction; with ``buffers``, values are views into the map,
        valid only inside it."""
        self._check_open()
        try:
            begun = self._env.begin(buffers=True) if buffers else self._env.begin(buffers=False)
            with begun as txn:
                return body(txn)
        except lmdb.Error as exc:
            raise self._translate(exc, "read") from exc

    def _get(self, txn: lmdb.Transaction, db_name: bytes, key: bytes) -> bytes | None:
        value = txn.get(key, db=self._dbs[db_name])
        return None if value is None else _open_record(db_name, key, bytes(value))

    def _entry_id(self, txn: lmdb.Transaction, log: LogId, seq: int) -> bytes | None:
        entry = self._get(txn, b"logs", _log_key(log, seq))
        return None if entry is None else entry[:HASH_BYTES]

    def _head_in(self, txn: lmdb.Transaction, log: LogId) -> Head | None:
        body = self._get(txn, b"heads", _head_key(log))
        return None if body is None else Head(unpack_u64(body[:8]), body[8:])

    def _check_format(self) -> None:
        with self._env.begin(write=True) as txn:
            stored = self._get(txn, b"info", b"format")
            if stored is None:
                _put(txn, self._dbs[b"info"], b"format", pack_u32(FORMAT_VERSION))
            elif unpack_u32(stored) in MIGRATED_FORMATS:
                self._migrate_from_1(txn)
                _put(txn, self._dbs[b"info"], b"format", pack_u32(FORMAT_VERSION))
            elif unpack_u32(stored) != FORMAT_VERSION:
                raise StorageError(
                    f"{self.path}: store format {unpack_u32(stored)}, this build reads "
                    f"{FORMAT_VERSION}"
                )

    def _migrate_from_1(self, txn: lmdb.Transaction) -> None:
        """Format 1 -> 2 inside the opening transaction: each log entry gets its envelope's bytes
        after the id, each side record its envelope's bytes, and the ``envelopes`` database goes.
        Every record is checked on the way: a damaged one raises ``CorruptRecord`` and the
        transaction aborts, leaving the store as it was (a node then quarantines it: see
        :func:`memmesh.store.scrub.scrub_before_open`)."""
        try:
            legacy = self._env.open_db(_LEGACY_ENVELOPES, txn=txn, create=False)
        except lmdb.NotFoundError:
            raise CorruptRecord(f"{self.path}: format 1 without its envelopes database") from None

        def envelope(env_id: bytes) -> bytes:
            raw = txn.get(env_id, db=legacy)
            if raw is None:
                raise CorruptRecord(f"{self.path}: format 1 names envelope {env_id.hex()}, absent")
            return _open_record(_LEGACY_ENVELOPES, env_id, bytes(raw))

        for name in (b"logs", b"side"):
            db = self._dbs[name]
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
            for key, record in rows:
                value = _open_record(name, key, record)
                env_id = value if name == b"logs" else key
                if len(env_id) != HASH_BYTES or (name == b"side" and value != b""):
                    raise CorruptRecord(f"{self.path}: {name.decode()} record {key.hex()} is bad")
                raw = envelope(env_id)
                _put(txn, db, key, value + raw if name == b"logs" else raw)
        txn.drop(legacy, delete=True)


def _put(txn: lmdb.Transaction, db: Any, key: bytes, value: bytes) -> None:
    txn.put(key, pack_u32(crc32(key, value)) + value, db=db)


def _open_record(db_name: bytes, key: bytes, record: _Bytes) -> _Bytes:
    if len(record) < 4 or unpack_u32(record[:4]) != crc32(key, record[4:]):
        raise CorruptRecord(f"record {key.hex()} in {db_name.decode()} failed its checksum")
    return record[4:]


def _head_key(log: LogId) -> bytes:
    return log.author + pack_u32(log.epoch)


def _log_key(log: LogId, seq: int) -> bytes:
    return log.author + pack_u32(log.epoch) + pack_u64(seq)


def _errno_in(message: str) -> int | None:
    """py-lmdb reports system errors only as ``"mdb_txn_commit: <strerror>"``; map them back."""
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
        if os.strerror(code) in message:
            return code
    return None


def _acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirLocked(
            f"{path.parent}: data dir is in use by another process (pid {holder}); "
            f"one process writes a data dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
