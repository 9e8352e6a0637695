"""``memmesh bench sync``: what the sync protocol costs on the wire and how fast a replica catches
up, against baselines measured in the same run, single-threaded.

Every core here is a real ``MeshCore``; the link is :class:`memmesh.testing.FakeNetwork`, which
counts every frame a core sends (``bytes_sent``: the encoded sync message, one MessagePack array,
without the transport's own framing such as a WebSocket header or length prefix). Frames are
delivered in **waves** (:func:`_drive`): every frame in flight is delivered, oldest first, then
every core that emitted ``Persist`` gets its ``Flush``; repeat until nothing is in flight or due.
A wave is one network latency, and a flush between waves is what a runtime does once the frames
that were ready have been read. (``FakeNetwork.settle`` flushes at random moments, which changes
how many envelopes share a commit; it is used only for the handshake and inside ``quiesce``.)

**Wire bytes**, for envelopes of 1 and of 64 claims (keys ``"1"`` and ``"64"``): two nodes A and
B (``MemoryStore``) connect and finish their handshake and first anti-entropy round
(``net.settle()``); then the byte and frame counters are reset. A then writes ``wire_claims``
claims, one ``LocalWrite`` of N claims and one ``Flush`` per envelope (so one envelope each), and
each envelope reaches B by eager push (``Envelopes(req=0)``), driven in waves after every write.
Then one ``net.quiesce()`` runs anti-entropy until a sweep moves nothing (one sweep here: a
``Frontier`` and a ``NothingToSend`` each way). One writer, no concurrent writers, so envelopes
carry no deps (each concurrent writer's head would add a 32-byte dep).

- ``wire_bytes_per_claim``: every byte sent in both directions, push plus that anti-entropy
  sweep, over the number of claims: the headline. ``wire_bytes_per_claim_push_only`` stops
  before the sweep (``anti_entropy_bytes`` is the sweep alone, ``wire_frames`` all frames).
- ``yjs_update_bytes_per_claim``: the baseline, the bare Yjs v1 update of the same claims made by
  pycrdt itself: per envelope, a fresh ``pycrdt.Doc`` (client id = the log's
  :func:`~memmesh.ydecode.client_id`, so the client varuint is as long as on the wire), root map
  ``ROOT_NAME``, the envelope's claims set under their ``item_key`` to their exact bytes in one
  transaction, then ``len(doc.get_update())``; summed over the envelopes, over the claims.
- ``overhead_vs_yjs`` = ``wire_bytes_per_claim`` / ``yjs_update_bytes_per_claim`` (goals
  ``goal_overhead_vs_yjs``: <= 2.0 for single-claim envelopes, <= 1.2 for 64-claim envelopes);
  ``overhead_vs_yjs_push_only`` the same without the sweep. ``envelope_bytes_per_claim``
  (signed envelopes alone, no message framing) splits the overhead between the envelope and the
  sync message. ``claim_bytes`` is the mean size of one claim (a small JSON value): the ratios
  fall as claims grow, since the per-envelope and per-item costs are fixed. (pycrdt stores a
  ``bytes`` value as Yjs ``ContentAny``, 2 bytes per item more than the ``ContentBinary`` of the
  memmesh grammar, so the baseline is pycrdt's own encoding, not the envelope's payload.)

**Catch-up**: a source node (``MemoryStore``) holds ``claims`` claims (default 100,000) in
envelopes of 64 claims, written through its core (``LocalWrite`` then ``Flush``, one envelope
each; not timed). A fresh, empty replica (``LmdbStore`` in a temporary directory: real durable
commits, fsync included) is opened (not timed). The clock starts when the replica connects to
the source; the cores run in waves until nothing is in flight or due (the replica pulls the log
with ``GetRange``, one frame-sized ``Envelopes`` page at a time, committing each page between
waves); then ``net.quiesce()`` runs its confirming anti-entropy sweep, and the clock stops when it
returns. The bench then checks that the replica holds the source's frontier, claims digest and
number of live claims, and fails (``SyncBenchFailed``) if not.

- ``catchup_claims_per_s`` = ``claims`` / ``catchup_seconds``; ``catchup_envelopes`` is the
  envelopes the replica received, ``catchup_frames`` and ``catchup_bytes`` every frame both ways
  from the connection on, ``catchup_commits`` the replica's durable commits.
- ``verify_per_s``: raw Ed25519 verifications (PyNaCl) of claim-sized messages: the baseline.
- ``catchup_vs_verify`` = ``catchup_claims_per_s`` / ``verify_per_s``: every claim costs at
  least one signature verification (its agent's; each envelope adds the node's), so this is the
  fraction of the unavoidable cryptography's speed that catch-up reaches (1.0 is out of reach).

``duration_s`` is the wall time of the whole benchmark, building included. Absolute rates are
noisy on a shared machine; the ratios are what to compare.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nacl.signing
import pycrdt

from ..claims import Claim
from ..core import Flush, LocalWrite, MeshCore, Notify, WriteAcked
from ..store import LmdbStore, MemoryStore, Store
from ..testing import FakeNetwork, MeshFixture
from ..ydecode import ROOT_NAME, client_id, item_key

__all__ = ["SyncBenchFailed", "run_sync_bench"]

WIRE_CLAIMS_PER_ENVELOPE = (1, 64)
CATCHUP_CLAIMS_PER_ENVELOPE = 64
GOAL_OVERHEAD_VS_YJS = {"1": 2.0, "64": 1.2}
VERIFY_SAMPLES = 5000
_LABEL = "bench-sync"


class SyncBenchFailed(AssertionError):
    """The benchmark's own check failed: a replica did not converge, a write was not acked."""


def run_sync_bench(
    *,
    claims: int = 100_000,
    wire_claims: int = 2048,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Run the sync benchmark (temporary stores under ``directory``) and return its figures."""
    if claims < 1 or wire_claims < 1:
        raise ValueError("claims and wire_claims must be >= 1")
    started = time.perf_counter()
    wire = {str(n): _wire_cost(n, wire_claims) for n in WIRE_CLAIMS_PER_ENVELOPE}
    with tempfile.TemporaryDirectory(prefix="memmesh-bench-", dir=directory) as tmp:
        catchup = _catchup(claims, Path(tmp) / "replica")
    verify_rate = _verify_rate(catchup["claim_bytes"], VERIFY_SAMPLES)
    catchup_rate = claims / catchup["seconds"]

    def per_size(name: str) -> dict[str, Any]:
        return {size: figures[name] for size, figures in wire.items()}

    return {
        "benchmark": "sync",
        "wire_bytes_per_claim": per_size("bytes_per_claim"),
        "wire_bytes_per_claim_push_only": per_size("push_bytes_per_claim"),
        "yjs_update_bytes_per_claim": per_size("yjs_bytes_per_claim"),
        "overhead_vs_yjs": per_size("overhead"),
        "overhead_vs_yjs_push_only": per_size("push_overhead"),
        "goal_overhead_vs_yjs": dict(GOAL_OVERHEAD_VS_YJS),
        "envelope_bytes_per_claim": per_size("envelope_bytes_per_claim"),
        "anti_entropy_bytes": per_size("anti_entropy_bytes"),
        "anti_entropy_sweeps": per_size("sweeps"),
        "wire_frames": per_size("frames"),
        "wire_envelopes": per_size("envelopes"),
        "wire_claims": wire_claims,
        "wire_claims_per_envelope": list(WIRE_CLAIMS_PER_ENVELOPE),
        "claim_bytes": round(wire["1"]["claim_bytes"], 1),
        "catchup_claims_per_s": round(catchup_rate, 1),
        "catchup_seconds": round(catchup["seconds"], 3),
        "catchup_envelopes": catchup["envelopes"],
        "catchup_frames": catchup["frames"],
        "catchup_bytes": catchup["bytes"],
        "catchup_commits": catchup["commits"],
        "catchup_converged": True,  # _catchup raises SyncBenchFailed otherwise
        "verify_per_s": round(verify_rate, 1),
        "catchup_vs_verify": round(catchup_rate / verify_rate, 3),
        "claims": claims,
        "catchup_claims_per_envelope": CATCHUP_CLAIMS_PER_ENVELOPE,
        "stores": {"wire": "memory", "catchup_source": "memory", "catchup_replica": "lmdb"},
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _drive(net: FakeNetwork) -> int:
    """Run the cores in waves: deliver every frame in flight, then flush every core that asked
    for it; until nothing is in flight or due. Return the number of waves."""
    waves = 0
    while net.in_flight or net.flush_due:
        net.deliver(len(net.in_flight))
        net.flush()
        waves += 1
    return waves


def _rng(label: str) -> random.Random:
    return random.Random(f"{_LABEL}/{label}")


def _core(mesh: MeshFixture, index: int, store: Store) -> MeshCore:
    return MeshCore(mesh.nodes[index], mesh.genesis, store, _rng(f"node{index}"))


def _claims(mesh: MeshFixture, start: int, count: int) -> list[Claim]:
    writer = mesh.writers[0]
    return [mesh.claim(writer, f"k{i}", i) for i in range(start, start + count)]


def _batches(total: int, size: int) -> list[tuple[int, int]]:
    """(start, count) of each envelope: ``total`` claims, ``size`` per envelope."""
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def _check_acked(net: FakeNetwork, name: str, tokens: int) -> None:
    acked = sum(isinstance(n, WriteAcked) for n in net.notices[name])
    if acked != tokens:
        raise SyncBenchFailed(f"{name}: {acked} of {tokens} writes acknowledged")


def _check_same(source: MeshCore, replica: MeshCore, claims: int, what: str) -> None:
    if replica.frontier() != source.frontier():
        raise SyncBenchFailed(f"{what}: the replica's frontier differs from the source's")
    live = len(replica.admission.live_claims())
    if live != claims:
        raise SyncBenchFailed(f"{what}: the replica holds {live} live claims, not {claims}")
    if replica.claims_digest() != source.claims_digest():
        raise SyncBenchFailed(f"{what}: the replica's claims digest differs from the source's")


def _wire_cost(per_envelope: int, total: int) -> dict[str, Any]:
    mesh = MeshFixture(_LABEL, nodes=2, writers=1)
    net = FakeNetwork(_rng(f"wire{per_envelope}"))
    a, b = _core(mesh, 0, MemoryStore()), _core(mesh, 1, MemoryStore())
    net.add("a", a)
    net.add("b", b)
    net.connect("a", "b")
    net.settle()
    net.bytes_sent = net.frames_sent = 0
    client = client_id(a.node, a.epoch)
    yjs_bytes = claim_bytes = 0
    batches = _batches(total, per_envelope)
    for token, (start, count) in enumerate(batches, 1):
        claims = _claims(mesh, start, count)
        claim_bytes += sum(len(c.raw) for c in claims)
        yjs_bytes += _yjs_update_bytes(client, claims)
        net.write("a", token, claims)
        net.flush("a")
        _drive(net)
    push_bytes, push_frames = net.bytes_sent, net.frames_sent
    sweeps = net.quiesce()
    _check_acked(net, "a", len(batches))
    _check_same(a, b, total, f"wire, {per_envelope} claims per envelope")
    envelope_bytes = sum(r.envelope.size for r in a.admission.records.values())
    return {
        "bytes_per_claim": round(net.bytes_sent / total, 2),
        "push_bytes_per_claim": round(push_bytes / total, 2),
        "yjs_bytes_per_claim": round(yjs_bytes / total, 2),
        "overhead": round(net.bytes_sent / yjs_bytes, 3),
        "push_overhead": round(push_bytes / yjs_bytes, 3),
        "envelope_bytes_per_claim": round(envelope_bytes / total, 2),
        "anti_entropy_bytes": net.bytes_sent - push_bytes,
        "sweeps": sweeps,
        "frames": net.frames_sent,
        "push_frames": push_frames,
        "envelopes": len(batches),
        "claim_bytes": claim_bytes / total,
    }


def _yjs_update_bytes(client: int, claims: Sequence[Claim]) -> int:
    """The size of the bare Yjs v1 update that sets ``claims`` in a fresh document."""
    doc: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc(client_id=client)
    root = doc.get(ROOT_NAME, type=pycrdt.Map)
    with doc.transaction():
        for claim in claims:
            root[item_key(client, claim.id)] = claim.raw
    return len(doc.get_update())


def _catchup(claims: int, path: Path) -> dict[str, Any]:
    mesh = MeshFixture(_LABEL, nodes=2, writers=1)
    net = FakeNetwork(_rng("catchup"))
    source = _core(mesh, 0, MemoryStore())
    net.add("source", source)
    batches = _batches(claims, CATCHUP_CLAIMS_PER_ENVELOPE)
    claim_bytes = 0
    for token, (start, count) in enumerate(batches, 1):
        batch = _claims(mesh, start, count)
        claim_bytes += sum(len(c.raw) for c in batch)
        now = net.clock.now_ms
        effects = source.handle(LocalWrite(token, batch), now) + source.handle(Flush(), now)
        net.notices["source"].extend(e.notice for e in effects if isinstance(e, Notify))
    _check_acked(net, "source", len(batches))
    with LmdbStore(path) as store:
        replica = _core(mesh, 1, store)
        net.add("replica", replica)
        start_time = time.perf_counter()
        net.connect("replica", "source")
        _drive(net)
        net.quiesce()
        seconds = time.perf_counter() - start_time
        _check_same(source, replica, claims, "catch-up")
        return {
            "seconds": seconds,
            "envelopes": replica.stats.envelopes_received,
            "frames": net.frames_sent,
            "bytes": net.bytes_sent,
            "commits": replica.stats.commits,
            "claim_bytes": math.ceil(claim_bytes / claims),
        }


def _verify_rate(message_bytes: int, count: int) -> float:
    key = nacl.signing.SigningKey(os.urandom(32))
    signed = key.sign(os.urandom(max(1, message_bytes - 64)))
    verify_key = key.verify_key
    start = time.perf_counter()
    for _ in range(count):
        verify_key.verify(signed)
    return count / (time.perf_counter() - start)
