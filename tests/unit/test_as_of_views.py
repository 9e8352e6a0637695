"""A node's views at past attestations (``as_of`` reads, witness checks) are rebuilt in a worker
thread: a rebuild replays every envelope up to that frontier (2.3 s at 20,000 envelopes), which
on the event loop held gossip and every other request for as long."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from memmesh.admission import Admission
from memmesh.attest import decode_bundle, make_bundle
from memmesh.memory import View
from memmesh.runtime import attestations
from memmesh.runtime.attestations import AttestationService, Disagreement, Held
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

NS = ("as-of",)


def _write(mesh: MeshFixture, admission: Admission, view: View, value: int) -> None:
    claim = mesh.claim(mesh.writers[0], "k", value, namespace=NS)
    env = admission.write_local(mesh.nodes[0], [claim], hlc=value)
    view.apply([env.id], value)


def test_a_past_view_is_rebuilt_once_in_a_worker_thread_and_then_served_from_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = MeshFixture("as-of", nodes=1, writers=1)
    admission = Admission(MemoryStore(), mesh.genesis)
    view = View.build(admission)
    _write(mesh, admission, view, 1)
    service = AttestationService(admission, view, MemoryStore(), mesh.nodes[0])
    then = service.create(hlc=2).statement
    _write(mesh, admission, view, 3)  # the attestation is no longer at the frontier
    rebuilt_on: list[int] = []
    rebuild = attestations._rebuilt

    def spied(*args: Any) -> View:
        rebuilt_on.append(threading.get_ident())
        return rebuild(*args)

    monkeypatch.setattr(attestations, "_rebuilt", spied)

    async def two_readers_at_once() -> int:
        await asyncio.gather(service.prepare_view_at(then), service.prepare_view_at(then))
        await service.prepare_statement_at(then)  # ready: nothing more to rebuild
        return threading.get_ident()

    loop_thread = asyncio.run(two_readers_at_once())
    assert len(rebuilt_on) == 1 and rebuilt_on[0] != loop_thread
    past = service.view_at(then)
    assert len(rebuilt_on) == 1  # served from the cache
    subject = past.get(NS, "k")
    assert subject is not None
    (live,) = subject.live
    assert past.subjects[(NS, "k")].entries[live].claim.value == 1
    assert service.statement_at(then) == then  # this replica agrees with what it attested


def _behind() -> tuple[Held, AttestationService]:
    """An attestation of two writes, and a node's service that holds only the first."""
    mesh = MeshFixture("as-of", nodes=1, writers=1)
    ahead = Admission(MemoryStore(), mesh.genesis)
    ahead_view = View.build(ahead)
    for value in (1, 2):
        _write(mesh, ahead, ahead_view, value)
    held = AttestationService(ahead, ahead_view, MemoryStore(), mesh.nodes[0]).create(hlc=3)
    behind = Admission(MemoryStore(), mesh.genesis)
    behind.receive(ahead.envelope_bytes(next(iter(ahead.records))))
    return held, AttestationService(behind, View.build(behind), MemoryStore(), mesh.nodes[0])


def test_a_statement_this_node_cannot_rebuild_is_a_disagreement_before_any_thread() -> None:
    held, service = _behind()
    with pytest.raises(Disagreement) as refused:
        asyncio.run(service.prepare_view_at(held.statement))
    assert refused.value.code == "not_held"


def test_a_bundle_comes_in_parts_that_join_to_the_one_made_in_line() -> None:
    """A bundle is every attested envelope's bytes (85 MB at 100,000 envelopes): joined in one
    piece, even in a worker thread, the copy held the event loop. Its parts are its head, then
    one per slice of envelopes read, and together they are exactly the bundle."""
    mesh = MeshFixture("as-of", nodes=1, writers=1)
    admission = Admission(MemoryStore(), mesh.genesis)
    view = View.build(admission)
    for value in (1, 2, 3, 4, 5):
        _write(mesh, admission, view, value)
    service = AttestationService(admission, view, MemoryStore(), mesh.nodes[0])
    held = service.create(hlc=6)
    _write(mesh, admission, view, 7)  # the node moved on: the bundle is still the attested set
    service.gather_slice = 2
    parts = asyncio.run(service.bundle_parts(held.statement.id))
    data = b"".join(parts)
    assert data == make_bundle(admission, held.dsse)
    assert len(decode_bundle(data).envelopes) == held.statement.counts.envelopes == 5
    assert len(parts) == 1 + 3  # the head, then slices of 2, 2 and 1 envelopes
    largest = max(len(e.raw) for e in (r.envelope for r in admission.records.values()))
    assert all(len(part) <= 2 * (4 + largest) for part in parts[1:])


def test_a_bundle_of_envelopes_this_node_does_not_hold_is_refused_as_not_held() -> None:
    """An attestation this node keeps (verified, of another signer) names envelopes it lacks."""
    held, service = _behind()
    service.remember(held.statement, held.dsse)
    with pytest.raises(Disagreement) as refused:
        asyncio.run(service.bundle_parts(held.statement.id))
    assert refused.value.code == "not_held"


def test_gathering_an_attested_set_lets_the_event_loop_run_between_slices() -> None:
    """Reading the attested envelopes back (about 3 us each from the store) in one go held the
    loop for about 0.3 s at 100,000 envelopes. In slices, other work runs between them (here
    writes, as gossip would bring), and the bundle and the as-of view are still exactly the
    attested set."""
    mesh = MeshFixture("as-of", nodes=1, writers=1)
    admission = Admission(MemoryStore(), mesh.genesis)
    view = View.build(admission)
    for value in range(1, 8):
        _write(mesh, admission, view, value)
    service = AttestationService(admission, view, MemoryStore(), mesh.nodes[0])
    held = service.create(hlc=8)
    expected = make_bundle(admission, held.dsse)
    service.gather_slice = 2  # 7 envelopes: 4 slices, 3 yields
    written: list[int] = []
    seen_at: list[int] = []  # for each envelope read, how many writes had run by then
    read = admission.envelope_bytes

    def spied(env_id: bytes) -> bytes:
        seen_at.append(len(written))
        return read(env_id)

    admission.envelope_bytes = spied  # type: ignore[method-assign]

    async def writer(stop: asyncio.Event) -> None:
        value = 100
        while not stop.is_set():
            _write(mesh, admission, view, value)
            written.append(value)
            value += 1
            await asyncio.sleep(0)

    async def export() -> bytes:
        stop = asyncio.Event()
        task = asyncio.ensure_future(writer(stop))
        await asyncio.sleep(0)  # the writer is running
        data = b"".join(await service.bundle_parts(held.statement.id))
        assert len(seen_at) == 7 and len(set(seen_at)) == 4  # writes ran between the slices
        seen_at.clear()
        await service.prepare_view_at(held.statement)
        assert len(seen_at) == 7 and len(set(seen_at)) == 4
        stop.set()
        await task
        return data

    assert asyncio.run(export()) == expected
    past = service.view_at(held.statement)  # the rebuilt view: the attested writes alone
    assert sorted(e.claim.value for e in past.subjects[(NS, "k")].entries.values()) == [
        *range(1, 8)
    ]
