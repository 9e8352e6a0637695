"""Claim inclusion proofs, and consistency between two statements of one signer.

**Claim proof.** A claim is shown to be in an attestation by the chain
claim id -> the envelope's claims root -> the envelope id in its log tree -> the log's entry in
the top tree, checked against the statement alone (:func:`verify_proof`).

The link from claims root to envelope id needs the bytes the id hashes. An envelope's id is
``tagged_hash(b"envelope-id/v1", body)`` over the whole body, and the payload (the Yjs update
carrying every claim of the envelope) comes *after* the claims root in the body, so no shorter
piece of it determines the id: SHA-256 can be resumed from a prefix, not from a suffix. The proof
therefore carries the envelope body (the envelope without its 64-byte signature), bounded by the
envelope size limit (1 MiB). The body holds the claim's own bytes, so a proof also delivers the
claim itself: :func:`verify_proof` returns them. Size: the body plus 32 bytes per level of the
three trees plus 14 bytes of framing. For an envelope carrying one claim (a typical agent write)
in a log of 100,000 envelopes that is about 1.5 KB; an envelope carrying many claims (group
commit) makes its proofs as large as the envelope. (Proofs of O(log n) regardless would need the
envelope header to commit to a hash of the payload, a change to the envelope format.)

Layout (integers unsigned big-endian)::

    magic "MMPF" | version u8 (=1) | claim_index u32
    | body_len u32 | body
    | n u8 | n * 32 claims-tree path | n u8 | n * 32 log-tree path | n u8 | n * 32 top-tree path

The log, the seq (leaf index seq - 1), the claims count and the log's tree size and root all come
from the body and the statement, so they are not repeated. Paths are deepest sibling first (RFC
9162). :func:`decode_proof` is strict: at most :data:`PATH_MAX` hashes per path, a body within
the envelope limit, nothing trailing. Codes of :class:`ProofError`: ``too_large``, ``truncated``,
``trailing_bytes``, ``bad_magic``, ``bad_version``, ``length_exceeds_limit``,
``count_exceeds_limit`` (framing); ``bad_envelope``, ``wrong_mesh``, ``bad_payload``,
``bad_index``, ``claims_root``, ``unknown_log``, ``beyond_frontier``, ``log_root``, ``top_root``,
``other_claim`` (verification).

Inclusion shows the claim was carried in the attested logs, not that it is live: liveness is
the claims digest's business.

**Statement consistency.** A newer statement of a signer must extend its older one: each log tree
of the older is a prefix of the newer's (an RFC 9162 consistency proof per log), no evidence is
dropped, seq grows and, for consecutive seqs, ``prev`` is the older one's id.
:func:`prove_consistency` makes the proofs from an :class:`AttestationBuilder`'s trees;
:func:`check_consistency` checks them against the two statements alone. Layout::

    magic "MMCS" | version u8 (=1) | count u32 | count * (author 32 | epoch u32 | n u8 | n * 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..claims import CLAIM_ID_TAG
from ..crypto import SIGNATURE_BYTES
from ..envelope import Envelope, EnvelopeLimits, decode_envelope
from ..errors import Rejected
from ..ids import HASH_BYTES, ZERO_ID, LogId, tagged_hash
from ..merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from ..wire import Reader, Writer
from ..ydecode import client_id, decode_update
from .build import AttestationBuilder
from .errors import ConsistencyError, ProofError
from .evidence import cut_at_fork
from .statement import LOGS_MAX, LogEntry, Statement, log_label, log_leaf
from .verify import Failure

__all__ = [
    "CONSISTENCY_MAGIC",
    "PATH_MAX",
    "PROOF_BYTES_MAX",
    "PROOF_MAGIC",
    "ClaimProof",
    "LogConsistency",
    "ProvenClaim",
    "StatementConsistency",
    "check_consistency",
    "decode_consistency",
    "decode_proof",
    "proof_for",
    "prove_claim",
    "prove_consistency",
    "verify_proof",
]

PROOF_MAGIC = b"MMPF"
CONSISTENCY_MAGIC = b"MMCS"
PROOF_VERSION = 1
PATH_MAX = 64
_ENVELOPE_BYTES_MAX = EnvelopeLimits().envelope_bytes_max
PROOF_BYTES_MAX = 4 + 1 + 4 + 4 + _ENVELOPE_BYTES_MAX + 3 * (1 + PATH_MAX * HASH_BYTES)
CONSISTENCY_BYTES_MAX = 4 + 1 + 4 + LOGS_MAX * (HASH_BYTES + 4 + 1 + PATH_MAX * HASH_BYTES)


@dataclass(frozen=True, slots=True)
class ClaimProof:
    claim_index: int
    body: bytes
    claims_path: tuple[bytes, ...]
    log_path: tuple[bytes, ...]
    top_path: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        w = Writer()
        w.raw(PROOF_MAGIC)
        w.u8(PROOF_VERSION)
        w.u32(self.claim_index)
        w.u32(len(self.body))
        w.raw(self.body)
        for path in (self.claims_path, self.log_path, self.top_path):
            _write_path(w, path)
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class ProvenClaim:
    """What a verified proof establishes."""

    claim_id: bytes
    claim: bytes
    """The claim's bytes, taken from the envelope's payload."""
    envelope_id: bytes
    log: LogId
    seq: int


def _write_path(w: Writer, path: Sequence[bytes]) -> None:
    assert len(path) <= PATH_MAX and all(len(h) == HASH_BYTES for h in path)
    w.u8(len(path))
    for node in path:
        w.raw(node)


def _read_path(r: Reader, what: str) -> tuple[bytes, ...]:
    count = r.u8(f"{what} length")
    if count > PATH_MAX:
        raise ProofError("count_exceeds_limit", f"{what} of {count} hashes exceeds {PATH_MAX}")
    return tuple(r.raw(HASH_BYTES, what) for _ in range(count))


def decode_proof(data: bytes) -> ClaimProof:
    """Decode a claim proof's framing strictly; ``ProofError`` if it is anything else."""
    data = bytes(data)
    if len(data) > PROOF_BYTES_MAX:
        raise ProofError("too_large", f"proof of {len(data)} bytes exceeds {PROOF_BYTES_MAX}")
    r = Reader(data, "claim proof")
    try:
        if r.raw(len(PROOF_MAGIC), "magic") != PROOF_MAGIC:
            raise ProofError("bad_magic", "not a memmesh claim proof")
        version = r.u8("version")
        if version != PROOF_VERSION:
            raise ProofError("bad_version", f"proof version {version}")
        claim_index = r.u32("claim_index")
        body_len = r.u32("body_len")
        if body_len > _ENVELOPE_BYTES_MAX:
            raise ProofError("length_exceeds_limit", f"body of {body_len} bytes")
        body = r.raw(body_len, "body")
        paths = [_read_path(r, what) for what in ("claims path", "log path", "top path")]
        r.expect_end()
    except Rejected as exc:
        raise ProofError(exc.reason.value, exc.detail) from None
    return ClaimProof(claim_index, body, paths[0], paths[1], paths[2])


def proof_for(
    envelope: Envelope, claim_index: int, log_tree: MerkleTree, statement: Statement
) -> ClaimProof:
    """The proof of the ``claim_index``-th claim of ``envelope``, whose log's tree is
    ``log_tree`` (holding at least the statement's size of that log)."""
    entry = statement.entry(envelope.log)
    index = statement.index_of(envelope.log)
    if entry is None or index is None or envelope.seq > entry.size:
        raise ValueError("the envelope is not in the statement's logs")
    if log_tree.size < entry.size or log_tree.root(entry.size) != entry.root:
        raise ValueError("the log tree does not match the statement")
    items = decode_update(
        envelope.payload, client=client_id(envelope.author, envelope.epoch), start_clock=None
    )
    claims = MerkleTree(item.claim_id for item in items)
    top = MerkleTree(log_leaf(e) for e in statement.logs)
    return ClaimProof(
        claim_index=claim_index,
        body=envelope.body,
        claims_path=tuple(claims.inclusion_proof(claim_index)),
        log_path=tuple(log_tree.inclusion_proof(envelope.seq - 1, entry.size)),
        top_path=tuple(top.inclusion_proof(index)),
    )


def prove_claim(builder: AttestationBuilder, statement: Statement, claim_id: bytes) -> ClaimProof:
    """The proof that ``claim_id`` is in ``statement``, which ``builder`` made (or one of whose
    logs it still holds); ``LookupError`` if no attested envelope carries the claim.

    A log the statement attests may since have been cut back below a fork found later (its
    envelopes from the fork on are side envelopes now): the proof is then made over the
    attested chain, followed down its prev links, as the statement saw it."""
    admission = builder.admission
    for entry in statement.logs:
        ids = admission.logs.get(entry.log, [])
        if len(ids) >= entry.size and ids[entry.size - 1] == entry.head:  # the log as attested
            seq = admission.item_keys.get(client_id(entry.author, entry.epoch), claim_id)
            if seq is None or seq > entry.size:
                continue
            record = admission.records[ids[seq - 1]]
            position = next(i for i, c in enumerate(record.claims) if c.id == claim_id)
            envelope = admission.envelope(ids[seq - 1])
            return proof_for(envelope, position, builder.tree(entry.log), statement)
        proof = _prove_in_cut_log(builder, statement, entry, claim_id)
        if proof is not None:
            return proof
    raise LookupError(f"no attested envelope carries claim {claim_id.hex()}")


def _prove_in_cut_log(
    builder: AttestationBuilder, statement: Statement, entry: LogEntry, claim_id: bytes
) -> ClaimProof | None:
    """The proof over the chain ``statement`` attests in ``entry``, which is no longer its
    log's main branch here; None if the claim is not on that chain (``LookupError`` if the
    chain is not held whole)."""
    admission = builder.admission
    chain = admission.chain(entry.log, entry.size, entry.head)
    if chain is None:
        raise LookupError(f"the attested chain of log {log_label(entry.log)} is not held whole")
    for env_id in chain:
        record = admission.records[env_id]
        for position, claim in enumerate(record.claims):
            if claim.id == claim_id:
                envelope = admission.envelope(env_id)
                return proof_for(envelope, position, MerkleTree(chain), statement)
    return None


def verify_proof(
    statement: Statement, proof: bytes | ClaimProof, *, claim: bytes | None = None
) -> ProvenClaim:
    """Check a claim proof against ``statement`` alone; ``ProofError`` with a code if it fails.

    ``claim``, when given, is the claim expected (its bytes, or its 32-byte id).
    """
    parsed = decode_proof(proof) if isinstance(proof, bytes) else proof
    try:
        # The signature is not part of the id and not carried: a zero one lets the structural
        # decoder read the body (nothing here checks it).
        env = decode_envelope(parsed.body + bytes(SIGNATURE_BYTES))
    except Rejected as exc:
        raise ProofError("bad_envelope", str(exc)) from None
    if env.mesh_id != statement.mesh_id:
        raise ProofError("wrong_mesh", "the envelope belongs to another mesh")
    try:
        items = decode_update(
            env.payload, client=client_id(env.author, env.epoch), start_clock=None
        )
    except Rejected as exc:
        raise ProofError("bad_payload", str(exc)) from None
    if parsed.claim_index >= len(items):
        raise ProofError("bad_index", f"claim {parsed.claim_index} of {len(items)}")
    item = items[parsed.claim_index]
    if not verify_inclusion(
        leaf_hash(item.claim_id),
        parsed.claim_index,
        len(items),
        parsed.claims_path,
        env.claims_root,
    ):
        raise ProofError("claims_root", "the claim is not under the envelope's claims root")
    entry = statement.entry(env.log)
    index = statement.index_of(env.log)
    if entry is None or index is None:
        raise ProofError("unknown_log", f"log {log_label(env.log)} is not attested")
    if env.seq > entry.size:
        raise ProofError("beyond_frontier", f"seq {env.seq} is past the attested {entry.size}")
    if not verify_inclusion(
        leaf_hash(env.id), env.seq - 1, entry.size, parsed.log_path, entry.root
    ):
        raise ProofError("log_root", "the envelope is not in the attested log tree")
    if not verify_inclusion(
        leaf_hash(log_leaf(entry)), index, len(statement.logs), parsed.top_path, statement.top_root
    ):
        raise ProofError("top_root", "the log entry is not under the top root")
    if claim is not None:
        expected = claim if len(claim) == HASH_BYTES else tagged_hash(CLAIM_ID_TAG, claim)
        if expected != item.claim_id:
            raise ProofError("other_claim", "the proof is for another claim")
    return ProvenClaim(item.claim_id, item.value, env.id, env.log, env.seq)


# -- consistency between two statements ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogConsistency:
    author: bytes
    epoch: int
    path: tuple[bytes, ...]

    @property
    def log(self) -> LogId:
        return LogId(self.author, self.epoch)


@dataclass(frozen=True, slots=True)
class StatementConsistency:
    """One consistency proof per log of the older statement, sorted by log."""

    logs: tuple[LogConsistency, ...]

    def to_bytes(self) -> bytes:
        w = Writer()
        w.raw(CONSISTENCY_MAGIC)
        w.u8(PROOF_VERSION)
        w.u32(len(self.logs))
        for item in self.logs:
            w.raw(item.author)
            w.u32(item.epoch)
            _write_path(w, item.path)
        return w.getvalue()

    def path(self, log: LogId) -> tuple[bytes, ...] | None:
        for item in self.logs:
            if item.log == log:
                return item.path
        return None


def decode_consistency(data: bytes) -> StatementConsistency:
    data = bytes(data)
    if len(data) > CONSISTENCY_BYTES_MAX:
        raise ConsistencyError("too_large", f"{len(data)} bytes")
    r = Reader(data, "consistency proof")
    try:
        if r.raw(len(CONSISTENCY_MAGIC), "magic") != CONSISTENCY_MAGIC:
            raise ConsistencyError("bad_magic", "not a memmesh consistency proof")
        version = r.u8("version")
        if version != PROOF_VERSION:
            raise ConsistencyError("bad_version", f"version {version}")
        count = r.u32("count")
        if count > LOGS_MAX or count * (HASH_BYTES + 5) > r.remaining:
            raise ConsistencyError("count_exceeds_limit", f"{count} logs")
        logs: list[LogConsistency] = []
        for _ in range(count):
            author = r.raw(HASH_BYTES, "author")
            epoch = r.u32("epoch")
            length = r.u8("path length")
            if length > PATH_MAX:
                raise ConsistencyError("count_exceeds_limit", f"path of {length} hashes")
            path = tuple(r.raw(HASH_BYTES, "path") for _ in range(length))
            item = LogConsistency(author, epoch, path)
            if logs and logs[-1].log >= item.log:
                raise ConsistencyError("not_sorted", "logs must be sorted without duplicates")
            logs.append(item)
        r.expect_end()
    except Rejected as exc:
        raise ConsistencyError(exc.reason.value, exc.detail) from None
    return StatementConsistency(tuple(logs))


def prove_consistency(
    builder: AttestationBuilder, older: Statement, newer: Statement
) -> StatementConsistency:
    """Consistency proofs from each log of ``older`` to the same log in ``newer``, from the
    builder's trees (which must hold both states: a builder's trees only grow, but for a log cut
    back at a fork, which has no proof: :func:`cut_at_fork`)."""
    out: list[LogConsistency] = []
    evidence = set(newer.evidence)
    for entry in older.logs:
        later = newer.entry(entry.log)
        if cut_at_fork(entry, later, evidence):
            continue  # cut back at a fork found since: nothing grew, nothing to prove
        if later is None or later.size < entry.size:
            raise ValueError(f"log {entry.log} does not grow from the older statement")
        tree = builder.tree(entry.log)
        out.append(
            LogConsistency(
                entry.author, entry.epoch, tuple(tree.consistency_proof(entry.size, later.size))
            )
        )
    return StatementConsistency(tuple(out))


def check_consistency(
    older: Statement, newer: Statement, proof: bytes | StatementConsistency
) -> list[Failure]:
    """Failures (empty when consistent) of ``newer`` as an extension of ``older``.

    Codes: ``mesh``, ``signer``, ``seq`` (not later), ``chain`` (consecutive seqs whose ``prev``
    is not the older id), ``hlc`` (time went back), ``log_missing:<log>``,
    ``log_shrank:<log>``, ``log_consistency:<log>`` (no valid proof that the older tree is a
    prefix), ``evidence_dropped:<id>``, ``malformed:consistency``. A log cut back at a fork
    (shorter or gone, its older head now listed as evidence: :func:`cut_at_fork`) is no
    failure.
    """
    failures: list[Failure] = []
    if older.mesh_id != newer.mesh_id:
        failures.append(Failure("mesh", "the statements are of different meshes"))
    if older.signer != newer.signer:
        failures.append(Failure("signer", "the statements have different signers"))
    if newer.seq <= older.seq:
        failures.append(Failure("seq", f"seq {newer.seq} does not follow {older.seq}"))
    elif newer.seq == older.seq + 1 and newer.prev != older.id:
        failures.append(Failure("chain", "prev is not the older statement's id"))
    if newer.seq == 1 and newer.prev != ZERO_ID:
        failures.append(Failure("chain", "seq 1 names a previous attestation"))
    if newer.hlc < older.hlc:
        failures.append(Failure("hlc", "the newer statement's hlc is earlier"))
    try:
        parsed = decode_consistency(proof) if isinstance(proof, bytes) else proof
    except ConsistencyError as exc:
        return [*failures, Failure("malformed:consistency", str(exc))]
    evidence = set(newer.evidence)
    for entry in older.logs:
        label = log_label(entry.log)
        later = newer.entry(entry.log)
        if cut_at_fork(entry, later, evidence):
            continue
        if later is None:
            failures.append(Failure(f"log_missing:{label}", "the newer statement lacks the log"))
            continue
        if later.size < entry.size:
            failures.append(Failure(f"log_shrank:{label}", f"{entry.size} -> {later.size}"))
            continue
        path = parsed.path(entry.log)
        same_head = later.size != entry.size or later.head == entry.head
        if (
            path is None
            or not same_head
            or not verify_consistency(entry.size, later.size, entry.root, later.root, path)
        ):
            failures.append(Failure(f"log_consistency:{label}", "the older tree is no prefix"))
    failures.extend(
        Failure(f"evidence_dropped:{env_id.hex()}", "evidence the older statement listed")
        for env_id in older.evidence
        if env_id not in evidence
    )
    return failures
