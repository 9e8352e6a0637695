"""``memmesh bench store``: durable commit throughput against raw LMDB, in one run.

Three figures, each the median of ``rounds`` interleaved rounds (interleaving spreads machine
noise evenly over the variants):

- ``raw_lmdb_commits_per_s``: py-lmdb alone with the store's flags (``sync=True``,
  ``writemap=False``), one ``put`` of an envelope-sized value per transaction: the baseline.
- ``durable_commits_per_s``: ``LmdbStore.commit`` of one envelope per commit (its log entry,
  holding its id and bytes, and its log's head, with checksums; the lock held).
- ``group_commit_envelopes_per_s``: ``LmdbStore.commit`` of 64 envelopes per commit.

``store_vs_raw_lmdb`` = durable / raw (goal >= 0.8). Envelopes are signed before timing starts:
this measures storage, not Ed25519.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from ..envelope import Envelope
from ..store import LmdbStore, WriteBatch
from ..testing import LogWriter, fixed_mesh_id, seeded_key

__all__ = ["run_store_bench"]

GROUP_SIZE = 64


def run_store_bench(
    *,
    commits: int = 300,
    groups: int = 30,
    rounds: int = 3,
    payload_bytes: int = 256,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Run the store benchmark in a fresh directory under ``directory`` and return its figures."""
    base = Path(tempfile.mkdtemp(prefix="memmesh-bench-", dir=directory))
    try:
        writer = LogWriter(seeded_key("bench"), fixed_mesh_id("bench"))
        total = rounds * (commits + groups * GROUP_SIZE)
        envelopes = [writer.next(os.urandom(payload_bytes)) for _ in range(total)]
        envelope_bytes = len(envelopes[0].raw)
        raw_rates: list[float] = []
        single_rates: list[float] = []
        group_rates: list[float] = []
        store = LmdbStore(base / "store")
        try:
            cursor = 0
            for round_no in range(rounds):
                raw_rates.append(_raw_lmdb_rate(base / f"raw{round_no}", commits, envelope_bytes))
                single = envelopes[cursor : cursor + commits]
                cursor += commits
                single_rates.append(_rate(commits, functools.partial(_commit_each, store, single)))
                grouped = envelopes[cursor : cursor + groups * GROUP_SIZE]
                cursor += groups * GROUP_SIZE
                group_rates.append(
                    _rate(groups * GROUP_SIZE, functools.partial(_commit_groups, store, grouped))
                )
        finally:
            store.close()
        raw = statistics.median(raw_rates)
        durable = statistics.median(single_rates)
        group = statistics.median(group_rates)
        return {
            "benchmark": "store",
            "raw_lmdb_commits_per_s": round(raw, 1),
            "durable_commits_per_s": round(durable, 1),
            "group_commit_envelopes_per_s": round(group, 1),
            "store_vs_raw_lmdb": round(durable / raw, 3),
            "group_vs_durable": round(group / durable, 2),
            "goal_store_vs_raw_lmdb": 0.8,
            "rounds": rounds,
            "commits_per_round": commits,
            "group_size": GROUP_SIZE,
            "groups_per_round": groups,
            "envelope_bytes": envelope_bytes,
            "filesystem": _filesystem_of(base),
            "python": platform.python_version(),
            "lmdb_version": ".".join(map(str, lmdb.version())),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _rate(count: int, work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def _commit_each(store: LmdbStore, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        store.commit(WriteBatch(envelopes=[env]))


def _commit_groups(store: LmdbStore, envelopes: list[Envelope]) -> None:
    for i in range(0, len(envelopes), GROUP_SIZE):
        store.commit(WriteBatch(envelopes=envelopes[i : i + GROUP_SIZE]))


def _raw_lmdb_rate(path: Path, commits: int, value_bytes: int) -> float:
    env = lmdb.open(
        str(path),
        map_size=64 << 20,
        sync=True,
        metasync=True,
        writemap=False,
        map_async=False,
        max_dbs=2,
    )
    try:
        db = env.open_db(b"envelopes")
        items = [(os.urandom(32), os.urandom(value_bytes)) for _ in range(commits)]

        def work() -> None:
            for key, value in items:
                with env.begin(write=True) as txn:
                    txn.put(key, value, db=db)

        return _rate(commits, work)
    finally:
        env.close()


def _filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (fsync cost depends on it), from /proc/mounts."""
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                mount_point = fields[1]
                resolved = str(path.resolve())
                inside = resolved == mount_point or resolved.startswith(
                    mount_point.rstrip("/") + "/"
                )
                if inside and len(mount_point) > len(best):
                    best, fstype = mount_point, fields[2]
    except OSError:
        pass
    return fstype
