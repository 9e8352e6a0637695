"""A node's attestations (DESIGN §7): its own signed chain, the statements it was shown, split-
view evidence, witness co-signatures, bundles, proofs and views rebuilt at a past frontier.

Used by the running node (``/v1/attestations``) and by the CLI on a stopped node's data dir, so
it needs only an admission, its view, the store and the node key.

Everything is kept in the store's metadata, committed before it is answered:

- ``attest/known/<id hex>``: the DSSE JSON of every attestation this node holds (its own and
  those shown to it by ``verify`` or a witness request), with every co-signature gathered;
- ``attest/own/<seq, 20 digits>``: the id of this node's attestation of that seq (its chain);
- ``attest/evidence/<id hex>/<id hex>``: split-view evidence, two attestations of one signer that
  contradict each other (the reason, canonical JSON); both are kept under ``attest/known/``.

A node's own chain never forks: the next statement names the last one as ``prev`` and takes the
next seq, and it is committed before it is returned.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..attest import (
    AttestationBuilder,
    AttestationError,
    DsseEnvelope,
    Statement,
    build_statement,
    cosign,
    decode_dsse,
    decode_statement,
    prove_claim,
    rebuild_at_statement,
    split_view,
)
from ..attest.bundle import bundle_frames, bundle_head, closure_ids
from ..attest.verify import policies_match
from ..canonical import canonical_bytes, parse_canonical
from ..crypto import SigningKey
from ..errors import StorageError
from ..memory import View
from ..memory.receipts import frontier_hash
from ..store import WriteBatch

if TYPE_CHECKING:
    from ..admission import Admission
    from ..membership import Genesis
    from ..store import Store

__all__ = [
    "AS_OF_VIEWS_MAX",
    "GATHER_SLICE",
    "AttestationService",
    "Disagreement",
    "Held",
    "SplitViewRecord",
]

GATHER_SLICE = 1024
"""Envelopes read on the event loop between two yields when gathering an attested set for a
bundle or an as-of view (about 3 ms here for envelopes read back from the store)."""
_KNOWN = "attest/known/"
_OWN = "attest/own/"
_EVIDENCE = "attest/evidence/"
AS_OF_VIEWS_MAX = 4
"""Views rebuilt for ``as_of`` reads kept in memory (each is a whole view at that frontier)."""


class Disagreement(Exception):
    """A witness refuses to co-sign: its replica at the statement's frontier differs."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Held:
    """An attestation this node holds: its statement and its DSSE JSON (every signature)."""

    statement: Statement
    dsse: bytes
    own: bool

    @property
    def envelope(self) -> DsseEnvelope:
        return decode_dsse(self.dsse)

    def summary(self) -> dict[str, object]:
        s = self.statement
        return {
            "id": s.id.hex(),
            "signer": s.signer.hex(),
            "seq": s.seq,
            "hlc": s.hlc,
            "own": self.own,
            "witnesses": [
                sig.keyid.hex() for sig in self.envelope.signatures if sig.keyid != s.signer
            ],
            "frontier_hash": frontier_hash(s.frontier).hex(),
            "counts": s.counts.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class SplitViewRecord:
    reason: str
    detail: str
    first: bytes
    second: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "first": self.first.hex(),
            "second": self.second.hex(),
        }


class AttestationService:
    def __init__(
        self,
        admission: Admission,
        view: View,
        store: Store,
        key: SigningKey,
        *,
        on_new: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_new``: told the id of each attestation this service comes to hold (those in
        the store first), once each."""
        self.admission, self.view, self.store, self.key = admission, view, store, key
        self._on_new = on_new
        self._builder: AttestationBuilder | None = None
        self.known: dict[bytes, Held] = {}
        self.own: list[bytes] = []
        """This node's attestation ids, by seq (index 0 is seq 1)."""
        self.evidence: dict[tuple[bytes, bytes], SplitViewRecord] = {}
        self._as_of: OrderedDict[bytes, View] = OrderedDict()
        self._building: dict[bytes, asyncio.Future[View]] = {}
        """Views at a statement being rebuilt in a worker thread, so a second request for the
        same one waits for that rebuild instead of starting another."""
        self.gather_slice = GATHER_SLICE
        """Envelopes read between two yields to the event loop (:meth:`_slices`)."""
        self._load()

    def _load(self) -> None:
        for name, dsse in self.store.iter_meta(_KNOWN):
            statement = decode_statement(decode_dsse(dsse).payload)
            if name != _KNOWN + statement.id.hex():
                raise ValueError(f"{name}: holds attestation {statement.id.hex()}")
            own = statement.signer == self.key.public_key
            self._hold(Held(statement, dsse, own))
        for name, value in self.store.iter_meta(_OWN):
            seq = int(name[len(_OWN) :])
            if seq != len(self.own) + 1 or value not in self.known:
                raise ValueError(f"{name}: this node's attestation chain is broken in the store")
            self.own.append(value)
        for _, value in self.store.iter_meta(_EVIDENCE):
            doc = parse_canonical(value, what="split-view evidence", bytes_max=1 << 16)
            assert isinstance(doc, dict)
            record = SplitViewRecord(
                str(doc["reason"]),
                str(doc["detail"]),
                bytes.fromhex(str(doc["first"])),
                bytes.fromhex(str(doc["second"])),
            )
            self.evidence[(record.first, record.second)] = record

    def _hold(self, held: Held) -> None:
        new = held.statement.id not in self.known
        self.known[held.statement.id] = held
        if new and self._on_new is not None:
            self._on_new(held.statement.id)

    def retarget(self, admission: Admission, view: View) -> None:
        """Follow a rebuilt admission or view (the builder's caches belong to the old ones)."""
        if admission is not self.admission or view is not self.view:
            self.admission, self.view, self._builder = admission, view, None

    @property
    def builder(self) -> AttestationBuilder:
        if self._builder is None:
            self._builder = AttestationBuilder(self.admission, self.view)
        return self._builder

    # -- this node's chain ----------------------------------------------------------------------

    def last_own(self) -> Held | None:
        return self.known[self.own[-1]] if self.own else None

    def create(self, hlc: int) -> Held:
        """Attest to everything this node holds now; durable before it returns."""
        previous = self.last_own()
        hlc = max(hlc, previous.statement.hlc) if previous is not None else hlc
        statement, dsse = self.builder.attest(
            self.key, hlc=hlc, previous=None if previous is None else previous.statement
        )
        held = Held(statement, dsse, own=True)
        self.store.commit(
            WriteBatch(
                meta={
                    _KNOWN + statement.id.hex(): dsse,
                    f"{_OWN}{statement.seq:020d}": statement.id,
                }
            )
        )
        self._hold(held)
        self.own.append(statement.id)
        return held

    def add_signatures(self, dsse: bytes) -> Held:
        """Merge the valid co-signatures of ``dsse`` into the attestation held with its id."""
        given = decode_dsse(dsse)
        statement = decode_statement(given.payload)
        held = self.known.get(statement.id)
        if held is None:
            raise KeyError(statement.id.hex())
        envelope = held.envelope
        merged = list(envelope.signatures)
        for signature in given.signatures:
            if envelope.signature_by(signature.keyid) is None and given.valid(signature):
                merged.append(signature)
        if len(merged) == len(envelope.signatures):
            return held
        updated = DsseEnvelope(envelope.payload, envelope.payload_type, tuple(merged)).to_json()
        self.store.commit(WriteBatch(meta={_KNOWN + statement.id.hex(): updated}))
        held = Held(statement, updated, held.own)
        self.known[statement.id] = held
        return held

    # -- attestations of others --------------------------------------------------------------

    def remember(self, statement: Statement, dsse: bytes) -> list[SplitViewRecord]:
        """Keep a verified attestation of any signer; return the split-view evidence it makes
        against those of the same signer already held (stored too)."""
        found: list[SplitViewRecord] = []
        meta: dict[str, bytes] = {}
        if statement.id not in self.known:
            meta[_KNOWN + statement.id.hex()] = dsse
        for other in sorted(self.known.values(), key=lambda h: (h.statement.seq, h.statement.id)):
            if other.statement.signer != statement.signer or other.statement.id == statement.id:
                continue
            split = split_view(other.dsse, dsse)
            if split is None:
                continue
            pair = (split.earlier.id, split.later.id)
            record = SplitViewRecord(split.reason, split.detail, *pair)
            found.append(record)
            if pair not in self.evidence:
                meta[f"{_EVIDENCE}{pair[0].hex()}/{pair[1].hex()}"] = canonical_bytes(
                    record.to_json()
                )
        if meta:
            self.store.commit(WriteBatch(meta=meta))
        if statement.id not in self.known:
            self._hold(Held(statement, dsse, own=False))
        for record in found:
            self.evidence.setdefault((record.first, record.second), record)
        return found

    # -- witnessing ----------------------------------------------------------------------------

    def witness(self, dsse: bytes) -> bytes:
        """Co-sign ``dsse`` if this replica, at the statement's frontier, gives the same log
        roots, claims digest and (when the policies match) resolution digest; the co-signed
        DSSE JSON. ``Disagreement`` if not; the caller has verified the signer's signature."""
        envelope = decode_dsse(dsse)
        statement = decode_statement(envelope.payload)
        if statement.mesh_id != self.admission.mesh_id:
            raise Disagreement("wrong_mesh", "the statement is about another mesh")
        mine = self.statement_at(statement)
        for name in ("logs", "evidence", "top_root", "claims_digest"):
            if getattr(mine, name) != getattr(statement, name):
                raise Disagreement(name, f"this replica's {name} differs at that frontier")
        same_rules, _ = policies_match(statement.policies)
        if same_rules and mine.resolution_digest != statement.resolution_digest:
            raise Disagreement("resolution_digest", "this replica resolves the subjects otherwise")
        if envelope.signature_by(self.key.public_key) is not None:
            return dsse
        signed = cosign(envelope, self.key)
        self.remember(statement, signed)
        if statement.id in self.known:
            self.add_signatures(signed)
        return signed

    async def prepare_statement_at(self, statement: Statement) -> None:
        """Have what :meth:`statement_at` needs ready without holding the event loop: the
        view at the statement's frontier, rebuilt in a worker thread when it is not this
        node's frontier (:meth:`prepare_view_at`). ``Disagreement`` as :meth:`statement_at`."""
        if statement.mesh_id != self.admission.mesh_id or self._at_frontier(statement):
            return  # witness refuses another mesh's statement itself; or nothing to rebuild
        await self.prepare_view_at(statement)

    def _at_frontier(self, statement: Statement) -> bool:
        return statement.frontier == self.admission.frontier() and not self._buffered()

    def statement_at(self, statement: Statement) -> Statement:
        """What this replica would state at ``statement``'s frontier (same signer, seq, prev
        and hlc, so only the replicated facts can differ). ``Disagreement`` if it lacks part
        of that state."""
        if self._at_frontier(statement):
            return self.builder.statement(
                signer=statement.signer, seq=statement.seq, prev=statement.prev, hlc=statement.hlc
            )
        view = self.view_at(statement)
        return build_statement(
            view.admission,
            view,
            signer=statement.signer,
            seq=statement.seq,
            prev=statement.prev,
            hlc=statement.hlc,
        )

    def _buffered(self) -> bool:
        return any(self.admission.buffered.values())

    # -- bundles, proofs, point-in-time views --------------------------------------------------

    async def bundle_parts(self, attestation_id: bytes) -> list[bytes]:
        """The bundle of a held attestation in parts whose bytes, joined, are
        :func:`~memmesh.attest.make_bundle`'s: its head, then the frames of each slice of
        envelopes as :meth:`_slices` reads it on the event loop. A bundle is every attested
        envelope's bytes (85 MB at 100,000 envelopes): joined into one piece, even in a worker
        thread, the copy held the interpreter, and so the loop, gossip included (17 ms at
        30,000 envelopes), and the node held the bundle twice; written a part at a time, no
        piece is larger than a slice's. ``Disagreement`` (``not_held``) before any part when
        this node no longer holds them."""
        held = self._held(attestation_id)
        frames: list[bytes] = []
        count = 0
        async for raws in self._slices(held.statement):
            frames.append(bundle_frames(raws))
            count += len(raws)
        return [bundle_head(held.dsse, self.admission.genesis.raw, count), *frames]

    def prove(self, attestation_id: bytes, claim_id: bytes) -> bytes:
        held = self._held(attestation_id)
        builder = self.builder
        builder.refresh_trees()
        return prove_claim(builder, held.statement, claim_id).to_bytes()

    def view_at(self, statement: Statement) -> View:
        """The view of exactly the envelopes of ``statement`` (its frontier and evidence),
        rebuilt from this node's log; cached for the last few asked. On a node, call
        :meth:`prepare_view_at` first: rebuilding here holds the caller's thread."""
        cached = self._as_of.get(statement.id)
        if cached is not None:
            self._as_of.move_to_end(statement.id)
            return cached
        raws = self._envelopes_of(statement)
        return self._keep(statement, _rebuilt(raws, self.admission.genesis, statement))

    async def prepare_view_at(self, statement: Statement) -> None:
        """Have :meth:`view_at` of ``statement`` ready, rebuilt in a worker thread: a rebuild
        replays every envelope up to that frontier (2.3 s at 20,000 envelopes here), and on
        the event loop it held gossip and every other request for as long. Only gathering the
        envelopes' bytes stays on the loop, in slices (:meth:`_slices`): it reads the node's
        indexes, which the loop changes. ``Disagreement`` as :meth:`view_at`. Nothing to do
        when the view is cached, or when the statement is at this node's frontier and
        :meth:`statement_at` needs no rebuilt view."""
        if statement.id in self._as_of:
            return
        pending = self._building.get(statement.id)
        if pending is None:  # concurrent askers share one gathering and one rebuild
            pending = asyncio.ensure_future(self._rebuild(statement))
            self._building[statement.id] = pending

            def done(future: asyncio.Future[View]) -> None:
                self._building.pop(statement.id, None)
                if not future.cancelled():
                    future.exception()  # retrieved here too: every asker may have gone

            pending.add_done_callback(done)
        view = await asyncio.shield(pending)
        if statement.id not in self._as_of:
            self._keep(statement, view)

    async def _rebuild(self, statement: Statement) -> View:
        raws = await self._gather(statement)
        return await asyncio.to_thread(_rebuilt, raws, self.admission.genesis, statement)

    def _envelopes_of(self, statement: Statement) -> list[bytes]:
        ids = self._closure(statement)
        return self._read(ids)

    async def _gather(self, statement: Statement) -> list[bytes]:
        """:meth:`_envelopes_of`, read a slice at a time (:meth:`_slices`)."""
        out: list[bytes] = []
        async for raws in self._slices(statement):
            out += raws
        return out

    async def _slices(self, statement: Statement) -> AsyncIterator[list[bytes]]:
        """The attested envelopes' bytes, ``gather_slice`` at a time, yielding to the event
        loop between slices: reading an envelope no longer held in memory costs about 3 us
        here (its store record checksummed), and all of them in one go held the loop, gossip
        and every other request, for about 0.3 s at 100,000 envelopes. The ids are taken at
        once; an envelope that the loop moves meanwhile (a log cut at a fork puts it off its
        log) is read from where its record says it is at the moment it is read."""
        ids = self._closure(statement)
        step = self.gather_slice
        for start in range(0, len(ids), step):
            if start:
                await asyncio.sleep(0)
            yield self._read(ids[start : start + step])

    def _closure(self, statement: Statement) -> list[bytes]:
        try:
            return closure_ids(self.admission, statement)
        except ValueError as exc:
            raise Disagreement("not_held", str(exc)) from None

    def _read(self, ids: list[bytes]) -> list[bytes]:
        try:
            return [self.admission.envelope_bytes(env_id) for env_id in ids]
        except KeyError as exc:  # not for an attested envelope: only a failed batch is undone
            raise Disagreement("not_held", f"envelope {exc} is no longer held") from None
        except StorageError as exc:
            raise Disagreement("not_held", f"the store cannot read it: {exc}") from None

    def _keep(self, statement: Statement, view: View) -> View:
        self._as_of[statement.id] = view
        while len(self._as_of) > AS_OF_VIEWS_MAX:
            self._as_of.popitem(last=False)
        return view

    def _held(self, attestation_id: bytes) -> Held:
        held = self.known.get(attestation_id)
        if held is None:
            raise KeyError(attestation_id.hex())
        return held

    def find(self, prefix: str) -> Held:
        """The attestation whose id is, or starts with, the hex ``prefix`` (at least 8 digits);
        ``KeyError`` if none or several."""
        prefix = prefix.lower()
        if len(prefix) < 8:
            raise KeyError(prefix)
        matches = [h for i, h in self.known.items() if i.hex().startswith(prefix)]
        if len(matches) != 1:
            raise KeyError(prefix)
        return matches[0]


def _rebuilt(raws: list[bytes], genesis: Genesis, statement: Statement) -> View:
    """The view of ``raws`` at ``statement``: a pure function of its arguments (a fresh
    admission and view of their own), so a worker thread may run it."""
    try:
        return rebuild_at_statement(raws, genesis, statement, trusted=True)
    except AttestationError as exc:
        raise Disagreement(exc.code, exc.detail) from None
