"""The integrity scrub: every record of a stopped LMDB store checked before a node opens it.

**What is checked.** Every record of every named database against its checksum
(``crc32(key || value)``, see :mod:`memmesh.store.lmdb`); every log entry's envelope against its
author's signature, the id stored beside it (the hash of its bytes) and the place it is stored
at; every side envelope likewise against its key; every head against its log. A record that
fails is **damaged**.

**In a child process.** The scan maps the file, and damage in LMDB's own pages can crash the
reader (a bus error or a segfault inside the C library) rather than raise. So the node runs
:func:`scrub_in_child`, which runs this module as ``python -m memmesh.store.scrub PATH`` and reads
its JSON report; a child that dies, hangs or cannot open the environment reports
**structural** damage instead of taking the node down.

**Repair** (:func:`repair`). Damaged records are quarantined: their bytes go to
``quarantine/scrub-<n>.jsonl`` in the data dir, then they are deleted in one transaction, and
every log is cut back to its longest intact prefix (a log entry damaged at seq k
drops seq k and everything after it from that log: sync fetches them again from peers, the
node's own log included, before it writes, DESIGN §4 rule 6). Damaged checkpoints are dropped
(the document is rebuilt from the log). With structural damage the whole store directory is
moved into ``quarantine/`` and the node starts empty and fetches everything again. So a damaged
record is never served to a peer, and the node stays up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from ..envelope import Envelope, decode_envelope, verify_envelope
from ..errors import DataDirLocked, Rejected, StorageError
from ..ids import HASH_BYTES
from ..wire import crc32, pack_u32, pack_u64, unpack_u32, unpack_u64
from .lmdb import FORMAT_VERSION, MIGRATED_FORMATS, LmdbStore, _acquire_lock

__all__ = [
    "ScrubReport",
    "quarantine_store",
    "repair",
    "scan",
    "scrub_before_open",
    "scrub_in_child",
]

_DBS = ("logs", "heads", "side", "checkpoints", "evidence", "meta", "info")
_HEAD_KEY = HASH_BYTES + 4
_LOG_KEY = HASH_BYTES + 4 + 8
SCRUB_TIMEOUT_S = 600.0


@dataclass(slots=True)
class ScrubReport:
    records: int = 0
    """Records read."""
    damaged: dict[str, list[str]] = field(default_factory=dict)
    """Database name -> hex keys of its damaged records, sorted."""
    cut: dict[str, int] = field(default_factory=dict)
    """Log (author hex @ epoch) -> the first seq to drop (everything from it on goes)."""
    structural: str | None = None
    """Why the store could not be read as a whole (then nothing in it is trusted)."""
    outdated_format: int | None = None
    """The store's format when it is an older one this build migrates (nothing else checked)."""

    @property
    def clean(self) -> bool:
        return (
            self.structural is None
            and self.outdated_format is None
            and not any(self.damaged.values())
            and not self.cut
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "damaged": self.damaged,
            "cut": self.cut,
            "structural": self.structural,
            "outdated_format": self.outdated_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScrubReport:
        return cls(
            records=int(data["records"]),
            damaged={str(k): [str(x) for x in v] for k, v in data["damaged"].items()},
            cut={str(k): int(v) for k, v in data["cut"].items()},
            structural=data["structural"],
            outdated_format=data.get("outdated_format"),
        )


def _intact(key: bytes, record: bytes) -> bytes | None:
    if len(record) < 4 or unpack_u32(record[:4]) != crc32(key, record[4:]):
        return None
    return record[4:]


def _open_readonly(path: Path) -> lmdb.Environment:
    return lmdb.open(
        str(path), readonly=True, lock=False, subdir=True, max_dbs=len(_DBS), create=False
    )


def scan(path: Path) -> ScrubReport:
    """Check every record of the store at ``path`` (in this process: see the module doc)."""
    report = ScrubReport()
    try:
        env = _open_readonly(path)
    except lmdb.Error as exc:
        report.structural = f"cannot open the environment: {exc}"
        return report
    try:
        with env.begin(buffers=False) as txn:
            records = {name: _read_db(env, txn, name, report) for name in _DBS}
    except lmdb.Error as exc:
        report.structural = f"LMDB cannot read it: {exc}"
        return report
    except _Unreachable as exc:
        report.structural = str(exc)
        return report
    finally:
        env.close()
    if b"format" not in records["info"]:
        report.structural = "the format record is missing or damaged"
        return report
    stored = records["info"][b"format"]
    if stored != pack_u32(FORMAT_VERSION):
        if unpack_u32(stored) in MIGRATED_FORMATS:
            report.outdated_format = unpack_u32(stored)
        else:
            report.structural = f"store format {stored.hex()}, this build reads {FORMAT_VERSION}"
        return report
    decoded = _check_envelopes(records, report)
    _check_logs(records, decoded, report)
    report.damaged = {k: sorted(v) for k, v in report.damaged.items() if v}
    return report


def _read_db(
    env: lmdb.Environment, txn: lmdb.Transaction, name: str, report: ScrubReport
) -> dict[bytes, bytes]:
    """Every intact (key, value) of one database; damaged keys go into the report."""
    out: dict[bytes, bytes] = {}
    try:
        db = env.open_db(name.encode(), txn=txn, create=False)
    except lmdb.NotFoundError:
        # A store creates every database when it first opens: one that is gone was lost with
        # the main tree's record of it.
        raise _Unreachable(f"database {name} is missing") from None
    for raw_key, raw_value in txn.cursor(db=db):
        key, record = bytes(raw_key), bytes(raw_value)
        report.records += 1
        # What iteration finds, a lookup must find too: a damaged branch page can misroute
        # lookups (and so the node's reads) while a cursor still walks every leaf.
        found = txn.get(key, db=db)
        if found is None or bytes(found) != record:
            raise _Unreachable(f"{name}: record {key.hex()[:24]} is listed but cannot be looked up")
        value = _intact(key, record)
        if value is None:
            report.damaged.setdefault(name, []).append(key.hex())
        else:
            out[key] = value
    return out


class _Unreachable(Exception):
    """The database's tree does not lead lookups to its own records: structural damage."""


def _check_envelopes(
    records: dict[str, dict[bytes, bytes]], report: ScrubReport
) -> dict[bytes, Envelope]:
    """Decode and verify the envelope in every log entry and side record; the damaged ones are
    reported and dropped. Returns the intact ones by id; log entries keep only their id."""
    decoded: dict[bytes, Envelope] = {}
    for name in ("logs", "side"):
        table, on_log = records[name], name == "logs"
        for key in sorted(table):
            value = table[key]
            env_id, raw = (value[:HASH_BYTES], value[HASH_BYTES:]) if on_log else (key, value)
            try:
                env = decode_envelope(raw)
                verify_envelope(env)
                good = env.id == env_id  # the hash of its bytes, from the decode
                if on_log:
                    good = good and len(key) == _LOG_KEY and key == _log_of(env) + pack_u64(env.seq)
            except Rejected:
                good = False
            if not good:
                report.damaged.setdefault(name, []).append(key.hex())
                del table[key]
                continue
            decoded[env_id] = env
            if on_log:
                table[key] = env_id
    return decoded


def _check_logs(
    records: dict[str, dict[bytes, bytes]], decoded: dict[bytes, Envelope], report: ScrubReport
) -> None:
    """Cut each log at its first seq whose entry is damaged or missing; then, until nothing
    changes, at the first envelope that names a dropped one among its deps (its causal past must
    be held). Side envelopes whose past was dropped go too. Heads must match what stays."""
    logs, heads = records["logs"], records["heads"]
    damaged_logs = {bytes.fromhex(k)[:_HEAD_KEY] for k in report.damaged.get("logs", [])}
    by_log: dict[bytes, list[tuple[int, bytes]]] = {}
    for key, env_id in logs.items():
        by_log.setdefault(key[:_HEAD_KEY], []).append((unpack_u64(key[_HEAD_KEY:]), env_id))
    entries = {log: sorted(by_log.get(log, [])) for log in set(by_log) | damaged_logs | set(heads)}
    keep = _kept_prefixes(entries, decoded)
    held = {env_id for log, listed in entries.items() for seq, env_id in listed if seq <= keep[log]}
    for key in sorted(records["side"]):
        env = decoded[key]
        if any(d not in held for d in (*env.deps, env.prev) if d != bytes(HASH_BYTES)):
            report.damaged.setdefault("side", []).append(key.hex())
    for log in sorted(entries):
        listed, kept = entries[log], keep[log]
        head = heads.get(log)
        head_ok = (
            head is not None
            and len(head) == 8 + HASH_BYTES
            and unpack_u64(head[:8]) == kept
            and (kept == 0 or head[8:] == dict(listed)[kept])
        )
        last = listed[-1][0] if listed else 0
        if kept < last or log in damaged_logs or not head_ok:
            label = f"{log[:HASH_BYTES].hex()}@{unpack_u32(log[HASH_BYTES:])}"
            report.cut[label] = kept + 1


def _kept_prefixes(
    entries: dict[bytes, list[tuple[int, bytes]]], decoded: dict[bytes, Envelope]
) -> dict[bytes, int]:
    """Per log, how many of its first seqs stay: an intact chain, each envelope's deps held."""
    keep: dict[bytes, int] = {}
    for log, listed in entries.items():
        kept = 0
        for seq, env_id in listed:
            env = decoded.get(env_id)
            if seq != kept + 1 or env is None or (_log_of(env), env.seq) != (log, seq):
                break
            kept = seq
        keep[log] = kept
    changed = True
    while changed:  # a dropped envelope drops what names it, transitively
        held = {env_id for log, listed in entries.items() for seq, env_id in listed
                if seq <= keep[log]}  # fmt: skip
        changed = False
        for log in sorted(entries):
            for seq, env_id in entries[log][: keep[log]]:
                if any(dep not in held for dep in decoded[env_id].deps):
                    keep[log] = seq - 1
                    changed = True
                    break
    return keep


def _log_of(env: Envelope) -> bytes:
    return env.author + pack_u32(env.epoch)


def scrub_in_child(path: Path, *, timeout_s: float = SCRUB_TIMEOUT_S) -> ScrubReport:
    """:func:`scan` in a child process: a crash or a hang there is structural damage, here."""
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter running this module
            [sys.executable, "-m", "memmesh.store.scrub", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ScrubReport(structural=f"the scrub did not finish within {timeout_s:.0f} s")
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"status {done.returncode}"
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        return ScrubReport(structural=f"the scrub process died ({how}): {tail[0][:200]}")
    try:
        return ScrubReport.from_json(json.loads(done.stdout))
    except (ValueError, KeyError, TypeError) as exc:
        return ScrubReport(structural=f"the scrub's report is unreadable: {exc}")


def repair(store_dir: Path, report: ScrubReport, quarantine_dir: Path) -> Path | None:
    """Quarantine what ``report`` found (module doc); the quarantine file or folder, or None
    when there was nothing to do. The store must not be open anywhere."""
    if report.clean:
        return None
    quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    number = 1 + sum(1 for _ in quarantine_dir.iterdir())
    if report.structural is not None:
        return quarantine_store(store_dir, quarantine_dir, report.structural)
    target = quarantine_dir / f"scrub-{number}.jsonl"
    env = lmdb.open(str(store_dir), subdir=True, max_dbs=len(_DBS), metasync=True, sync=True)
    try:
        with env.begin(write=True) as txn, target.open("w") as out:
            dbs = {name: env.open_db(name.encode(), txn=txn) for name in _DBS}
            doomed = [
                (name, bytes.fromhex(k)) for name, keys in report.damaged.items() for k in keys
            ]
            if "checkpoints" in report.damaged:  # any may be stale now: rebuild from the log
                doomed += [("checkpoints", bytes(k)) for k, _ in txn.cursor(db=dbs["checkpoints"])]
            cuts, heads = _plan_cuts(txn, dbs, report.cut)
            doomed += cuts
            for name, key in doomed:
                value = txn.get(key, db=dbs[name])
                if value is None:
                    continue
                row = {"db": name, "key": key.hex(), "value": bytes(value).hex()}
                out.write(json.dumps(row) + "\n")
                txn.delete(key, db=dbs[name])
            for log, head in heads.items():
                old = txn.get(log, db=dbs["heads"])
                if old is not None:
                    out.write(
                        json.dumps({"db": "heads", "key": log.hex(), "value": bytes(old).hex()})
                    )
                    out.write("\n")
                    txn.delete(log, db=dbs["heads"])
                if head is not None:  # the last entry kept (the scan found it intact)
                    txn.put(log, pack_u32(crc32(log, head)) + head, db=dbs["heads"])
            out.flush()
            os.fsync(out.fileno())
    finally:
        env.close()
    return target


def _plan_cuts(
    txn: lmdb.Transaction, dbs: dict[str, Any], cut: dict[str, int]
) -> tuple[list[tuple[str, bytes]], dict[bytes, bytes | None]]:
    """For each cut log: the log entries from its first dropped seq on and their envelopes,
    and its new head (the last entry kept, or None when nothing is)."""
    doomed: list[tuple[str, bytes]] = []
    heads: dict[bytes, bytes | None] = {}
    for label, first in sorted(cut.items()):
        author_hex, epoch = label.split("@")
        log = bytes.fromhex(author_hex) + pack_u32(int(epoch))
        cursor = txn.cursor(db=dbs["logs"])
        if cursor.set_range(log + pack_u64(first)):
            for raw_key in cursor.iternext(keys=True, values=False):
                key = bytes(raw_key)
                if not key.startswith(log):
                    break
                doomed.append(("logs", key))
        kept = txn.get(log + pack_u64(first - 1), db=dbs["logs"]) if first > 1 else None
        kept_entry = None if kept is None else _intact(log + pack_u64(first - 1), bytes(kept))
        heads[log] = None if kept_entry is None else pack_u64(first - 1) + kept_entry[:HASH_BYTES]
    return doomed, heads


def quarantine_store(store_dir: Path, quarantine_dir: Path, why: str) -> Path:
    """Move the whole store aside (with a ``REASON`` file); the node starts empty and fetches
    everything again from its peers."""
    quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    moved = quarantine_dir / f"store-{1 + sum(1 for _ in quarantine_dir.iterdir())}"
    shutil.move(str(store_dir), str(moved))
    (moved / "REASON").write_text(why + "\n")
    return moved


def scrub_before_open(store_dir: Path, quarantine_dir: Path) -> tuple[ScrubReport, Path | None]:
    """What a node runs before it opens its store: under the store's lock (so no other process
    is using it), scrub in a child process and repair. A store that does not exist yet is
    clean."""
    if not (store_dir / "data.mdb").exists():
        return ScrubReport(), None
    report = _scrub_and_repair(store_dir, quarantine_dir)
    if report[0].outdated_format is None:
        return report
    # An older format: migrated by opening it (an LmdbStore takes the lock itself), then
    # scanned again in the layout this build knows.
    failed = _migrate(store_dir)
    if failed is not None:
        assert failed.structural is not None
        return failed, quarantine_store(store_dir, quarantine_dir, failed.structural)
    return _scrub_and_repair(store_dir, quarantine_dir)


def _scrub_and_repair(store_dir: Path, quarantine_dir: Path) -> tuple[ScrubReport, Path | None]:
    fd = _acquire_lock(store_dir / "LOCK")
    try:
        report = scrub_in_child(store_dir)
        if report.outdated_format is not None:
            return report, None
        try:
            return report, repair(store_dir, report, quarantine_dir)
        except lmdb.Error as exc:
            # The scan read every record, but deleting one walks LMDB's pages again (an
            # overflow chain's header, say) and met damage there: nothing was deleted (the
            # transaction aborted), and the store cannot be trusted as a whole.
            report.structural = f"the repair failed: {exc}"
    finally:
        os.close(fd)
    return report, quarantine_store(store_dir, quarantine_dir, report.structural)


def _migrate(store_dir: Path) -> ScrubReport | None:
    """Bring a store of an older format to this one (opening it does; see
    :mod:`memmesh.store.lmdb`) so the scan reads the layout it knows. A store whose migration
    fails (a damaged record in it) is reported as structural damage: it is moved aside whole."""
    try:
        LmdbStore(store_dir).close()
    except DataDirLocked:
        raise
    except StorageError as exc:
        return ScrubReport(structural=f"the store could not be migrated to format "
                           f"{FORMAT_VERSION}: {exc}")  # fmt: skip
    except lmdb.Error as exc:
        return ScrubReport(structural=f"the store could not be opened to migrate it: {exc}")
    return None


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m memmesh.store.scrub STORE_DIR\n")
        return 2
    report = scan(Path(sys.argv[1]))
    sys.stdout.write(json.dumps(report.to_json()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
