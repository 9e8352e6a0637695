"""The collector's pace: raised inside blocks, restored after the last one, even across threads."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from memmesh.attest import verify as verify_module
from memmesh.collector import THRESHOLDS, fewer_collections
from memmesh.runtime import node as node_module
from memmesh.store import LmdbStore


def test_a_block_raises_the_thresholds_and_restores_them() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before


def test_nested_blocks_restore_after_the_outer_one_and_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        with fewer_collections():
            assert gc.get_threshold() == THRESHOLDS
        assert gc.get_threshold() == THRESHOLDS  # the outer block is still open
        raise RuntimeError("the work failed")
    assert gc.get_threshold() == before


def test_overlapping_blocks_in_threads_restore_the_thresholds_from_before_the_first() -> None:
    """Thread A opens, B opens, A closes, B closes: the thresholds stay raised until B closes,
    then go back to what they were before A (not to A's raised ones)."""
    before = gc.get_threshold()
    a_open, b_open, a_closed = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int, int]] = {}

    def a() -> None:
        with fewer_collections():
            a_open.set()
            b_open.wait(5)
        a_closed.set()

    def b() -> None:
        a_open.wait(5)
        with fewer_collections():
            b_open.set()
            a_closed.wait(5)
            seen["after a closed"] = gc.get_threshold()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["after a closed"] == THRESHOLDS
    assert gc.get_threshold() == before


def test_verification_runs_with_fewer_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(verify_module, "_verify", lambda *_: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    verify_module.verify_attestation(b"{}", bundle=None, pubkey=None)
    assert seen == [THRESHOLDS]
    assert gc.get_threshold() == before


def test_a_node_replays_its_store_with_fewer_collections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``NodeRuntime._open`` builds the core (which replays the store) inside the block, and
    closes the store if that fails."""
    seen: list[tuple[int, int, int]] = []

    def core(*_args: object, **_kwargs: object) -> None:
        seen.append(gc.get_threshold())
        raise RuntimeError("stop after the replay")

    monkeypatch.setattr(node_module, "MeshCore", core)
    runtime = SimpleNamespace(
        node_key=None, genesis=None, commit_seconds=SimpleNamespace(observe=lambda _s: None)
    )
    settings = SimpleNamespace(
        data_dir=str(tmp_path),
        lmdb_map_size_bytes_max=1 << 30,
        sync_limits=lambda: None,
        admission_limits=lambda: None,
        start_isolated=False,
    )
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="stop after the replay"):
        node_module.NodeRuntime._open(runtime, settings, [])  # type: ignore[arg-type]
    assert seen == [THRESHOLDS]
    assert gc.get_threshold() == before
    with LmdbStore(tmp_path / "store"):  # the store was closed: its lock is free again
        pass
