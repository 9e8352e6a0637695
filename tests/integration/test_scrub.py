"""The integrity scrub on real LMDB files damaged at rest.

Store level: one byte of one envelope flipped is found and its log cut back there (the store
keeps envelopes in their log entries, so the entry is what is damaged); random bit
flips anywhere in ``data.mdb``: every record whose bytes changed is reported, the repaired store
opens, and every envelope left verifies. Node level: a stopped node's ``data.mdb`` gets a random
bit flip, the node process starts anyway, quarantines the damage, fetches what it lost from its
peer, and its peer never sees a damaged envelope ("make soak" runs 200 of these trials).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import lmdb

from memmesh.admission import Admission
from memmesh.envelope import open_envelope
from memmesh.runtime.swarm import swarm_down, swarm_up
from memmesh.store import LmdbStore, WriteBatch
from memmesh.store.scrub import repair, scan, scrub_before_open, scrub_in_child
from memmesh.testing import LogWriter, MeshFixture, fixed_mesh_id, scaled, seeded_key
from memmesh.wire import pack_u32, pack_u64

from .test_lmdb_store import _write_format_1
from .test_memory_api import call, wait_until

_DBS = ("logs", "heads", "side", "checkpoints", "evidence", "meta", "info")


def _build(path: Path, mesh: MeshFixture) -> Admission:
    store = LmdbStore(path)
    admission = Admission(store, mesh.genesis)
    for i in range(40):
        node = mesh.nodes[i % 2]
        admission.write_local(node, [mesh.claim(mesh.writers[i % 2], f"k{i}", i)], hlc=i + 1)
        if i == 20:
            admission.checkpoint()
    store.close()
    return admission


def _records(path: Path) -> dict[tuple[str, bytes], bytes] | None:
    """Every raw (database, key) -> record, or None if LMDB cannot read the file."""
    out: dict[tuple[str, bytes], bytes] = {}
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=len(_DBS))
        try:
            with env.begin(buffers=False) as txn:
                for name in _DBS:
                    db = env.open_db(name.encode(), txn=txn, create=False)
                    for key, value in txn.cursor(db=db):
                        out[(name, bytes(key))] = bytes(value)
        finally:
            env.close()
    except lmdb.Error:
        return None
    return out


def _reopen_and_check(path: Path, mesh: MeshFixture) -> int:
    """The repaired store opens as a node would; every envelope in it verifies. Its size."""
    with LmdbStore(path) as store:
        admission = Admission.open(store, mesh.genesis)
        for record in admission.records.values():
            env = record.envelope
            raw = (
                store.get_side_envelope(env.id)
                if record.side
                else store.get_log_envelope(env.log, env.seq)
            )
            assert raw is not None
            open_envelope(raw, mesh_id=mesh.mesh_id)
        return len(admission.records)


def test_a_flipped_envelope_byte_is_found_and_its_log_cut_there(tmp_path: Path) -> None:
    mesh = MeshFixture("scrub", nodes=2, writers=2)
    path = tmp_path / "store"
    admission = _build(path, mesh)
    victim_log = sorted(admission.logs)[0]
    victim = admission.records[admission.logs[victim_log][9]].envelope  # seq 10
    with LmdbStore(path) as store:
        victim_raw = store.get_log_envelope(victim_log, 10)
    assert victim_raw is not None
    data = bytearray((path / "data.mdb").read_bytes())
    # Every copy: a log's leaf page is copied at each commit that appends to it, so stale
    # copies of the entry sit in free pages beside the live one.
    at = data.find(victim_raw)
    assert at > 0
    while at > 0:
        data[at + len(victim_raw) // 2] ^= 0x10
        at = data.find(victim_raw, at + 1)
    (path / "data.mdb").write_bytes(bytes(data))

    report = scrub_in_child(path)
    entry_key = victim_log.author + pack_u32(victim_log.epoch) + pack_u64(victim.seq)
    assert report.damaged == {"logs": [entry_key.hex()]}
    label = f"{victim_log.author.hex()}@{victim_log.epoch}"
    assert report.cut[label] == 10
    # The two nodes wrote in turn, each envelope naming the other's latest as a dep: what came
    # after the damage in the other log lost its causal past, so it is cut too.
    assert len(report.cut) == 2
    quarantined = repair(path, report, tmp_path / "quarantine")
    assert quarantined is not None
    rows = [json.loads(line) for line in quarantined.read_text().splitlines()]
    assert {r["db"] for r in rows} == {"logs", "heads"}
    assert scan(path).clean
    with LmdbStore(path) as store:
        kept = Admission.open(store, mesh.genesis)
        assert len(kept.logs[victim_log]) == 9  # seqs 10..20 go; sync fetches them again
        other = next(log for log in kept.logs if log != victim_log)
        other_label = f"{other.author.hex()}@{other.epoch}"
        assert len(kept.logs[other]) == report.cut[other_label] - 1 < 20


def test_random_bit_flips_are_all_found_and_the_store_opens_after_repair(tmp_path: Path) -> None:
    mesh = MeshFixture("scrub", nodes=2, writers=2)
    pristine = tmp_path / "pristine"
    _build(pristine, mesh)
    before = _records(pristine)
    assert before is not None
    size = (pristine / "data.mdb").stat().st_size
    rng = random.Random(int(os.environ.get("MEMMESH_SCRUB_SEED", "7")))
    structural = found = 0
    for trial in range(scaled(20)):
        path = tmp_path / f"t{trial}"
        shutil.copytree(pristine, path)
        with (path / "data.mdb").open("r+b") as f:
            offset = rng.randrange(size)
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
        report = scrub_in_child(path)
        after = _records(path)
        if report.structural is not None:
            structural += 1
        else:
            assert after is not None, f"trial {trial}: LMDB fails but the scrub did not say so"
            changed = {(db, key.hex()) for (db, key), value in after.items()
                       if before.get((db, key)) != value}  # fmt: skip
            reported = {(db, key) for db, keys in report.damaged.items() for key in keys}
            assert changed <= reported, f"trial {trial} (offset {offset}): missed {changed}"
            found += bool(changed)
        repair(path, report, tmp_path / f"q{trial}")
        _reopen_and_check(path, mesh)  # a structural repair leaves an empty store
        shutil.rmtree(path)
    assert found + structural > 0  # some flips hit records, not only free space


def test_a_database_missing_from_the_main_tree_is_structural_damage(tmp_path: Path) -> None:
    """A flip in the main tree's key of a named database loses the whole database: the scrub
    must say so (structural) rather than read it as empty and report a clean store."""
    mesh = MeshFixture("scrub", nodes=2, writers=2)
    path = tmp_path / "store"
    _build(path, mesh)
    assert scan(path).clean
    env = lmdb.open(str(path), max_dbs=len(_DBS))
    try:
        with env.begin(write=True) as txn:
            txn.drop(env.open_db(b"heads", txn=txn), delete=True)
    finally:
        env.close()
    report = scrub_in_child(path)
    assert report.structural == "database heads is missing"
    assert not report.clean


def _pid_of(data_dir: Path) -> int:
    swarm = json.loads((data_dir.parent / "swarm.json").read_text())
    return int(next(n["pid"] for n in swarm["nodes"] if n["data_dir"] == str(data_dir)))


def _rejected(api: str) -> int:
    with urllib.request.urlopen(api + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("memmesh_envelopes_rejected_total")
    )


def test_a_node_with_a_damaged_store_starts_refetches_and_serves_nothing_damaged(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory)["nodes"]
    keeper, victim = nodes
    data_dir = Path(victim["data_dir"])
    rng = random.Random(11)
    try:
        for i in range(30):
            api = keeper["api"] if i % 2 else victim["api"]
            call(api, "/v1/store/items", "PUT", {"namespace": "s", "key": f"k{i}", "value": i})

        # Both wrote: wait until they agree (reading the keeper's digest once could miss the
        # victim's last writes, still on their way to it).
        def digests() -> tuple[str, str]:
            return tuple(call(n["api"], "/v1/state")["claims_digest"] for n in (keeper, victim))

        wait_until(lambda: len(set(digests())) == 1, 20, "sync")
        digest = digests()[0]
        quarantined = 0
        for trial in range(scaled(4)):
            pid = _pid_of(data_dir)
            os.kill(pid, 15)
            wait_until(lambda pid=pid: not _alive(pid), 20, "the victim stopped")
            mdb = data_dir / "store" / "data.mdb"
            if trial == 0:  # surely damaging: one bit inside a stored envelope
                with LmdbStore(data_dir / "store") as store:
                    heads = store.heads()
                    log, head = heads[rng.randrange(len(heads))]
                    raw = store.get_log_envelope(log, head.seq)
                assert raw is not None
                # Every copy: LMDB copies pages on write, so stale copies of the record can sit
                # in free pages before the live one.
                data = mdb.read_bytes()
                offsets, at = [], data.find(raw)
                while at >= 0:
                    offsets.append(at + len(raw) // 2)
                    at = data.find(raw, at + 1)
                assert offsets
            else:  # anywhere in the file: records, LMDB's own pages, or free space
                offsets = [rng.randrange(mdb.stat().st_size)]
            bit = 1 << rng.randrange(8)
            with mdb.open("r+b") as f:
                for offset in offsets:
                    f.seek(offset)
                    byte = f.read(1)[0]
                    f.seek(offset)
                    f.write(bytes([byte ^ bit]))
            _restart(directory, data_dir)
            quarantine = data_dir / "quarantine"
            found = len(list(quarantine.iterdir())) if quarantine.exists() else 0
            assert found >= 1 or trial > 0, "the damaged envelope was not quarantined"
            quarantined = found
            # Alive, and back to the keeper's state by sync.
            wait_until(lambda: call(victim["api"], "/v1/state")["claims_digest"] == digest, 30,
                       f"the victim caught up after a flip at {offsets}")  # fmt: skip
            assert _rejected(keeper["api"]) == 0  # the keeper never got a damaged envelope
        assert quarantined >= 1
    finally:
        swarm_down(directory, grace_s=10)
        for process in _RESTARTED:  # reaped here: swarm_down stopped them by pid
            process.wait(timeout=10)
        _RESTARTED.clear()


_RESTARTED: list[subprocess.Popen[bytes]] = []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _restart(directory: Path, data_dir: Path) -> None:
    """Start the node again as the swarm did, and record its new pid."""
    log = (data_dir / "node.log").open("ab")
    with log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memmesh", "node", "run", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=data_dir,
        )
    _RESTARTED.append(process)
    swarm_file = directory / "swarm.json"
    swarm: dict[str, Any] = json.loads(swarm_file.read_text())
    for node in swarm["nodes"]:
        if node["data_dir"] == str(data_dir):
            node["pid"] = process.pid
            api = node["api"]
    swarm_file.write_text(json.dumps(swarm))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(api + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert process.poll() is None, (data_dir / "node.log").read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError("the restarted node never became ready")


def test_a_format_1_store_is_migrated_then_scrubbed_before_a_node_opens_it(tmp_path: Path) -> None:
    honest = LogWriter(seeded_key("a"), fixed_mesh_id()).take(3)
    path = tmp_path / "store"
    _write_format_1(path, honest, [])
    assert scan(path).outdated_format == 1
    report, quarantined = scrub_before_open(path, tmp_path / "quarantine")
    assert report.clean and quarantined is None
    with LmdbStore(path) as store:
        assert [raw for _, raw in store.iter_log_envelopes(honest[0].log)] == [
            e.raw for e in honest
        ]


def test_a_format_1_store_that_cannot_be_migrated_is_moved_aside(tmp_path: Path) -> None:
    honest = LogWriter(seeded_key("a"), fixed_mesh_id()).take(3)
    path = tmp_path / "store"
    _write_format_1(path, honest, [])
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:  # the log names an envelope the store lacks
        txn.delete(honest[1].id, db=env.open_db(b"envelopes", txn=txn))
    env.close()
    report, quarantined = scrub_before_open(path, tmp_path / "quarantine")
    assert report.structural is not None and "could not be migrated" in report.structural
    assert quarantined is not None and (quarantined / "REASON").exists()
    assert not path.exists()  # the node starts empty and fetches everything from its peers


def test_damage_that_only_the_repair_meets_moves_the_store_aside(tmp_path: Path) -> None:
    """A checkpoint big enough for an overflow chain, with one byte of its value flipped (so the
    scan reports the record) and its first overflow page's type flag cleared (so LMDB, which
    reads the value without checking it, refuses to free the chain when the repair deletes the
    record): the node must not crash at start but move the store aside and resync."""
    path = tmp_path / "store"
    big = os.urandom(20_000)
    with LmdbStore(path) as store:
        store.commit(WriteBatch(checkpoints={1: big}))
    data = bytearray((path / "data.mdb").read_bytes())
    at = data.find(big)
    page = at - at % 4096  # the chain's first page: its header, then the record
    assert at - page < 64
    data[page + 10] ^= 0x04  # mp_flags: P_OVERFLOW cleared
    data[at + 100] ^= 0x01
    (path / "data.mdb").write_bytes(bytes(data))
    assert scan(path).damaged == {"checkpoints": ["0000000000000001"]}
    report, moved = scrub_before_open(path, tmp_path / "quarantine")
    assert report.structural is not None and "the repair failed" in report.structural
    assert moved is not None and (moved / "REASON").exists()
    assert not path.exists()
