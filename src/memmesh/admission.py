"""The admission pipeline (DESIGN §4 rule 3) and the live set (rule 2).

Every envelope, remote or local, goes through one path, cheapest check first:

    size -> signature -> mesh id -> grammar -> claims (agent signatures, claims root)
         -> causal buffer (prev and deps) -> clock range -> membership (pending buffer)
         -> durable commit -> integration -> release of whatever waited on it

An envelope is **rejected** (never stored) only for what its own bytes and its causal past decide.
Whether a stored envelope is **live** or **excluded** is a pure function of everything known
(:meth:`Admission.exclusion`): revocation cutoffs, equivocation, and the membership state, so any
two replicas holding the same envelopes agree, whatever order they arrived in.

Nothing here does I/O beyond the injected synchronous ``Store``, reads a clock or draws random
numbers: the sync core, the runtime and the simulator all drive this same code.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .claims import Claim, decode_claim
from .crypto import SIGNATURE_BYTES, SigningKey
from .envelope import (
    Envelope,
    EnvelopeLimits,
    decode_envelope,
    envelope_id,
    open_envelope,
    seal,
)
from .errors import LocalError, Reason, Rejected, StorageError
from .ids import ZERO_ID, Head, LogId, short_id, tagged_hash
from .membership import ADMIT, REVOKE, Genesis, Membership, MembershipOp, Role, parse_op
from .memo import SharedMemo
from .merkle import merkle_root
from .replica import IntegrationFailed, Replica
from .store import Store, WriteBatch
from .wire import Layout, Reader, Writer
from .ydecode import (
    GrammarItem,
    check_start,
    client_id,
    decode_update,
    encode_update_at,
    item_key,
)

__all__ = [
    "Admission",
    "AdmissionLimits",
    "EnvelopeRecord",
    "NotAMember",
    "Outcome",
    "Status",
    "claims_digest",
    "shared_preparation",
]

CLAIMS_DIGEST_TAG = b"claims-digest/v1"
EVIDENCE_TAG = b"evidence/v1"
EVIDENCE_PREFIX = b"equivocation/"


_T = TypeVar("_T")
_CHECKPOINT_VERSION = 1
_REPLAY_BATCH = 256
_REPLAY_BATCH_BYTES = 1 << 20
"""Stored envelopes replayed, or integrated into the document, per call at start: at most this
many, and past the first at most this many bytes of them. A call or a transaction per envelope
cost more than a small envelope; and the bytes read for a batch are let go of before the next
is read, which reuses their memory: with 256 envelopes of 120 KB a batch, the 31 MB in flight
left the heap 13 MB larger for good (``memmesh bench view``)."""
_CHECKPOINT_HEAD = Layout(">32sIQ32s")


class _StaleCheckpoint(Exception):
    """A checkpoint that does not match the log; the document is rebuilt from the log."""


class NotAMember(LocalError):
    """This node's key is not (yet) admitted to the mesh, so its writes would not be accepted."""


class Status(enum.StrEnum):
    INTEGRATED = "integrated"
    DUPLICATE = "duplicate"
    WAITING_CAUSAL = "waiting_causal"
    WAITING_MEMBER = "waiting_member"
    REJECTED = "rejected"
    DROPPED = "dropped"
    """Not stored and not an error: it waits for its causal past and its author's node is
    revoked before its seq, so it could only ever be excluded. If some peer holds that past, sync
    brings both again, in order."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one ``receive`` did. ``admitted`` lists every envelope the call integrated, including
    buffered ones it released; ``missing`` the ids sync should fetch for this envelope."""

    status: Status
    envelope_id: bytes | None
    reason: Reason | None = None
    detail: str = ""
    missing: tuple[bytes, ...] = ()
    admitted: tuple[bytes, ...] = ()
    released_rejected: tuple[Outcome, ...] = ()
    """Buffered envelopes this call released and then rejected (e.g. a clock gap, seen only
    once the prev came): each with its own reason, so the caller can report them."""


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    envelope: EnvelopeLimits = field(default_factory=EnvelopeLimits)
    causal_buffer_max: int = 4096
    causal_per_author_max: int = 512
    """One author's share of the causal buffer."""
    causal_unadmitted_max: int = 256
    """What authors that no known admit names may hold together (keys cost nothing to make)."""
    causal_buffer_bytes_max: int = 64 << 20
    pending_buffer_max: int = 1024
    pending_buffer_bytes_max: int = 16 << 20
    held_envelope_bytes_max: int = 8 << 20
    """Bytes of the newest stored envelopes kept in memory; older ones are read from the store
    when asked for (served, proved, bundled)."""


@dataclass(slots=True)
class EnvelopeRecord:
    """What admission remembers of a stored envelope."""

    envelope: Envelope
    rank: int
    clock_end: int
    side: bool
    """Kept off its log: a branch of an equivocating log from its fork on (see
    ``_truncate_at_fork``). Integrated into pycrdt only if it was on the log before the fork was
    known; excluded either way."""
    claims: tuple[Claim, ...]
    failed: bool = False
    """pycrdt refused it although the grammar accepted it; excluded everywhere the same way."""
    stored_off_log: bool = False
    """Committed as a side envelope (by id), not at its place in its log: where the store has
    it, whatever ``side`` says later (a fork found later takes envelopes off the log in memory
    only)."""


_Op = tuple[int, Claim, tuple[str, bytes, Role | None, tuple[int, int] | None, int | None]]


def _membership_ops(claims: Sequence[Claim]) -> list[_Op]:
    """The admit and revoke claims, parsed: a malformed one is refused on its own bytes."""
    return [(i, c, parse_op(c)) for i, c in enumerate(claims) if c.type in (ADMIT, REVOKE)]


@dataclass(slots=True)
class _Prepared:
    """An envelope that passed every check on its own bytes, waiting for its causal past."""

    envelope: Envelope
    items: list[GrammarItem]
    claims: tuple[Claim, ...]
    ops: list[_Op]
    """The membership operations it carries, parsed once: (position, claim, operation)."""
    needs: tuple[bytes, ...] = field(init=False)
    """Its deps, then its prev unless it is the first of its author: what must be held
    before it is (made once: routing, ranking and the DAG heads each ask)."""

    def __post_init__(self) -> None:
        env = self.envelope
        self.needs = env.deps if env.prev == ZERO_ID else (*env.deps, env.prev)


def _assembled(env: Envelope, items: list[GrammarItem], claims: tuple[Claim, ...]) -> _Prepared:
    """The checks on a decoded envelope's parts that need no state: its claims root."""
    if merkle_root([c.id for c in claims]) != env.claims_root:
        raise Rejected(Reason.BAD_CLAIMS_ROOT, "claims_root is not the root of its claims")
    return _Prepared(env, items, claims, _membership_ops(claims))


_shared: SharedMemo[
    tuple[bytes, bytes, EnvelopeLimits, bool, bool], _Prepared | tuple[Reason, str]
] = SharedMemo(1 << 16)


def shared_preparation() -> contextlib.AbstractContextManager[None]:
    """Within this block every :class:`Admission` in the process remembers what the checks on
    an envelope's own bytes found (decoded, or rejected with its reason; at most 65,536, then it
    starts over): for the simulator (:mod:`memmesh.memo`). The checks are a pure function of
    the bytes, the mesh id, the limits and the mode, which make the key, and nothing later
    changes a prepared envelope. A node never uses it."""
    return _shared.sharing()


_Saved = tuple[
    set[bytes],
    dict[LogId, int],
    dict[bytes, tuple[bytes, bytes]],
    dict[LogId, tuple[int, bytes, bytes]],
]
"""What a batch may change besides the records and logs, copied so a failed commit undoes it."""


def claims_digest(claim_ids: Iterable[bytes]) -> bytes:
    """The canonical digest of a set of claims: a tagged hash of their sorted ids."""
    return tagged_hash(CLAIMS_DIGEST_TAG, b"".join(sorted(claim_ids)))


@dataclass(slots=True)
class _LiveSet:
    """The live claims as of ``records`` records at ``generation``, sorted by id (``ids``
    the same order), and their digest once asked (:meth:`Admission.live_claims`)."""

    generation: int
    records: int
    claims: list[Claim] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)
    digest: bytes | None = None

    def add(self, found: list[Claim]) -> None:
        """Put in the live claims of newer records (a claim two envelopes carry counts once):
        a few at a time each goes in at its place; many, and the whole is sorted again."""
        ids, claims = self.ids, self.claims
        if len(found) > _LIVE_INSERTS_MAX:
            merged = {c.id: c for c in claims}
            merged.update((c.id, c) for c in found)
            self.ids = sorted(merged)
            self.claims = [merged[i] for i in self.ids]
            self.digest = None
            return
        for claim in found:
            at = bisect_left(ids, claim.id)
            if at == len(ids) or ids[at] != claim.id:
                ids.insert(at, claim.id)
                claims.insert(at, claim)
                self.digest = None

    def digest_of(self) -> bytes:
        """:func:`claims_digest` of the ids, which are sorted already."""
        if self.digest is None:
            self.digest = tagged_hash(CLAIMS_DIGEST_TAG, b"".join(self.ids))
        return self.digest


_LIVE_INSERTS_MAX = 256
"""Past this many new live claims, re-sorting the whole costs less than inserting each."""


class HeldItems:
    """The map keys held on the main branches, with the seq of the envelope holding each.

    A map key is ``<client>/<claim id hex>`` (:func:`~memmesh.ydecode.item_key`); this index is
    kept per client by claim id, whose bytes object the claim itself holds, so 100,000 claims
    cost no key strings (about 12 MB at that scale).
    """

    __slots__ = ("_by_client",)

    def __init__(self) -> None:
        self._by_client: dict[int, dict[bytes, int]] = {}

    def get(self, client: int, claim_id: bytes) -> int | None:
        held = self._by_client.get(client)
        return None if held is None else held.get(claim_id)

    def add(self, client: int, claim_id: bytes, seq: int) -> None:
        self._by_client.setdefault(client, {})[claim_id] = seq

    def pop(self, client: int, claim_id: bytes) -> int | None:
        held = self._by_client.get(client)
        if held is None:
            return None
        seq = held.pop(claim_id, None)
        if not held:
            del self._by_client[client]
        return seq

    def restore(self, entries: Sequence[tuple[int, bytes, int]]) -> None:
        for client, claim_id, seq in entries:
            self.add(client, claim_id, seq)

    def snapshot(self) -> dict[tuple[int, bytes], int]:
        """Every entry, for comparing two states (tests, checks)."""
        return {(c, i): seq for c, held in self._by_client.items() for i, seq in held.items()}


class Admission:
    """One node's admitted envelopes, its pycrdt replica and its membership view."""

    _live: _LiveSet | None = None
    """The live claims as last computed (:meth:`live_claims`); set per instance."""
    upheavals: int = 0
    """The changes of :attr:`generation` not made by membership operations alone (a fork
    found, an envelope pycrdt refused, a batch rolled back): a reader that follows the
    membership to see whose claims changed must look at everything when this moves (an
    immutable class default; each admission counts its own)."""

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        *,
        limits: AdmissionLimits | None = None,
        replica_client_id: int = 0,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.mesh_id = genesis.mesh_id
        self.limits = limits or AdmissionLimits()
        self.membership = Membership(genesis)
        self.replica = Replica(replica_client_id)
        self.records: dict[bytes, EnvelopeRecord] = {}
        self.logs: dict[LogId, list[bytes]] = {}
        """Main-branch envelope ids of each log, index seq - 1. Of an equivocating log, only the
        prefix below its lowest fork: every branch from the fork on is kept off the log (see
        ``_truncate_at_fork``), so replicas holding the same envelopes name the same head."""
        self._log_order: list[LogId] = []
        """The logs' ids sorted, as :meth:`frontier` last saw them: still right while it names
        as many logs as there are and every one of them is there (no invalidation to forget:
        logs are rarely added or dropped, and sorting them each round cost more than the
        round's own work at 1,000 logs)."""
        self._heads: dict[LogId, Head] = {}
        """The last :class:`Head` :meth:`frontier` made of each log, given again while the
        log's length and last id are the same objects' (most logs do not move in a round)."""
        self.forks: dict[LogId, int] = {}
        """Lowest seq at which each log is known to equivocate."""
        self.evidence: dict[bytes, tuple[bytes, bytes]] = {}
        self.fork_pairs: dict[LogId, tuple[int, bytes, bytes]] = {}
        """For each equivocating log, its lowest fork: (seq, smaller id, larger id). Sync sends
        these so every replica learns the fork that decides exclusion (DESIGN §4 rule 5)."""
        self.item_keys = HeldItems()
        """Map keys held on the main branches, with the seq of the envelope that holds each."""
        self.dag_heads: set[bytes] = set()
        self.generation = 0
        """Counts changes that may change which stored claims are live: membership operations,
        forks, refused integrations and undone batches. A view that saw the same generation
        need only add what is new; otherwise it rechecks every claim."""
        self._side: set[bytes] = set()
        """Ids of the records kept off their logs: sync names their tips every round, so they
        are not searched for among all the records."""
        self._causal: dict[bytes, _Prepared] = {}
        self._causal_bytes = 0
        self._waiting_on: dict[bytes, set[bytes]] = {}
        self._pending: dict[bytes, _Prepared] = {}
        self._pending_bytes = 0
        self._batch: WriteBatch | None = None
        self._staged: list[EnvelopeRecord] = []
        self._saved: _Saved | None = None
        self._truncated: list[tuple[LogId, list[bytes], list[tuple[int, bytes, int]]]] = []
        """Branches this call took off their logs at a fork, to put back if its commit fails:
        (log, the ids removed, the item keys removed with their seqs)."""
        self._causal_by_author: dict[bytes, int] = {}
        self._causal_unadmitted = 0
        self._unadmitted_ids: set[bytes] = set()
        self._replaying = False
        self._signatures_checked = False
        """The envelopes of the current call had every signature verified by the caller."""
        self._replay_main: set[bytes] = set()
        """On restart, the ids the store holds on their logs: replay keeps them there."""
        self._held: dict[bytes, None] = {}
        """Ids of the stored envelopes whose bytes are held in memory, oldest first."""
        self._held_bytes = 0
        self.rejected: dict[Reason, int] = {}
        self.checkpoint_used: int | None = None
        self.checkpoint_problem: str | None = None

    # -- restart ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: Store,
        genesis: Genesis,
        *,
        limits: AdmissionLimits | None = None,
        replica_client_id: int = 0,
    ) -> Admission:
        """Rebuild from the store: the latest checkpoint plus every stored envelope.

        The index (records, logs, membership, forks) is rebuilt by replaying every stored
        envelope through the same pipeline: signatures are not verified again (they were before
        commit, and records are checksummed), nothing is committed again, and the causal buffer
        puts them back in causal order. The pycrdt document is loaded from the latest checkpoint
        and only the envelopes after it are integrated; a checkpoint that does not match the log
        exactly is ignored and the document is rebuilt from the log instead
        (``checkpoint_problem`` says why).
        """
        admission = cls(store, genesis, limits=limits, replica_client_id=replica_client_id)
        side = list(store.iter_side_envelopes())
        admission._replaying = True
        try:
            for log, _ in store.heads():
                stored = (raw for _, raw in store.iter_log_envelopes(log))
                for raws in _replay_batches(stored, len):
                    # Main-branch ids are known before each is received (an envelope is judged
                    # when it is received or released, never before): no second pass to list.
                    ids = [envelope_id(raw) for raw in raws]
                    admission._replay_main.update(ids)
                    admission._replay(raws, ids)
            for env_id in side:
                side_raw = store.get_side_envelope(env_id)
                assert side_raw is not None, f"side envelope {short_id(env_id)} vanished"
                admission._replay([side_raw], [env_id])
            assert not admission._causal, "a stored envelope lost its causal past"
            assert not admission._pending, "a stored envelope lost its author's admit"
        finally:
            admission._replaying = False
            admission._replay_main = set()
        # Replay may admit a side branch before the main envelope it forks from (the latter can
        # wait on deps), so the forks come from the stored evidence, not from arrival order.
        for key, value in store.iter_evidence():
            if key.startswith(EVIDENCE_PREFIX):
                pair = _split_pair(value)
                admission.evidence[key] = pair
                first, second = (decode_envelope(raw, admission.limits.envelope) for raw in pair)
                admission._note_fork(first, second.id)
        for log in sorted(admission.forks):
            admission._truncate_at_fork(log)
        admission._sync_exclusions()
        admission._restore_document(store.latest_checkpoint())
        store.release_mapped_pages()  # nothing read at start is needed from the map now
        return admission

    def _replay(self, raws: Sequence[bytes], ids: Sequence[bytes]) -> None:
        """Replay stored envelopes (``ids``: their ids, hashed once) in one admission call: a
        call per envelope cost a node's start a few microseconds each."""
        for outcome in self.receive_many(raws, ids=ids):
            assert outcome.status in (Status.INTEGRATED, Status.WAITING_CAUSAL), outcome

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoint(self) -> int:
        """Durably record the document state and the frontier it covers; return its number.

        Layout: ``version u8 | heads u32 | (author 32, epoch u32, seq u64, id 32) * heads |
        failed u32 | id 32 * failed | state_len u32 | Yjs v1 state``. Local, never replicated.
        """
        assert self._batch is None, "no checkpoint inside an admission call"
        w = Writer()
        w.u8(_CHECKPOINT_VERSION)
        frontier = self.frontier()
        w.u32(len(frontier))
        for log, head in frontier:
            w.raw(log.author)
            w.u32(log.epoch)
            w.u64(head.seq)
            w.raw(head.id)
        failed = sorted(i for i, r in self.records.items() if r.failed)
        w.u32(len(failed))
        for env_id in failed:
            w.raw(env_id)
        state = self.replica.encode_state()
        w.u32(len(state))
        w.raw(state)
        latest = self.store.latest_checkpoint()
        number = latest[0] + 1 if latest is not None else 1
        self.store.commit(WriteBatch(checkpoints={number: w.getvalue()}))
        return number

    def _restore_document(self, checkpoint: tuple[int, bytes] | None) -> None:
        covered: set[bytes] = set()
        if checkpoint is not None:
            number, data = checkpoint
            try:
                covered = self._load_checkpoint(data)
                self.checkpoint_used = number
            except (Rejected, IntegrationFailed, _StaleCheckpoint) as exc:
                self.checkpoint_problem = f"checkpoint {number} not used: {exc}"
                covered = set()
                self.replica = Replica(self.replica.doc.client_id)
        records = self.records
        left = (records[i] for log in sorted(self.logs) for i in self.logs[log] if i not in covered)
        for batch in _replay_batches(left, lambda record: record.envelope.size):
            self._integrate_all(batch)  # a transaction a batch, not one an update

    def _load_checkpoint(self, data: bytes) -> set[bytes]:
        """Load a checkpoint's document; return the main-branch ids it covers."""
        r = Reader(data, "checkpoint")
        if r.u8("version") != _CHECKPOINT_VERSION:
            raise _StaleCheckpoint("unknown checkpoint version")
        covered: set[bytes] = set()
        for _ in range(r.u32("heads")):
            author, epoch, seq, head_id = r.fields(_CHECKPOINT_HEAD, "head")
            ids = self.logs.get(LogId(author, epoch), [])
            if len(ids) < seq or ids[seq - 1] != head_id:
                raise _StaleCheckpoint(f"log {short_id(author)}@{epoch} does not hold seq {seq}")
            covered.update(ids[:seq])
        failed = {r.raw(32, "failed id") for _ in range(r.u32("failed"))}
        state = r.raw(r.u32("state_len"), "state")
        r.expect_end()
        replica = Replica(self.replica.doc.client_id)
        replica.integrate(state)
        expected = {
            item_key(client_id(rec.envelope.author, rec.envelope.epoch), claim.id)
            for env_id in covered - failed
            for rec in [self.records[env_id]]
            for claim in rec.claims
        }
        if set(replica.keys()) != expected:
            raise _StaleCheckpoint("its document does not hold exactly the claims it covers")
        for env_id in failed & covered:
            self.records[env_id].failed = True
        self._sync_exclusions()
        self.replica = replica
        return covered

    # -- the pipeline -------------------------------------------------------------------------

    def receive(self, raw: bytes, *, signatures_checked: bool = False) -> Outcome:
        """Admit one envelope's bytes from anywhere; never raises for bad input."""
        return self.receive_many([raw], signatures_checked=signatures_checked)[0]

    def receive_decoded(
        self, envelope: Envelope, items: Sequence[GrammarItem], claims: Sequence[Claim]
    ) -> Outcome:
        """Admit an envelope that the caller decoded itself, the way :meth:`receive` does
        (``decode_envelope`` within these limits, ``decode_update`` with the author's client
        id, ``decode_claim`` of each item with this mesh id) and whose envelope and claim
        signatures it verified: an offline verifier, which then decodes nothing twice. Every
        other check still runs (mesh id, claims root, causal and membership rules)."""
        return self.receive_decoded_many([(envelope, items, claims)])[0]

    def receive_decoded_many(
        self, decoded: Sequence[tuple[Envelope, Sequence[GrammarItem], Sequence[Claim]]]
    ) -> list[Outcome]:
        """:meth:`receive_decoded` for many envelopes, in the given order, with one commit."""
        with self._batching():
            return [self._receive_decoded_one(*parts) for parts in decoded]

    def _receive_decoded_one(
        self, envelope: Envelope, items: Sequence[GrammarItem], claims: Sequence[Claim]
    ) -> Outcome:
        try:
            if envelope.mesh_id != self.mesh_id:
                raise Rejected(Reason.WRONG_MESH, "the envelope belongs to another mesh")
            prepared = _assembled(envelope, list(items), tuple(claims))
        except Rejected as exc:
            return self._reject(None, exc)
        return self._route(prepared)

    def receive_many(
        self,
        raws: Sequence[bytes],
        *,
        signatures_checked: bool = False,
        ids: Sequence[bytes | None] | None = None,
    ) -> list[Outcome]:
        """Admit many envelopes with one durable commit (group commit), in the given order.

        Never raises for bad input. A storage failure (``StorageError``) is raised after every
        in-memory effect of the call has been undone: nothing of it was stored or integrated,
        and envelopes that this call released from a buffer are dropped (sync fetches them
        again).

        ``signatures_checked`` says the caller has already verified every envelope's and every
        claim's signature in ``raws`` (an offline verifier that times that pass on its own);
        every other check still runs. Never for bytes straight from a peer.

        ``ids``: :func:`envelope_id` of each of ``raws`` where the caller has computed it
        already (None where not), so no envelope is hashed twice; a wrong id is the caller's
        bug, not the peer's (the node hashes what it stages, from the same bytes).
        """
        self._signatures_checked = signatures_checked
        try:
            with self._batching():
                if ids is None:
                    return [self._receive_one(raw) for raw in raws]
                return [self._receive_one(raw, known) for raw, known in zip(raws, ids, strict=True)]
        finally:
            self._signatures_checked = False

    @contextlib.contextmanager
    def _batching(self) -> Iterator[None]:
        """Stage admissions in memory, commit them once, then integrate them into pycrdt.

        The indexes are updated before the commit so envelopes of one batch can depend on each
        other; if the commit fails they are rolled back. pycrdt is only touched after the
        commit returned: durable before visible (DESIGN §4 rule 6).
        """
        assert self._batch is None, "admission calls do not nest"
        self._batch, self._staged, self._saved = WriteBatch(), [], None
        self._truncated = []
        try:
            yield
            if self._batch and not self._replaying:
                self.store.commit(self._batch)
        except BaseException:
            self._undo()
            raise
        finally:
            staged, self._batch, self._staged = self._staged, None, []
            self._saved = None
            self._truncated = []
        if not self._replaying:  # open() builds the document once the whole index is back
            self._integrate_all([record for record in staged if not record.side])
        # At start too, envelope by envelope: memory freed as the replay goes is reused by the
        # next envelope read, where freeing it all at the end would leave the heap in holes.
        self._hold_recent(staged)

    # -- envelope bytes -----------------------------------------------------------------------

    def envelope_bytes(self, env_id: bytes) -> bytes:
        """The exact bytes of a stored envelope: held in memory for the most recent ones
        (``limits.held_envelope_bytes_max``), read from the store for the rest.
        ``KeyError`` for an envelope this replica does not hold; ``StorageError`` when the
        store cannot read it (a damaged record is never returned)."""
        record = self.records[env_id]
        env = record.envelope
        if env.held is not None:
            return env.held
        raw = (
            self.store.get_side_envelope(env_id)
            if record.stored_off_log
            else self.store.get_log_envelope(env.log, env.seq)
        )
        # Where the commit put it, so by construction this envelope (a log never reuses a seq;
        # the record's checksum covers damage); the size is a cheap check of the construction.
        if raw is None or len(raw) != env.size:
            raise StorageError(f"envelope {short_id(env_id)} is not where the store put it")
        return raw

    def envelope(self, env_id: bytes) -> Envelope:
        """A stored envelope with its bytes (read from the store if they are not held)."""
        env = self.records[env_id].envelope
        if env.held is not None:
            return env
        return env.holding(self.envelope_bytes(env_id))

    def _payload(self, record: EnvelopeRecord) -> bytes:
        env = record.envelope
        raw = env.held if env.held is not None else self.envelope_bytes(env.id)
        return raw[env.payload_start : len(raw) - SIGNATURE_BYTES]

    def _hold_recent(self, records: Iterable[EnvelopeRecord]) -> None:
        """Keep the bytes of the newest committed envelopes in memory, up to the limit, and
        let go of older ones (their claims then read their bytes from the store too): pushes,
        fetches and proofs mostly ask for what is new, and a node's memory must not grow with
        its store.

        Not while preparations are shared (:func:`shared_preparation`, the simulator): the
        replicas there share decoded claims, which must not be pointed at one replica's
        store."""
        if _shared.answers is not None:
            return
        held, budget = self._held, self.limits.held_envelope_bytes_max
        for record in records:
            held[record.envelope.id] = None
            self._held_bytes += record.envelope.size
        while self._held_bytes > budget and held:
            env_id = next(iter(held))
            del held[env_id]
            record = self.records[env_id]
            env = record.envelope
            self._held_bytes -= env.size
            record.envelope = env.detached()
            read = functools.partial(self.envelope_bytes, env_id)
            for claim in record.claims:
                claim.detach(read)

    def _undo(self) -> None:
        self.generation += 1
        self.upheavals += 1
        for log, removed, keys in reversed(self._truncated):
            for env_id in removed:
                self.records[env_id].side = False
                self._side.discard(env_id)
            self.logs.setdefault(log, []).extend(removed)
            self.item_keys.restore(keys)
        for record in reversed(self._staged):
            env = record.envelope
            del self.records[env.id]
            self._side.discard(env.id)
            if not record.side:
                ids = self.logs[env.log]
                assert ids[-1] == env.id
                ids.pop()
                if not ids:
                    del self.logs[env.log]
                client = client_id(env.author, env.epoch)
                for claim in record.claims:
                    self.item_keys.pop(client, claim.id)
            self.membership.remove(c.id for c in record.claims)
        if self._saved is not None:
            self.dag_heads, self.forks, self.evidence, self.fork_pairs = self._saved
        self._sync_exclusions()

    def _receive_one(self, raw: bytes, known: bytes | None = None) -> Outcome:
        if self._replaying:
            pass  # the store replayed at start: each envelope once, ``known`` hashed by open()
        elif len(raw) > self.limits.envelope.envelope_bytes_max:
            known = None
        else:
            if known is None:
                known = envelope_id(raw)  # one hash: a copy we hold costs no signature check
            if known in self.records:
                return Outcome(Status.DUPLICATE, known)
        try:
            prepared = self._prepare(raw, known)
        except Rejected as exc:
            return self._reject(None, exc)
        return self._route(prepared)

    def _route(self, prepared: _Prepared) -> Outcome:
        env = prepared.envelope
        if env.id in self.records:
            return Outcome(Status.DUPLICATE, env.id)
        if env.id in self._causal:
            return Outcome(Status.WAITING_CAUSAL, env.id, missing=self._missing_for(prepared))
        if env.id in self._pending:
            return Outcome(Status.WAITING_MEMBER, env.id)
        missing = self._missing_for(prepared)
        if missing and not self._replaying and self._past_cutoff(env):
            return Outcome(Status.DROPPED, env.id)
        if missing:
            return self._buffer_causal(prepared, missing)
        outcome = self._admit_ready(prepared)
        if outcome.status is not Status.INTEGRATED:
            return outcome
        rejected: list[Outcome] = []
        released = self._release_all(prepared, rejected)
        return Outcome(
            Status.INTEGRATED,
            env.id,
            admitted=(env.id, *released),
            released_rejected=tuple(rejected),
        )

    def _prepare(self, raw: bytes, known_id: bytes | None = None) -> _Prepared:
        """Every check on an envelope's own bytes (:meth:`_prepare_fresh`); inside
        :func:`shared_preparation`, once per distinct envelope and mode in the process."""
        if _shared.answers is None:
            return self._prepare_fresh(raw, known_id)
        key = (
            bytes(raw),
            self.mesh_id,
            self.limits.envelope,
            self._replaying,
            self._signatures_checked,
        )
        found = _shared.get(key)
        if found is None:
            try:
                found = self._prepare_fresh(raw, known_id)
            except Rejected as exc:
                found = (exc.reason, exc.detail)
            _shared.put(key, found)
        if isinstance(found, tuple):
            raise Rejected(*found)
        return found

    def _prepare_fresh(self, raw: bytes, known_id: bytes | None = None) -> _Prepared:
        """``known_id``: :func:`envelope_id` of ``raw``, when the caller has just computed it."""
        trusted = self._replaying or self._signatures_checked
        limits = self.limits.envelope
        if self._replaying:
            env = decode_envelope(raw, limits, known_id=known_id)
        else:
            env = open_envelope(
                raw,
                mesh_id=self.mesh_id,
                limits=limits,
                verify_signature=not self._signatures_checked,
                known_id=known_id,
            )
        items = decode_update(
            env.payload, client=client_id(env.author, env.epoch), start_clock=None
        )
        at = env.payload_start
        claims = tuple(
            decode_claim(
                item.value,
                mesh_id=self.mesh_id,
                verify_signature=not trusted,
                held=(env.raw, at + item.at),
                claim_id=item.claim_id,
            )
            for item in items
        )
        return _assembled(env, items, claims)

    def _missing_for(self, prepared: _Prepared) -> tuple[bytes, ...]:
        records = self.records
        missing = [d for d in prepared.needs if d not in records]
        return tuple(sorted(set(missing))) if missing else ()

    def _admit_ready(self, prepared: _Prepared) -> Outcome:
        env = prepared.envelope
        try:
            record, evidence = self._plan(prepared)
        except Rejected as exc:
            return self._reject(env.id, exc)
        if record is None:
            return self._buffer_pending(prepared)
        assert self._batch is not None
        if record.side:
            self._batch.side_envelopes.append(env)
        else:
            self._batch.envelopes.append(env)
        if evidence is not None:
            self._batch.evidence[evidence[0]] = _pack_pair(evidence[1])
        self._apply(record, prepared, evidence)
        self._staged.append(record)
        return Outcome(Status.INTEGRATED, env.id)

    def _plan(
        self, prepared: _Prepared
    ) -> tuple[EnvelopeRecord | None, tuple[bytes, tuple[bytes, bytes]] | None]:
        """Decide, without changing anything, how a causally ready envelope is stored: its
        record (None: its author waits for an admit) and the equivocation evidence it makes."""
        env = prepared.envelope
        log = env.log
        prev = self.records.get(env.prev) if env.seq > 1 else None
        if env.seq > 1 and (
            prev is None or prev.envelope.log != log or prev.envelope.seq != env.seq - 1
        ):
            raise Rejected(Reason.BAD_PREV, "prev is not the previous envelope of the same log")
        if env.seq == 1 and env.prev != ZERO_ID:
            # A new epoch names the last head of an earlier epoch of the same key (DESIGN §4).
            earlier = self.records[env.prev].envelope
            if earlier.author != env.author or earlier.epoch >= env.epoch:
                raise Rejected(
                    Reason.BAD_PREV, "a new epoch's prev must be an earlier epoch of its author"
                )
        check_start(prepared.items[0].clock, prev.clock_end if prev is not None else 0)
        if not self._admitted_somewhere(env.author, prepared):
            return None, None
        ids = self.logs.get(log, [])
        existing = ids[env.seq - 1] if env.seq <= len(ids) else None
        fork = self.forks.get(log)
        past_fork = fork is not None and env.seq >= fork  # every branch from there is off log
        on_main = (
            existing is None and env.seq == len(ids) + 1 and (env.seq == 1 or ids[-1] == env.prev)
        )
        if self._replaying:
            on_main = env.id in self._replay_main
        on_main = on_main and not past_fork
        self._refuse_replayed_claims(prepared, prev)
        evidence = None
        if not on_main and existing is not None:
            evidence = _evidence(existing, self.envelope_bytes(existing), env)
        records = self.records
        rank = 1 + max([records[d].rank for d in prepared.needs], default=0)
        record = EnvelopeRecord(
            envelope=env,
            rank=rank,
            clock_end=prepared.items[-1].clock + 1,
            side=not on_main,
            claims=prepared.claims,
            stored_off_log=not on_main,
        )
        return record, evidence

    def _refuse_replayed_claims(self, prepared: _Prepared, prev: EnvelopeRecord | None) -> None:
        """Refuse a claim its log already carries in this envelope's causal past.

        The past of a log is its prev chain, not whatever branch this replica holds as main: for
        an envelope on another branch of an equivocation it is that branch's own side envelopes
        down to the fork, then the main branch below it. So the decision is the same on every
        replica whichever branch it took as main.
        """
        branch: set[bytes] = set()  # one log, so one client: claim ids name its map keys
        record = prev
        while record is not None and record.side:
            env = record.envelope
            branch.update(c.id for c in record.claims)
            record = self.records.get(env.prev) if env.seq > 1 else None
        below = record.envelope.seq if record is not None else 0
        env = prepared.envelope
        client = client_id(env.author, env.epoch)
        for item in prepared.items:
            seq = self.item_keys.get(client, item.claim_id)
            if item.claim_id in branch or (seq is not None and seq <= below):
                raise Rejected(Reason.DUPLICATE_CLAIM, f"claim {item.key[:40]} is already held")

    def _admitted_somewhere(self, author: bytes, prepared: _Prepared) -> bool:
        if self.membership.ever_admitted(author):
            return True
        return any(op[:2] == (ADMIT, author) for _, _, op in prepared.ops)

    def _apply(
        self,
        record: EnvelopeRecord,
        prepared: _Prepared,
        evidence: tuple[bytes, tuple[bytes, bytes]] | None,
    ) -> None:
        if self._saved is None:  # copied once per call, and only when something is staged
            self._saved = (
                set(self.dag_heads),
                dict(self.forks),
                dict(self.evidence),
                dict(self.fork_pairs),
            )
        env = record.envelope
        self.records[env.id] = record
        if prepared.ops or evidence is not None:
            self.generation += 1
            self.upheavals += evidence is not None
        if record.side:
            self._side.add(env.id)
        if evidence is not None:
            self.evidence[evidence[0]] = evidence[1]
            self._note_fork(env, self.logs[env.log][env.seq - 1])
            self._truncate_at_fork(env.log)
            self._sync_exclusions()
        if not record.side:
            self.logs.setdefault(env.log, []).append(env.id)
            client = client_id(env.author, env.epoch)
            for claim in prepared.claims:
                self.item_keys.add(client, claim.id, env.seq)
        self.dag_heads.difference_update(prepared.needs)
        self.dag_heads.add(env.id)
        self.membership.add(
            MembershipOp(
                kind=kind,
                target=target,
                role=role,
                node_cutoff=node_cutoff,
                agent_cutoff=agent_cutoff,
                issuer=claim.agent,
                issuer_aseq=claim.aseq,
                claim_id=claim.id,
                carrier=(env.author, env.epoch, env.seq),
                order=(record.rank, env.id, position),
            )
            for position, claim, (kind, target, role, node_cutoff, agent_cutoff) in prepared.ops
        )
        if prepared.ops and not self._replaying:
            self._drop_revoked_waiting()

    def _note_fork(self, env: Envelope, other_id: bytes) -> None:
        """Record that ``env`` and the envelope ``other_id`` share a log and seq."""
        self.forks[env.log] = min(self.forks.get(env.log, env.seq), env.seq)
        known = self.fork_pairs.get(env.log)
        low, high = sorted((env.id, other_id))
        if known is None or (env.seq, low, high) < known:
            self.fork_pairs[env.log] = (env.seq, low, high)

    def _truncate_at_fork(self, log: LogId) -> None:
        """Take every envelope of ``log`` from its lowest fork on off the log (DESIGN §4 rule
        5: the log is excluded from there). Which branch reached a replica first is arrival
        order; keeping it as the log would make two replicas holding the same envelopes name
        different heads, per-log trees and attestations. Both branches are then side branches,
        named by their tips, and the log is its common prefix, the same on every replica that
        knows the fork. Envelopes already integrated into pycrdt stay there (they are excluded
        from the view and from every digest)."""
        ids = self.logs.get(log)
        fork = self.forks[log]
        if ids is None or len(ids) < fork:
            return
        removed = ids[fork - 1 :]
        del ids[fork - 1 :]
        if not ids:
            del self.logs[log]
        keys: list[tuple[int, bytes, int]] = []
        client = client_id(log.author, log.epoch)
        for env_id in removed:
            record = self.records[env_id]
            record.side = True
            self._side.add(env_id)
            for claim in record.claims:
                seq = self.item_keys.pop(client, claim.id)
                if seq is not None:
                    keys.append((client, claim.id, seq))
        if self._batch is not None:
            self._truncated.append((log, removed, keys))

    def chain(self, log: LogId, size: int, head: bytes) -> list[bytes] | None:
        """The ids of ``log`` from seq 1 to ``size``, ending at ``head``, followed down the prev
        links (on the log or off it: a log cut at a fork after an attestation named it still
        holds that chain); None if this replica does not hold it whole."""
        ids = self.logs.get(log, [])
        if len(ids) >= size and (size == 0 or ids[size - 1] == head):
            return ids[:size]
        out: list[bytes] = []
        at = head
        for seq in range(size, 0, -1):
            record = self.records.get(at)
            if record is None or record.envelope.log != log or record.envelope.seq != seq:
                return None
            out.append(at)
            at = record.envelope.prev
        out.reverse()
        return out

    def _integrate_all(self, records: list[EnvelopeRecord]) -> None:
        """:meth:`_integrate` each of ``records`` in order, in one pycrdt transaction while
        none fails."""
        while records:
            try:
                self.replica.integrate_many([self._payload(r) for r in records])
            except IntegrationFailed as exc:
                self._integrate_failed(records[exc.at])
                records = records[exc.at + 1 :]
            else:
                return

    def _integrate(self, record: EnvelopeRecord) -> None:
        try:
            self.replica.integrate(self._payload(record))
        except IntegrationFailed:
            self._integrate_failed(record)

    def _integrate_failed(self, record: EnvelopeRecord) -> None:
        # Deterministic (same pycrdt, same bytes): every replica excludes it alike.
        record.failed = True
        self.generation += 1
        self.upheavals += 1
        self._sync_exclusions()
        self._rebuild_replica()

    def _sync_exclusions(self) -> None:
        """Tell membership which carriers are excluded whatever the membership state is
        (equivocation, pycrdt refusal): operations they carry are void."""
        failed = frozenset(
            (r.envelope.author, r.envelope.epoch, r.envelope.seq)
            for r in self.records.values()
            if r.failed
        )
        self.membership.set_exclusions(self.forks, failed)

    def _rebuild_replica(self) -> None:
        """A panic may have poisoned the document: rebuild it from every main-branch envelope
        that integrated cleanly, in log order (the grammar makes integration order-free)."""
        self.replica = Replica(self.replica.doc.client_id)
        for log in sorted(self.logs):
            for env_id in self.logs[log]:
                record = self.records[env_id]
                if not record.failed:
                    self.replica.integrate(self._payload(record))

    # -- buffers ------------------------------------------------------------------------------

    def _buffer_causal(self, prepared: _Prepared, missing: tuple[bytes, ...]) -> Outcome:
        env = prepared.envelope
        size = len(env.raw)
        full = len(self._causal) >= self.limits.causal_buffer_max or (
            self._causal_bytes + size > self.limits.causal_buffer_bytes_max
        )
        admitted = self.membership.ever_admitted(env.author)
        if not self._replaying:
            why = None
            if full:
                why = "causal buffer full"
            elif self._causal_by_author.get(env.author, 0) >= self.limits.causal_per_author_max:
                why = f"author {short_id(env.author)} holds its share of the causal buffer"
            elif not admitted and self._causal_unadmitted >= self.limits.causal_unadmitted_max:
                why = "authors not yet admitted hold their share of the causal buffer"
            if why is not None:
                return self._reject(env.id, Rejected(Reason.CAUSAL_BUFFER_FULL, why))
        self._causal[env.id] = prepared
        self._causal_bytes += size
        self._causal_by_author[env.author] = self._causal_by_author.get(env.author, 0) + 1
        if not admitted:
            self._causal_unadmitted += 1
            self._unadmitted_ids.add(env.id)
        for dep in missing:
            self._waiting_on.setdefault(dep, set()).add(env.id)
        return Outcome(Status.WAITING_CAUSAL, env.id, missing=missing)

    def _buffer_pending(self, prepared: _Prepared) -> Outcome:
        env = prepared.envelope
        size = len(env.raw)
        full = len(self._pending) >= self.limits.pending_buffer_max or (
            self._pending_bytes + size > self.limits.pending_buffer_bytes_max
        )
        if full:
            return self._reject(
                env.id, Rejected(Reason.PENDING_BUFFER_FULL, "pending-member buffer full")
            )
        self._pending[env.id] = prepared
        self._pending_bytes += size
        return Outcome(Status.WAITING_MEMBER, env.id)

    def _release_all(self, first: _Prepared, rejected: list[Outcome]) -> list[bytes]:
        """Admit everything that was waiting, transitively, on ``first``: envelopes whose last
        missing dep it was, and after an admit, envelopes waiting for their author's admission.
        A work list, not recursion: a long chain delivered backwards must not blow the stack."""
        admitted: list[bytes] = []
        work = [first]
        while work:
            done = work.pop()
            ready = sorted(self._waiting_on.pop(done.envelope.id, ()))
            if done.ops:
                ready.extend(
                    sorted(
                        i
                        for i, p in self._pending.items()
                        if self.membership.ever_admitted(p.envelope.author)
                    )
                )
            for waiting_id in ready:  # in id order (the final state does not depend on it)
                prepared = self._take_waiting(waiting_id)
                if prepared is None:
                    continue
                outcome = self._admit_ready(prepared)
                if outcome.status is Status.INTEGRATED:
                    admitted.append(waiting_id)
                    work.append(prepared)
                elif outcome.status is Status.REJECTED:
                    rejected.append(outcome)
        return admitted

    def _past_cutoff(self, env: Envelope) -> bool:
        member = self.membership.state.get(env.author)
        cutoff = None if member is None else member.node_cutoff
        return cutoff is not None and (env.epoch, env.seq) > cutoff

    def _drop_revoked_waiting(self) -> None:
        """A revocation arrived: envelopes waiting for their causal past past their author's
        new cutoff can only be excluded, and their past may exist only on the revoked node,
        which no member talks to. Drop them rather than wait (and ask) for ever."""
        self.drop_waiting(i for i, p in self._causal.items() if self._past_cutoff(p.envelope))

    def drop_waiting(self, env_ids: Iterable[bytes]) -> list[bytes]:
        """Forget envelopes waiting in the causal buffer (the caller gave up on their past,
        e.g. deps no peer could supply); the ones dropped. Nothing was stored: if their past
        turns up, sync fetches them again like any envelope a peer holds."""
        doomed = sorted(i for i in set(env_ids) if i in self._causal)
        if not doomed:
            return []
        for env_id in doomed:
            self._unbuffer(self._causal[env_id])
        gone = set(doomed)
        for dep in sorted(self._waiting_on):
            waiters = self._waiting_on[dep] - gone
            if waiters:
                self._waiting_on[dep] = waiters
            else:
                del self._waiting_on[dep]
        return doomed

    def _unbuffer(self, prepared: _Prepared) -> None:
        waiting_id = prepared.envelope.id
        del self._causal[waiting_id]
        self._causal_bytes -= len(prepared.envelope.raw)
        author = prepared.envelope.author
        self._causal_by_author[author] -= 1
        if not self._causal_by_author[author]:
            del self._causal_by_author[author]
        if waiting_id in self._unadmitted_ids:
            self._unadmitted_ids.discard(waiting_id)
            self._causal_unadmitted -= 1

    def _take_waiting(self, waiting_id: bytes) -> _Prepared | None:
        """Remove a buffered envelope that is now ready; None if it still waits or is gone."""
        prepared = self._causal.get(waiting_id)
        if prepared is not None:
            still = self._missing_for(prepared)
            if still:
                # Index it again under what it still lacks: a failed commit may have undone a
                # dep whose waiting list was already taken, and nothing else would release it.
                for dep in still:
                    self._waiting_on.setdefault(dep, set()).add(waiting_id)
                return None
            self._unbuffer(prepared)
            return prepared
        prepared = self._pending.pop(waiting_id, None)
        if prepared is not None:
            self._pending_bytes -= len(prepared.envelope.raw)
        return prepared

    def missing_below(self, ids: Iterable[bytes]) -> list[bytes]:
        """What sync must fetch for envelopes to wait no more on ``ids`` (the deps a waiting
        envelope lacks): each id not held and not buffered, and for an id that itself waits in
        the causal buffer, what it lacks in turn. Sorted; bounded by the causal buffer."""
        found: set[bytes] = set()
        seen: set[bytes] = set()
        stack = sorted(set(ids), reverse=True)
        while stack:
            env_id = stack.pop()
            if env_id in seen or env_id in self.records:
                continue
            seen.add(env_id)
            waiting = self._causal.get(env_id)
            if waiting is not None:
                stack.extend(waiting.needs)
            elif env_id not in self._pending:
                found.add(env_id)
        return sorted(found)

    def holds(self, env_id: bytes) -> bool:
        """Whether the envelope is integrated or waits in a buffer here (nothing to fetch)."""
        return env_id in self.records or env_id in self._causal or env_id in self._pending

    def missing(self) -> list[bytes]:
        """Every id some buffered envelope waits for and nobody holds: what sync should fetch."""
        return sorted(d for d in self._waiting_on if not self.holds(d))

    @property
    def buffered(self) -> dict[str, int]:
        return {
            "causal": len(self._causal),
            "causal_bytes": self._causal_bytes,
            "pending_member": len(self._pending),
            "pending_member_bytes": self._pending_bytes,
        }

    def _reject(self, env_id: bytes | None, exc: Rejected) -> Outcome:
        self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
        return Outcome(Status.REJECTED, env_id, exc.reason, exc.detail)

    # -- local writes -------------------------------------------------------------------------

    def write_local(
        self, node_key: SigningKey, claims: Sequence[Claim], *, hlc: int, epoch: int = 1
    ) -> Envelope:
        """Build, sign, commit and integrate one envelope of this node's claims; return it once
        durable and integrated (the acknowledgement point). Many claims in one call share one
        envelope and one commit (group commit). If the commit fails, nothing changed and the
        seq is not used: the next write takes it.

        The claims are trusted (this node built or already verified them), so they are not
        verified again; everything else goes through the same path as a remote envelope.
        """
        log = LogId(node_key.public_key, epoch)
        refusal = self.forked_log_refusal(log)
        if refusal is not None:
            raise LocalError(refusal)
        ids = self.logs.get(log, [])
        head = self.records[ids[-1]] if ids else None
        start = head.clock_end if head is not None else 0
        client = client_id(log.author, epoch)
        raws = [c.raw for c in claims]  # once: each is a slice when asked
        pairs = [(c.id, raw) for c, raw in zip(claims, raws, strict=True)]
        payload, offsets = encode_update_at(client, start, pairs)
        env = seal(
            node_key,
            mesh_id=self.mesh_id,
            epoch=epoch,
            seq=len(ids) + 1,
            prev=ids[-1] if ids else ZERO_ID,
            deps=self._deps_for(log),
            hlc=hlc,
            claims_root=merkle_root([c.id for c in claims]),
            payload=payload,
            limits=self.limits.envelope,
        )
        items = [
            GrammarItem(start + i, item_key(client, c.id), c.id, raw, at)
            for i, (c, raw, at) in enumerate(zip(claims, raws, offsets, strict=True))
        ]
        # The record keeps the claims' bytes where the envelope holds them, not twice.
        for claim, at in zip(claims, offsets, strict=True):
            claim.move_into(env.raw, env.payload_start + at)
        held = tuple(claims)
        with self._batching():
            outcome = self._route(_Prepared(env, items, held, _membership_ops(held)))
        if outcome.status is Status.WAITING_MEMBER:
            self._pending.pop(env.id, None)
            self._pending_bytes -= len(env.raw)
            raise NotAMember(f"node {short_id(node_key.public_key)} is not admitted to this mesh")
        if outcome.status is not Status.INTEGRATED:
            raise LocalError(f"local envelope not admitted: {outcome.reason}: {outcome.detail}")
        return env

    def forked_log_refusal(self, log: LogId) -> str | None:
        """Why a node may not write to its own ``log`` any more: another process wrote with
        its key, so the log equivocates and is excluded from the fork on (None: it may)."""
        fork = self.forks.get(log)
        if fork is None:
            return None
        return (
            f"this node's log equivocates from seq {fork} (another process wrote with its key): "
            "it takes no more writes; start this node with a new key or epoch"
        )

    def _deps_for(self, log: LogId) -> list[bytes]:
        """The DAG heads this node has integrated (its own log's head is its prev), the newest
        first by causal rank, at most deps_max."""
        own = set(self.logs.get(log, [])[-1:])
        heads = [h for h in self.dag_heads if h not in own]
        heads.sort(key=lambda h: (-self.records[h].rank, h))
        return heads[: self.limits.envelope.deps_max]

    # -- the live set -------------------------------------------------------------------------

    def exclusion(self, record: EnvelopeRecord) -> Reason | None:
        """Why a stored envelope is excluded, or None when it is live. A pure function of the
        envelopes known: the same on every replica that holds the same set."""
        env = record.envelope
        if record.failed:
            return Reason.INTEGRATION_FAILED
        fork = self.forks.get(env.log)
        if fork is not None and env.seq >= fork:
            return Reason.EQUIVOCATION
        return self.membership.node_status(env.author, env.epoch, env.seq)

    def claim_exclusion(self, record: EnvelopeRecord, claim: Claim) -> Reason | None:
        return self.exclusion(record) or self.membership.agent_status(claim.agent, claim.aseq)

    def live_claims(self) -> list[Claim]:
        """Every live claim, sorted by claim id.

        Kept from one call to the next (:class:`_LiveSet`): when nothing but new envelopes
        arrived since, only those are looked at and merged in; any change that can take a
        claim out of the live set bumps :attr:`generation` (records are never removed without
        it), and then everything is looked at again. A node's ``/v1/state`` asks for this on
        every call: from scratch it cost 77 ms at 100,000 claims, 205 ms with the digest."""
        return list(self._live_set().claims)

    def _live_set(self) -> _LiveSet:
        memo = self._live
        count, generation = len(self.records), self.generation
        if memo is None or memo.generation != generation or memo.records > count:
            memo = self._live = _LiveSet(generation, 0)
        if memo.records < count:
            fresh = itertools.islice(reversed(self.records.values()), count - memo.records)
            memo.add(self._live_in(fresh))
            memo.records = count
        return memo

    def _live_in(self, records: Iterable[EnvelopeRecord]) -> list[Claim]:
        agent_status = self.membership.agent_status
        return [
            claim
            for record in records
            if self.exclusion(record) is None
            for claim in record.claims
            if agent_status(claim.agent, claim.aseq) is None
        ]

    def claims_digest(self) -> bytes:
        return self._live_set().digest_of()

    def admit_chain(self, key: bytes) -> list[bytes]:
        """The admit claims' bytes from ``key`` back to a genesis admin, for a handshake to
        present (see :func:`memmesh.membership.verify_admit_chain`)."""
        by_id = {c.id: c for r in self.records.values() for c in r.claims if c.type == ADMIT}
        return [by_id[claim_id].raw for claim_id in self.membership.admit_chain(key)]

    def side_tips(self) -> list[bytes]:
        """The tips of the branches kept off their logs (equivocations): side envelopes that
        no other side envelope names as prev, sorted. With the frontier, they name every
        envelope this replica holds."""
        side = [self.records[i].envelope for i in self._side]
        below = {env.prev for env in side}
        return sorted(env.id for env in side if env.id not in below)

    def frontier(self) -> list[tuple[LogId, Head]]:
        """The main-branch head of every log, sorted by log id."""
        logs, heads = self.logs, self._heads
        order = self._log_order
        if len(order) != len(logs) or not all(log in logs for log in order):
            self._log_order = order = sorted(logs)
            if len(heads) > 2 * len(logs):  # forget dropped logs now and then
                heads.clear()
        out: list[tuple[LogId, Head]] = []
        for log in order:
            ids = logs[log]
            head = heads.get(log)
            if head is None or head[0] != len(ids) or head[1] is not ids[-1]:
                head = heads[log] = Head(len(ids), ids[-1])
            out.append((log, head))
        return out


def _evidence(
    held_id: bytes, held_raw: bytes, second: Envelope
) -> tuple[bytes, tuple[bytes, bytes]]:
    """The evidence of an equivocation: its key and both envelopes' bytes, ordered by id."""
    (a_id, a_raw), (b_id, b_raw) = sorted(((held_id, held_raw), (second.id, second.raw)))
    return EVIDENCE_PREFIX + tagged_hash(EVIDENCE_TAG, a_id + b_id), (a_raw, b_raw)


def _pack_pair(pair: tuple[bytes, bytes]) -> bytes:
    """The stored evidence value: ``u32 len || envelope a || u32 len || envelope b``."""
    w = Writer()
    for raw in pair:
        w.u32(len(raw))
        w.raw(raw)
    return w.getvalue()


def _split_pair(value: bytes) -> tuple[bytes, bytes]:
    r = Reader(value, "evidence")
    first = r.raw(r.u32("length"), "envelope")
    second = r.raw(r.u32("length"), "envelope")
    r.expect_end()
    return first, second


def _replay_batches(items: Iterable[_T], size: Callable[[_T], int]) -> Iterator[list[_T]]:
    """``items`` in order, in lists of at most ``_REPLAY_BATCH`` whose sizes add up to at most
    ``_REPLAY_BATCH_BYTES`` (an item larger than that alone)."""
    batch: list[_T] = []
    total = 0
    for item in items:
        grown = size(item)
        if batch and (len(batch) == _REPLAY_BATCH or total + grown > _REPLAY_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += grown
    if batch:
        yield batch
