"""One contract suite for every ``Store`` implementation (the automerge-repo pattern).

Each test gets a ``reopen`` callable: it closes the current store and opens a new one over the
same durable state (the same ``MemoryDisk``, or the same LMDB directory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memmesh.errors import LogConflict, StoreClosed
from memmesh.ids import Head, LogId
from memmesh.store import LmdbStore, MemoryDisk, MemoryStore, Store, WriteBatch
from memmesh.testing import LogWriter, fixed_mesh_id, seeded_key

MESH = fixed_mesh_id()

Reopen = Callable[[], Store]


@pytest.fixture(params=["memory", "lmdb"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Reopen]]:
    current: list[Store] = []
    if request.param == "memory":
        disk = MemoryDisk()

        def open_store() -> Store:
            return MemoryStore(disk)
    else:

        def open_store() -> Store:
            return LmdbStore(tmp_path / "store", map_size_bytes=1 << 20)

    def reopen() -> Store:
        current[-1].close()
        current.append(open_store())
        return current[-1]

    current.append(open_store())
    yield current[0], reopen
    current[-1].close()


def writer(label: str = "a", epoch: int = 1) -> LogWriter:
    return LogWriter(seeded_key(label), MESH, epoch=epoch)


def test_commit_then_read_back_after_reopen(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    envs = writer().take(3)
    store.commit(WriteBatch(envelopes=envs))
    for again in (False, True):
        s = reopen() if again else store
        log = envs[0].log
        assert s.head(log) == Head(3, envs[2].id)
        assert [seq for seq, _ in s.iter_log(log)] == [1, 2, 3]
        for env in envs:
            assert s.get_log_envelope(log, env.seq) == env.raw
            assert s.get_log_entry(log, env.seq) == env.id
            assert s.get_side_envelope(env.id) is None  # on its log, not off it
        assert list(s.iter_log_envelopes(log, 2)) == [(2, envs[1].raw), (3, envs[2].raw)]
        assert s.get_log_entry(log, 4) is None
        assert s.get_log_entry(log, 0) is None
        assert s.get_log_envelope(log, 4) is None


def test_group_commit_many_logs_in_one_batch(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    a, b, c = writer("a"), writer("b"), writer("c", epoch=2)
    batch = [a.next(), b.next(), a.next(), c.next(), b.next(), a.next()]
    store.commit(WriteBatch(envelopes=batch))
    heads = dict(store.heads())
    assert heads == {
        LogId(a.key.public_key, 1): Head(3, a.prev),
        LogId(b.key.public_key, 1): Head(2, b.prev),
        LogId(c.key.public_key, 2): Head(1, c.prev),
    }


def test_heads_sorted_by_author_then_epoch(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    envs = [writer(label, epoch).next() for label in "zyxw" for epoch in (3, 1, 2)]
    store.commit(WriteBatch(envelopes=envs))
    logs = [log for log, _ in store.heads()]
    assert logs == sorted(logs)
    assert len(logs) == 12
    assert [log.epoch for log in logs[:3]] == [1, 2, 3]


def test_recommit_of_the_same_envelopes_is_a_noop(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    envs = writer().take(2)
    store.commit(WriteBatch(envelopes=envs))
    store.commit(WriteBatch(envelopes=envs))  # replay after a crash between commit and ack
    assert store.head(envs[0].log) == Head(2, envs[1].id)


def test_a_seq_is_never_reused(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    honest = writer("a").take(2)
    store.commit(WriteBatch(envelopes=honest))
    fork = writer("a")  # same key, starts over: a different envelope for seq 1
    forged = fork.next(b"something else")
    with pytest.raises(LogConflict, match="never reused"):
        store.commit(WriteBatch(envelopes=[forged]))
    store = reopen()
    assert store.get_log_entry(forged.log, 1) == honest[0].id
    assert store.get_log_envelope(forged.log, 1) == honest[0].raw
    assert store.get_side_envelope(forged.id) is None


def test_gap_and_broken_chain_are_refused(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    w = writer()
    first, second, third = w.take(3)
    with pytest.raises(LogConflict, match="gap"):
        store.commit(WriteBatch(envelopes=[second]))
    store.commit(WriteBatch(envelopes=[first]))
    other = writer("a")
    other.prev = b"\x01" * 32  # a seq 2 that does not chain to seq 1
    other.seq = 1
    with pytest.raises(LogConflict, match="prev"):
        store.commit(WriteBatch(envelopes=[other.next()]))
    with pytest.raises(LogConflict, match="gap"):
        store.commit(WriteBatch(envelopes=[third]))
    assert store.head(first.log) == Head(1, first.id)


def test_a_refused_batch_writes_nothing(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    a, b = writer("a"), writer("b")
    good = [a.next(), a.next(), b.next()]
    bad_gap = b.next() and b.next()  # skips b's seq 2
    with pytest.raises(LogConflict):
        store.commit(
            WriteBatch(
                envelopes=[*good, bad_gap],
                meta={"k": b"v"},
                evidence={b"e": b"x"},
                checkpoints={1: b"c"},
            )
        )
    store = reopen()
    assert store.heads() == []
    assert store.get_meta("k") is None
    assert store.get_evidence(b"e") is None
    assert store.latest_checkpoint() is None
    for env in good:
        assert store.get_log_envelope(env.log, env.seq) is None


def test_iter_log_ranges(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    envs = writer().take(10)
    store.commit(WriteBatch(envelopes=envs))
    log = envs[0].log
    assert list(store.iter_log(log, 4, 6)) == [(s, envs[s - 1].id) for s in (4, 5, 6)]
    assert [s for s, _ in store.iter_log(log, 8)] == [8, 9, 10]
    assert list(store.iter_log(log, 11)) == []
    assert list(store.iter_log(LogId(log.author, 2))) == []
    assert [s for s, _ in store.iter_log(log, 0, 2)] == [1, 2]


def test_iter_log_spans_many_read_chunks(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    w = writer()
    for _ in range(5):
        store.commit(WriteBatch(envelopes=w.take(500)))
    log = LogId(w.key.public_key, 1)
    seqs = [s for s, _ in store.iter_log(log)]
    assert seqs == list(range(1, 2501))
    assert [s for s, _ in store.iter_log(log, 1020, 1030)] == list(range(1020, 1031))


def test_meta_evidence_checkpoints(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    store.commit(
        WriteBatch(
            meta={"node.epoch": b"\x01", "name": "ünïcode".encode()},
            evidence={b"\x02proof": b"B", b"\x01proof": b"A"},
            checkpoints={7: b"seven", 3: b"three"},
        )
    )
    store.commit(WriteBatch(meta={"node.epoch": b"\x02"}, checkpoints={5: b"five"}))
    store = reopen()
    assert store.get_meta("node.epoch") == b"\x02"
    assert store.get_meta("name") == "ünïcode".encode()
    assert store.get_meta("missing") is None
    assert list(store.iter_evidence()) == [(b"\x01proof", b"A"), (b"\x02proof", b"B")]
    assert store.get_evidence(b"\x03") is None
    assert store.latest_checkpoint() == (7, b"seven")
    assert store.get_checkpoint(3) == b"three"
    assert store.get_checkpoint(4) is None


def test_meta_by_prefix(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    names = ["attest/b", "attest/a", "attest", "attesz/x", "attest/é", "att", "zz"]
    store.commit(WriteBatch(meta={name: name.encode() for name in names}))
    store = reopen()
    assert list(store.iter_meta("attest/")) == [
        ("attest/a", b"attest/a"),
        ("attest/b", b"attest/b"),
        ("attest/é", "attest/é".encode()),
    ]
    assert [n for n, _ in store.iter_meta("att")] == sorted(
        [n for n in names if n.startswith("att")], key=str.encode
    )
    assert list(store.iter_meta("nothing/")) == []
    assert len(list(store.iter_meta(""))) == len(names)


def test_empty_and_bad_meta_names(opened: tuple[Store, Reopen]) -> None:
    store, _ = opened
    store.commit(WriteBatch())
    with pytest.raises(ValueError, match="metadata names"):
        store.commit(WriteBatch(meta={"": b"x"}))


def test_closed_store_refuses_use(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    fresh = reopen()
    assert fresh.heads() == []
    with pytest.raises(StoreClosed):
        store.heads()
    with pytest.raises(StoreClosed):
        store.commit(WriteBatch())
    fresh.close()
    fresh.close()  # idempotent
    with pytest.raises(StoreClosed):
        fresh.get_meta("x")


def test_side_envelopes_are_kept_by_id_off_their_log(opened: tuple[Store, Reopen]) -> None:
    store, reopen = opened
    honest = writer("a").take(2)
    fork = writer("a")
    fork.seq, fork.prev = 1, honest[0].id
    other_branch = fork.next(b"the other seq 2")
    store.commit(WriteBatch(envelopes=honest, side_envelopes=[other_branch]))
    store = reopen()
    assert store.get_side_envelope(other_branch.id) == other_branch.raw
    assert store.get_log_envelope(other_branch.log, 2) == honest[1].raw
    assert store.get_log_entry(other_branch.log, 2) == honest[1].id
    assert list(store.iter_side_envelopes()) == [other_branch.id]
