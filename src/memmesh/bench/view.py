"""``memmesh bench view``: the memory view at scale, and how soon a conflict shows on two nodes.

- ``put_per_s``: claims written through the node's whole local path, in process: each claim
  built and signed with the agent key, checked by the view (``check_new``), committed durably
  in LMDB under group commit (``claims_per_commit`` per envelope and commit), integrated into
  pycrdt and applied to the view. ``claims`` claims, over 100 namespaces, one key each.
- ``gc_pause_ms_max``: the longest garbage collection during those puts, run as a node runs
  them (the heap frozen at start, then every ``gc_freeze_every_claims`` claims:
  :class:`memmesh.runtime.heap.HeapKeeper`), with ``gc_full_collections`` and ``gc_freezes``;
  the baseline, measured in the same run: the same puts into a fresh store with only the
  start-up freeze (``gc_pause_ms_max_start_freeze_only``, ``put_per_s_start_freeze_only``), and
  ``gc_pause_vs_start_freeze_only``, the first pause over the second. A full collection walks
  every object not frozen (about eleven per claim held), and holds a node's event loop for as
  long.
- ``get_p50_us``, ``get_p99_us``: one subject read as the API serves it (the view's lookup, the
  shown claim described as JSON, the read's receipt id), random keys, ``get_samples`` reads.
- ``search_p50_ms``: a search under the ``bench`` prefix for one value by equality, which scans
  until it finds it (half the subjects on average), ``search_samples`` searches.
- ``rss_mb``: resident memory of a process that opens the store written above as a node does at
  start (``Admission.open``) and builds the view; ``rss_vs_doc``: that over the resident memory
  of a process holding only a bare pycrdt document with the same items (the same keys and the
  same claim bytes as values), both measured here in fresh interpreters after a full GC
  (goal <= 2.0). ``rss_anon_mb`` and ``rss_file_mb`` split ``rss_mb``: shared libraries and
  LMDB's pages, mapped from the store file, are file-backed (``Admission.open`` unmaps the
  store's pages it read once it holds their envelopes).
- ``conflict_visible_p50_ms``: two real node processes on loopback, connected; in each round
  both are asked at once to write a fresh key; from the later of the two acknowledgements until
  both list the conflict (``GET /v1/conflicts``, polled every millisecond). Rounds where one
  write saw the other (no conflict) are counted in ``rounds_not_concurrent``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pycrdt

from ..admission import Admission
from ..memory import Receipt, View, describe, frontier_hash
from ..memory.search import parse_filter, search
from ..store import LmdbStore
from ..testing import MeshFixture
from ..ydecode import ROOT_NAME, client_id, item_key

if TYPE_CHECKING:
    from ..runtime.heap import HeapKeeper

__all__ = ["run_view_bench"]

CLAIMS_PER_COMMIT = 256
NAMESPACES = 100
GOAL_RSS_VS_DOC = 2.0
FREEZE_EVERY_CLAIMS = 5_000
"""The node's default ``gc_freeze_every_claims``."""


def run_view_bench(
    *,
    claims: int = 100_000,
    get_samples: int = 2000,
    search_samples: int = 50,
    conflict_rounds: int = 30,
    directory: Path | None = None,
) -> dict[str, Any]:
    if claims < 1:
        raise ValueError("claims must be >= 1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memmesh-bench-view-", dir=directory) as tmp:
        root = Path(tmp)
        base_rate, base_view, base_heap = _puts(root / "baseline", claims, freeze_every=0)
        base_view.admission.store.close()
        del base_view
        gc.collect()
        put_rate, view, heap = _puts(root / "store", claims, freeze_every=FREEZE_EVERY_CLAIMS)
        rng = random.Random(7)
        gets = _gets(view, claims, get_samples, rng)
        searches = _searches(view, claims, search_samples, rng)
        items_file = root / "items.jsonl"
        _dump_items(view, items_file)
        view.admission.store.close()
        del view
        gc.collect()
        rss_doc = _child_rss("doc", items_file)
        rss_node = _child_rss("node", root / "store")
        conflict = asyncio.run(_conflict_rounds(root / "swarm", conflict_rounds))
    return {
        "benchmark": "view",
        "claims": claims,
        "claims_per_commit": CLAIMS_PER_COMMIT,
        "put_per_s": round(put_rate, 1),
        "gc_pause_ms_max": round(heap.pause_s_max * 1e3, 3),
        "gc_full_collections": heap.pauses[2].count,
        "gc_freezes": heap.freezes,
        "gc_freeze_every_claims": FREEZE_EVERY_CLAIMS,
        "put_per_s_start_freeze_only": round(base_rate, 1),
        "gc_pause_ms_max_start_freeze_only": round(base_heap.pause_s_max * 1e3, 3),
        "gc_full_collections_start_freeze_only": base_heap.pauses[2].count,
        "gc_pause_vs_start_freeze_only": round(heap.pause_s_max / base_heap.pause_s_max, 3)
        if base_heap.pause_s_max
        else None,
        "get_p50_us": round(statistics.median(gets) * 1e6, 1),
        "get_p99_us": round(_percentile(gets, 0.99) * 1e6, 1),
        "search_p50_ms": round(statistics.median(searches) * 1e3, 3),
        "rss_mb": round(rss_node["rss"] / 2**20, 1),
        "rss_anon_mb": round(rss_node.get("anon", 0) / 2**20, 1),
        "rss_file_mb": round(rss_node.get("file", 0) / 2**20, 1),
        "doc_rss_mb": round(rss_doc["rss"] / 2**20, 1),
        "rss_vs_doc": round(rss_node["rss"] / rss_doc["rss"], 3),
        "goal_rss_vs_doc": GOAL_RSS_VS_DOC,
        **conflict,
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _puts(path: Path, count: int, *, freeze_every: int) -> tuple[float, View, HeapKeeper]:
    """The puts, with the garbage collector handled as a node handles it: the heap frozen
    once the store is open, then every ``freeze_every`` claims (0: never again); every
    collection observed. The process's heap is unfrozen again at the end."""
    # Imported here, as the conflict rounds import the runtime: ``memmesh.runtime`` brings
    # aiohttp and the whole node, which the RSS children (this module run as a script) must
    # not carry, or both measured processes would grow by them.
    from ..runtime.heap import HeapKeeper, freeze_heap  # noqa: PLC0415

    mesh = MeshFixture("bench-view", nodes=1, writers=1)
    writer, node = mesh.writers[0], mesh.nodes[0]
    store = LmdbStore(path)
    admission = Admission(store, mesh.genesis)
    view = View(admission)
    freeze_heap()
    heap = HeapKeeper(freeze_every_claims=freeze_every, inbound_max=0)
    heap.install(0)
    try:
        start = time.perf_counter()
        for first in range(0, count, CLAIMS_PER_COMMIT):
            batch = []
            for i in range(first, min(count, first + CLAIMS_PER_COMMIT)):
                value = {"n": i, "tier": ("gold", "silver", "bronze")[i % 3]}
                namespace = ("bench", f"g{i % NAMESPACES}")
                claim = mesh.claim(writer, f"k{i}", value, namespace=namespace)
                refusal = view.check_new(claim)
                assert refusal is None, refusal
                batch.append(claim)
            env = admission.write_local(node, batch, hlc=first + 1)
            view.apply([env.id], 0)
            heap.settle(view.counts.entries, inbound=0)
        elapsed = time.perf_counter() - start
    finally:
        heap.uninstall()
        gc.unfreeze()
    return count / elapsed, view, heap


def _gets(view: View, count: int, samples: int, rng: random.Random) -> list[float]:
    reader = b"\x01" * 32
    frontier = frontier_hash(view.admission.frontier())
    out = []
    for _ in range(samples):
        i = rng.randrange(count)
        start = time.perf_counter()
        subject = view.get(("bench", f"g{i % NAMESPACES}"), f"k{i}")
        assert subject is not None
        entry = subject.value_entry()
        assert entry is not None
        json.dumps(describe(entry))
        Receipt.of(frontier, subject.live, reader).id  # noqa: B018 - the receipt is the cost
        out.append(time.perf_counter() - start)
    return out


def _searches(view: View, count: int, samples: int, rng: random.Random) -> list[float]:
    out = []
    for _ in range(samples):
        wanted = rng.randrange(count)
        conditions = parse_filter({"n": wanted})
        start = time.perf_counter()
        found = list(search(view, ("bench",), conditions, limit=10))
        out.append(time.perf_counter() - start)
        assert [key for (_, key), _ in found] == [f"k{wanted}"]
    return out


def _dump_items(view: View, path: Path) -> None:
    """The document's items as the bare-document child rebuilds them: key and claim bytes."""
    with path.open("w") as out:
        for record in view.admission.records.values():
            env = record.envelope
            client = client_id(env.author, env.epoch)
            for claim in record.claims:
                out.write(json.dumps([item_key(client, claim.id), claim.raw.hex()]) + "\n")


def _child_rss(kind: str, path: Path) -> dict[str, int]:
    done = subprocess.run(  # noqa: S603 - this interpreter running this module
        [sys.executable, "-m", "memmesh.bench.view", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    parsed: dict[str, int] = json.loads(done.stdout)
    return parsed


def _rss_bytes() -> dict[str, int]:
    """VmRSS, and its anonymous and file-backed parts (LMDB's mapped pages are file-backed)."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in wanted:
            out[wanted[name]] = int(line.split()[1]) * 1024
    if "rss" not in out:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return out


def _doc_child(items: Path) -> dict[str, int]:
    doc: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc()
    root = doc.get(ROOT_NAME, type=pycrdt.Map)
    with items.open() as lines:
        batch: list[tuple[str, bytes]] = []
        for line in lines:
            key, raw = json.loads(line)
            batch.append((key, bytes.fromhex(raw)))
            if len(batch) == 1024:
                with doc.transaction():
                    for k, v in batch:
                        root[k] = v
                batch.clear()
        with doc.transaction():
            for k, v in batch:
                root[k] = v
    gc.collect()
    return _rss_bytes()


def _node_child(store_path: Path) -> dict[str, int]:
    mesh = MeshFixture("bench-view", nodes=1, writers=1)
    store = LmdbStore(store_path)
    admission = Admission.open(store, mesh.genesis)
    view = View.build(admission)
    gc.collect()
    rss = _rss_bytes()
    assert view.subjects
    return rss


async def _conflict_rounds(directory: Path, rounds: int) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    from ..runtime.swarm import swarm_down, swarm_up  # noqa: PLC0415

    nodes = swarm_up(2, directory)["nodes"]
    try:
        apis = [n["api"] for n in nodes]
        async with aiohttp.ClientSession() as session:
            await _wait_peered(session, apis)
            visible: list[float] = []
            not_concurrent = 0
            for i in range(rounds):
                took = await _one_conflict(session, apis, f"c{i}")
                if took is None:
                    not_concurrent += 1
                else:
                    visible.append(took)
    finally:
        swarm_down(directory, grace_s=5)
    return {
        "conflict_visible_p50_ms": round(statistics.median(visible) * 1e3, 3) if visible else None,
        "conflict_visible_p99_ms": round(_percentile(visible, 0.99) * 1e3, 3) if visible else None,
        "conflict_rounds": rounds,
        "rounds_not_concurrent": not_concurrent,
    }


async def _wait_peered(session: Any, apis: list[str]) -> None:
    for _ in range(600):
        states = [await (await session.get(api + "/v1/state")).json() for api in apis]
        if all(s["active_peers"] >= 1 for s in states):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the two bench nodes did not connect")


async def _one_conflict(session: Any, apis: list[str], key: str) -> float | None:
    async def put(api: str, value: int) -> float:
        body = {"namespace": "bench.conflicts", "key": key, "value": value}
        async with session.put(api + "/v1/store/items", json=body) as response:
            assert response.status == 201, await response.text()
        return time.perf_counter()

    acks = await asyncio.gather(put(apis[0], 1), put(apis[1], 2))
    second = max(acks)
    deadline = second + 2.0
    seen = [False, False]
    while time.perf_counter() < deadline:
        for index, api in enumerate(apis):
            if not seen[index]:
                async with session.get(api + "/v1/conflicts") as response:
                    listed = (await response.json())["conflicts"]
                seen[index] = any(c["key"] == key for c in listed)
        if all(seen):
            return time.perf_counter() - second
        await asyncio.sleep(0.001)
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(_doc_child(where) if what == "doc" else _node_child(where)))
