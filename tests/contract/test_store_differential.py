"""LMDB against the in-memory reference: any sequence of batches, the same outcome.

Batches mix honest appends, replays, forks (a different envelope for a taken seq), gaps and
metadata, over a few logs. After each batch both stores must agree on whether it was refused and
on every head; at the end, after reopening LMDB, on every log entry and envelope byte.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from memmesh.envelope import Envelope
from memmesh.errors import LogConflict
from memmesh.store import LmdbStore, MemoryStore, WriteBatch
from memmesh.testing import LogWriter, fixed_mesh_id, scaled, seeded_key

MESH = fixed_mesh_id()
AUTHORS = ["a", "b"]
EPOCHS = [1, 2]
SEQS_MAX = 6


def _universe() -> dict[tuple[str, int, int, int], Envelope]:
    """Two branches (0 honest, 1 forked at every seq) of every log, built once."""
    out: dict[tuple[str, int, int, int], Envelope] = {}
    for author in AUTHORS:
        for epoch in EPOCHS:
            for branch in (0, 1):
                writer = LogWriter(seeded_key(author), MESH, epoch=epoch)
                for seq in range(1, SEQS_MAX + 1):
                    out[(author, epoch, branch, seq)] = writer.next(f"{branch}/{seq}".encode())
    return out


UNIVERSE = _universe()
KEYS = sorted(UNIVERSE)

# A run of consecutive seqs of one branch: the shape honest appends (and replays) have.
runs = st.builds(
    lambda author, epoch, branch, start, length: [
        (author, epoch, branch, seq) for seq in range(start, min(start + length, SEQS_MAX + 1))
    ],
    st.sampled_from(AUTHORS),
    st.sampled_from(EPOCHS),
    st.sampled_from([0, 0, 0, 1]),
    st.integers(1, SEQS_MAX),
    st.integers(1, 4),
)
batch_keys = st.lists(st.one_of(runs, st.lists(st.sampled_from(KEYS), max_size=2)), max_size=3).map(
    lambda parts: [key for part in parts for key in part]
)
batches = st.lists(
    st.tuples(
        batch_keys,
        st.dictionaries(st.sampled_from(["x", "y"]), st.binary(max_size=4), max_size=2),
    ),
    max_size=8,
)


@settings(max_examples=scaled(150))
@given(batches)
def test_lmdb_matches_the_reference(
    plan: list[tuple[list[tuple[str, int, int, int]], dict[str, bytes]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reference = MemoryStore()
        lmdb_store = LmdbStore(Path(tmp) / "s", map_size_bytes=1 << 20)
        try:
            for keys, meta in plan:
                batch = WriteBatch(envelopes=[UNIVERSE[k] for k in keys], meta=meta)
                outcomes = []
                for store in (reference, lmdb_store):
                    try:
                        store.commit(batch)
                        outcomes.append("ok")
                    except LogConflict:
                        outcomes.append("refused")
                assert outcomes[0] == outcomes[1], keys
                event(f"batch {outcomes[0]}")
                assert reference.heads() == lmdb_store.heads()
            event(f"longest log {max((h.seq for _, h in reference.heads()), default=0)}")
        finally:
            lmdb_store.close()
        reopened = LmdbStore(Path(tmp) / "s", map_size_bytes=1 << 20)
        try:
            assert reopened.heads() == reference.heads()
            for log, _ in reference.heads():
                entries = list(reference.iter_log(log))
                assert list(reopened.iter_log(log)) == entries
                assert list(reopened.iter_log_envelopes(log)) == list(
                    reference.iter_log_envelopes(log)
                )
            for name in ("x", "y"):
                assert reopened.get_meta(name) == reference.get_meta(name)
        finally:
            reopened.close()
