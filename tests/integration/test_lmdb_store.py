"""LMDB-specific promises: flags, the data dir lock, checksums, map growth, a full disk."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from memmesh.envelope import Envelope
from memmesh.errors import CorruptRecord, DataDirLocked, StorageError, StorageFull
from memmesh.ids import Head
from memmesh.store import LmdbStore, WriteBatch
from memmesh.testing import LogWriter, fixed_mesh_id, seeded_key
from memmesh.wire import crc32, pack_u32, pack_u64

MESH = fixed_mesh_id()


def test_environment_flags(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "s") as store:
        flags = store.info()["flags"]
    assert flags["sync"] is True
    assert flags["metasync"] is True
    assert flags["writemap"] is False
    assert flags["map_async"] is False
    assert flags["readonly"] is False
    assert flags["lock"] is True
    assert flags["subdir"] is True


def test_data_dir_is_private(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "s"):
        pass
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "s" / "data.mdb").stat().st_mode & 0o077 == 0


def test_second_opener_in_this_process_is_refused(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "s"), pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
        LmdbStore(tmp_path / "s")
    LmdbStore(tmp_path / "s").close()  # released on close


def test_second_process_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    script = (
        "import sys, pathlib\n"
        "from memmesh.store import LmdbStore\n"
        "from memmesh.errors import DataDirLocked\n"
        "try:\n"
        "    LmdbStore(pathlib.Path(sys.argv[1])).close()\n"
        "except DataDirLocked as exc:\n"
        "    print('LOCKED', exc); sys.exit(3)\n"
        "print('OPENED')\n"
    )
    with LmdbStore(tmp_path / "s"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "s")],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert "LOCKED" in done.stdout
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "s")],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OPENED" in done.stdout


def test_damaged_record_is_reported_not_served(tmp_path: Path) -> None:
    env = LogWriter(seeded_key("a"), MESH).next()
    with LmdbStore(tmp_path / "s") as store:
        store.commit(WriteBatch(envelopes=[env]))
    # Flip one payload byte behind the store's back, keeping LMDB itself consistent.
    raw = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    db = raw.open_db(b"logs")
    key = env.author + pack_u32(env.epoch) + pack_u64(env.seq)
    with raw.begin(write=True) as txn:
        record = bytearray(txn.get(key, db=db))
        record[-1] ^= 0x01
        txn.put(key, bytes(record), db=db)
    raw.close()
    with LmdbStore(tmp_path / "s") as store:
        with pytest.raises(CorruptRecord, match="checksum"):
            store.get_log_envelope(env.log, 1)
        with pytest.raises(CorruptRecord, match="checksum"):
            list(store.iter_log(env.log))
        assert store.head(env.log) == Head(1, env.id)  # other records still read


def _write_format_1(path: Path, log: list[Envelope], side: list[Envelope]) -> None:
    """A store as format 1 laid it out: envelopes by id, log entries and side records naming
    them."""
    raw = lmdb.open(str(path), max_dbs=8, subdir=True)
    dbs = {n: raw.open_db(n) for n in (b"envelopes", b"logs", b"heads", b"side", b"info")}
    for n in (b"checkpoints", b"evidence", b"meta"):
        raw.open_db(n)

    def put(txn: lmdb.Transaction, name: bytes, key: bytes, value: bytes) -> None:
        txn.put(key, pack_u32(crc32(key, value)) + value, db=dbs[name])

    with raw.begin(write=True) as txn:
        put(txn, b"info", b"format", pack_u32(1))
        for env in [*log, *side]:
            put(txn, b"envelopes", env.id, env.raw)
        for env in log:
            put(txn, b"logs", env.author + pack_u32(env.epoch) + pack_u64(env.seq), env.id)
        head = log[-1]
        put(txn, b"heads", head.author + pack_u32(head.epoch), pack_u64(head.seq) + head.id)
        for env in side:
            put(txn, b"side", env.id, b"")
    raw.close()


def test_a_format_1_store_is_migrated_when_opened(tmp_path: Path) -> None:
    honest = LogWriter(seeded_key("a"), MESH).take(3)
    fork = LogWriter(seeded_key("a"), MESH)
    fork.seq, fork.prev = 1, honest[0].id
    other_branch = fork.next(b"the other seq 2")
    _write_format_1(tmp_path / "s", honest, [other_branch])
    with LmdbStore(tmp_path / "s") as store:
        assert store.head(honest[0].log) == Head(3, honest[2].id)
        assert list(store.iter_log(honest[0].log)) == [(e.seq, e.id) for e in honest]
        assert [raw for _, raw in store.iter_log_envelopes(honest[0].log)] == [
            e.raw for e in honest
        ]
        assert list(store.iter_side_envelopes()) == [other_branch.id]
        assert store.get_side_envelope(other_branch.id) == other_branch.raw
        store.commit(WriteBatch(envelopes=[LogWriter(seeded_key("b"), MESH).next()]))
    raw = lmdb.open(str(tmp_path / "s"), max_dbs=8, readonly=True)
    with raw.begin() as txn:
        assert txn.get(b"envelopes") is None  # the old database is gone from the main tree
    raw.close()
    with LmdbStore(tmp_path / "s") as store:  # and reopening finds format 2
        assert len(store.heads()) == 2


def test_a_damaged_format_1_store_is_left_as_it_was(tmp_path: Path) -> None:
    honest = LogWriter(seeded_key("a"), MESH).take(2)
    _write_format_1(tmp_path / "s", honest, [])
    raw = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    db = raw.open_db(b"envelopes")
    with raw.begin(write=True) as txn:
        record = bytearray(txn.get(honest[1].id, db=db))
        record[-1] ^= 0x01
        txn.put(honest[1].id, bytes(record), db=db)
    raw.close()
    before = (tmp_path / "s" / "data.mdb").read_bytes()
    with pytest.raises(CorruptRecord, match="checksum"):
        LmdbStore(tmp_path / "s")
    assert (tmp_path / "s" / "data.mdb").read_bytes() == before


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    LmdbStore(tmp_path / "s").close()
    raw = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    db = raw.open_db(b"info")
    with raw.begin(write=True) as txn:
        txn.put(b"format", pack_u32(crc32(b"format", pack_u32(99))) + pack_u32(99), db=db)
    raw.close()
    with pytest.raises(StorageError, match="format 99"):
        LmdbStore(tmp_path / "s")
    with pytest.raises(StorageError, match="format 99"):
        LmdbStore(tmp_path / "s")  # a second try fails the same way: the first released the lock


def _fill(store: LmdbStore, writer: LogWriter, payload_bytes: int) -> list[Envelope]:
    """Commit envelopes until the store refuses; return the acknowledged ones."""
    acked: list[Envelope] = []
    for _ in range(100_000):
        env = writer.next(os.urandom(payload_bytes))
        try:
            store.commit(WriteBatch(envelopes=[env]))
        except StorageFull:
            writer.seq, writer.prev = acked[-1].seq, acked[-1].id  # the refused seq is free
            return acked
        acked.append(env)
    raise AssertionError("the store never filled up")


def _assert_all_present(path: Path, acked: list[Envelope]) -> None:
    with LmdbStore(path) as store:
        assert store.head(acked[0].log) == Head(len(acked), acked[-1].id)
        for env in acked:
            assert store.get_log_envelope(env.log, env.seq) == env.raw


def test_full_map_without_growth_gives_storage_full(tmp_path: Path) -> None:
    path = tmp_path / "s"
    writer = LogWriter(seeded_key("a"), MESH)
    with LmdbStore(path, map_size_bytes=256 << 10, map_growth=False) as store:
        acked = _fill(store, writer, 2000)
        assert len(acked) > 10
        with pytest.raises(StorageFull, match="map is full"):
            store.commit(WriteBatch(envelopes=[writer.next(b"x" * 2000)]))
        assert store.head(acked[0].log) == Head(len(acked), acked[-1].id)  # reads still work
    _assert_all_present(path, acked)


def test_map_grows_on_demand_up_to_its_maximum(tmp_path: Path) -> None:
    path = tmp_path / "s"
    writer = LogWriter(seeded_key("a"), MESH)
    with LmdbStore(path, map_size_bytes=128 << 10, map_size_max_bytes=1 << 20) as store:
        acked = _fill(store, writer, 2000)
        assert store.info()["map_size_bytes"] == 1 << 20
    assert len(acked) > 200  # far more than the initial 128 KiB map holds
    _assert_all_present(path, acked)


@contextlib.contextmanager
def _small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow a tmpfs mount: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_full_disk_gives_storage_full_and_recovers(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "mnt", "2m") as mnt:
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (512 << 10))  # freed later: "the operator made space"
        path = mnt / "s"
        writer = LogWriter(seeded_key("a"), MESH)
        with LmdbStore(path, map_size_bytes=64 << 20) as store:
            acked = _fill(store, writer, 3000)
            assert len(acked) > 50
            with pytest.raises(StorageFull, match="disk full"):
                # Larger than the refused one: LMDB may reuse the pages the refused commit
                # freed, so a write of the same size can just fit (seen once in make test).
                store.commit(WriteBatch(envelopes=[writer.next(os.urandom(200_000))]))
            writer.seq, writer.prev = acked[-1].seq, acked[-1].id
        _assert_all_present(path, acked)
        ballast.unlink()
        with LmdbStore(path, map_size_bytes=64 << 20) as store:
            more = writer.take(20)
            store.commit(WriteBatch(envelopes=more))  # writes resume, continuing the same log
        _assert_all_present(path, acked + more)


def _rss_file_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


def test_released_pages_leave_resident_memory_and_reads_still_work(tmp_path: Path) -> None:
    writer = LogWriter(seeded_key("a"), MESH)
    envs = [writer.next(os.urandom(8_000)) for _ in range(2_500)]  # about 20 MB
    with LmdbStore(tmp_path / "s", map_size_bytes=64 << 20) as store:
        for start in range(0, len(envs), 250):
            store.commit(WriteBatch(envelopes=envs[start : start + 250]))
    with LmdbStore(tmp_path / "s") as store:
        before = _rss_file_bytes()
        read = sum(len(raw) for _, raw in store.iter_log_envelopes(envs[0].log))
        assert read == sum(len(e.raw) for e in envs)
        mapped = _rss_file_bytes()
        assert mapped - before > 15 << 20  # the reads mapped the store's pages
        store.release_mapped_pages()
        assert _rss_file_bytes() - before < 2 << 20
        assert store.get_log_envelope(envs[-1].log, envs[-1].seq) == envs[-1].raw
        store.commit(WriteBatch(envelopes=[writer.next()]))
        assert store.head(envs[0].log) == Head(len(envs) + 1, writer.prev)


def test_each_durable_commit_reports_its_duration_and_a_failed_one_does_not(
    tmp_path: Path,
) -> None:
    timed: list[float] = []
    writer = LogWriter(seeded_key("a"), MESH)
    with LmdbStore(
        tmp_path / "s", map_size_bytes=256 << 10, map_growth=False, on_commit=timed.append
    ) as store:
        store.commit(WriteBatch(envelopes=[writer.next()]))
        store.commit(WriteBatch(meta={"note": b"x"}))
        assert len(timed) == 2 and all(0 < t < 60 for t in timed)
        acked = _fill(store, writer, 2000)
        assert len(timed) == 2 + len(acked)
        with pytest.raises(StorageFull):
            store.commit(WriteBatch(envelopes=[writer.next(b"x" * 2000)]))
        assert len(timed) == 2 + len(acked)  # the refused commit is not counted
