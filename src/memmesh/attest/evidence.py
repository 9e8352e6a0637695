"""Split-view evidence: two signed statements of one signer that cannot both be honest.

A signer chains its attestations (seq, and ``prev`` = the previous id) and its log trees only
grow, so it cannot show one history to some and another to others without two of its own
signatures contradicting each other. One exception keeps honest signers out of it: a log found
to equivocate is cut back to its prefix below the fork (every replica holding the same
envelopes then names the same log), and the envelopes cut off become evidence; so a later
statement whose log is shorter, or gone, is no contradiction when it lists the earlier head as
evidence (``cut_at_fork``). Its bundle holds the two envelopes of the fork.

:func:`split_view` decides, from two DSSE envelopes alone (plus, optionally, a
:class:`Divergence`), whether they are such evidence, and why:

- ``same_seq``: one seq, two different statements;
- ``broken_chain``: consecutive seqs whose later ``prev`` is not the earlier id;
- ``hlc_regressed``: the later seq carries an earlier HLC (a backdated attestation);
- ``log_dropped:<log>``: a log of the earlier statement is missing from the later one, and the
  later one does not list the earlier head as evidence;
- ``log_shrank:<log>``: a log has fewer envelopes later, and the later statement does not list
  the earlier head as evidence;
- ``log_rewritten:<log>``: a log has the same size later but another root or head;
- ``evidence_dropped:<id>``: equivocation evidence listed earlier is gone later;
- ``log_diverged:<log>``: a :class:`Divergence` shows two different envelope ids at one position
  of a log, each proven by an inclusion proof against one statement's root; with this, a later
  log that grew but is not an extension of the earlier one is caught too (anyone holding both
  logs' envelope ids, e.g. from two bundles, can make one with :func:`divergence_proof`).

Statements not both validly signed by the signer they name, or of different signers or meshes,
are not evidence of anything: :class:`EvidenceError` (codes ``malformed``, ``unsigned``,
``different_signer``, ``different_mesh``).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from ..ids import LogId
from ..merkle import MerkleTree, leaf_hash, verify_inclusion
from .dsse import PAYLOAD_TYPE, decode_dsse
from .errors import AttestationError, DsseError, StatementError
from .statement import LogEntry, Statement, decode_statement, log_label

__all__ = [
    "Divergence",
    "EvidenceError",
    "SplitView",
    "cut_at_fork",
    "divergence_proof",
    "split_view",
]


class EvidenceError(AttestationError):
    """The two inputs cannot be compared as statements of one signer."""


@dataclass(frozen=True, slots=True)
class SplitView:
    reason: str
    detail: str
    earlier: Statement
    later: Statement


@dataclass(frozen=True, slots=True)
class Divergence:
    """Two different leaves at one index of one log, each proven under one statement's root."""

    log: LogId
    index: int
    earlier_leaf: bytes
    earlier_path: tuple[bytes, ...]
    later_leaf: bytes
    later_path: tuple[bytes, ...]


def divergence_proof(
    earlier: Statement,
    later: Statement,
    log: LogId,
    earlier_ids: Sequence[bytes],
    later_ids: Sequence[bytes],
) -> Divergence | None:
    """The first position where the two logs' envelope ids differ within the earlier size, as
    a :class:`Divergence`; None if the earlier log is a prefix of the later one."""
    first, second = earlier.entry(log), later.entry(log)
    if first is None or second is None:
        return None
    size1, size2 = first.size, min(second.size, len(later_ids))
    for index in range(min(size1, size2)):
        if earlier_ids[index] != later_ids[index]:
            return Divergence(
                log,
                index,
                earlier_ids[index],
                tuple(MerkleTree(earlier_ids[:size1]).inclusion_proof(index)),
                later_ids[index],
                tuple(MerkleTree(later_ids[: second.size]).inclusion_proof(index)),
            )
    return None


def _open(dsse: bytes) -> Statement:
    try:
        envelope = decode_dsse(dsse)
        if envelope.payload_type != PAYLOAD_TYPE:
            raise EvidenceError("malformed", "not an attestation")
        statement = decode_statement(envelope.payload)
    except (DsseError, StatementError) as exc:
        raise EvidenceError("malformed", str(exc)) from None
    own = envelope.signature_by(statement.signer)
    if own is None or not envelope.valid(own):
        raise EvidenceError("unsigned", "not signed by the signer the statement names")
    return statement


def split_view(
    first: bytes, second: bytes, *, divergence: Divergence | None = None
) -> SplitView | None:
    """Whether two signed attestations (DSSE JSON) are split-view evidence; None if not."""
    a, b = _open(first), _open(second)
    if a.signer != b.signer:
        raise EvidenceError("different_signer", "statements of two signers")
    if a.mesh_id != b.mesh_id:
        raise EvidenceError("different_mesh", "statements of two meshes")
    earlier, later = (a, b) if (a.seq, a.id) <= (b.seq, b.id) else (b, a)
    if earlier.seq == later.seq:
        if earlier.id == later.id:
            return None
        return SplitView("same_seq", f"two statements with seq {earlier.seq}", earlier, later)
    reason = _contradiction(earlier, later, divergence)
    return None if reason is None else SplitView(reason[0], reason[1], earlier, later)


def _contradiction(
    earlier: Statement, later: Statement, divergence: Divergence | None
) -> tuple[str, str] | None:
    if later.seq == earlier.seq + 1 and later.prev != earlier.id:
        return "broken_chain", f"seq {later.seq} does not name seq {earlier.seq} as prev"
    if later.hlc < earlier.hlc:
        return "hlc_regressed", f"seq {later.seq} is dated before seq {earlier.seq}"
    kept = set(later.evidence)
    for entry in earlier.logs:
        label = log_label(entry.log)
        after = later.entry(entry.log)
        if cut_at_fork(entry, after, kept):
            continue
        if after is None:
            return f"log_dropped:{label}", "the later statement lacks the log"
        if after.size < entry.size:
            return f"log_shrank:{label}", f"{entry.size} envelopes, later {after.size}"
        if after.size == entry.size and (after.root, after.head) != (entry.root, entry.head):
            return f"log_rewritten:{label}", "same size, another root or head"
    for env_id in earlier.evidence:
        if env_id not in kept:
            return f"evidence_dropped:{env_id.hex()}", "equivocation evidence was dropped"
    if divergence is not None and _diverged(earlier, later, divergence):
        return f"log_diverged:{log_label(divergence.log)}", f"position {divergence.index}"
    return None


def cut_at_fork(entry: LogEntry, after: LogEntry | None, later_evidence: Set[bytes]) -> bool:
    """A log that is shorter (or gone) in a later statement because it was found to
    equivocate: cut back below the fork, its earlier head is now listed as evidence."""
    shorter = after is None or after.size < entry.size
    return shorter and entry.head in later_evidence


def _diverged(earlier: Statement, later: Statement, d: Divergence) -> bool:
    first, second = earlier.entry(d.log), later.entry(d.log)
    if first is None or second is None or d.earlier_leaf == d.later_leaf:
        return False
    return verify_inclusion(
        leaf_hash(d.earlier_leaf), d.index, first.size, d.earlier_path, first.root
    ) and verify_inclusion(leaf_hash(d.later_leaf), d.index, second.size, d.later_path, second.root)
