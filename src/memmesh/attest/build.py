"""Building statements from an :class:`~memmesh.admission.Admission` and its
:class:`~memmesh.memory.view.View`, from scratch or incrementally.

**Log trees.** One RFC 6962 tree per log over the ids of the envelopes *on* that log, in seq
order (``Admission.logs``); envelopes kept off their log as equivocation evidence are not in any
tree (their ids are listed in the statement's ``evidence``). The leaf is the 32-byte envelope id.

**Top tree.** Over the log entries sorted by (author, epoch), leaf
:func:`~memmesh.attest.statement.log_leaf` = ``author || epoch u64 || size u64 || root``.

**Claims digest.** Exactly :meth:`Admission.claims_digest`: the tagged hash of the sorted ids of
the live claims.

**Resolution digest.** For each subject of the view, a leaf
``tagged_hash(b"resolution-subject/v1", canonical_json([namespace, key, live ids, value claim
id or null, decision or null]))``, where the value claim is the claim whose value the subject
shows (:meth:`Subject.value_entry`: the single live claim, the policy's winner, or what a
``resolution`` names) and the decision is :meth:`Decision.to_json` (rule, policy version, code
version, candidates and explanation). The digest is ``tagged_hash(b"resolution-digest/v1",
concatenation of the leaves sorted bytewise)``. Every leaf names its subject, so the sorted
concatenation is unambiguous, and sorting by leaf lets the builder replace only the leaves of
changed subjects. It is a function of the view alone: the same envelopes and the same rule code
give the same digest on every node. It covers resolved state only; which stored claims are
excluded or invalid shows through the live sets (and the claims digest).

``policies`` lists each ``(rule name, code version)`` that decided some subject's conflict
(the ``impl_version`` of its decision; 0 when the rule is not installed and the conflict escalated
as ``unknown_rule``). A verifier recomputes the resolution digest only when it has the same
versions of those rules.

**Incremental building.** :class:`AttestationBuilder` keeps, between attestations, one
:class:`~memmesh.merkle.MerkleTree` per log (appending only the new envelope ids), the sorted
list of live claim ids (adding only the claims of new envelopes while
``Admission.generation`` is unchanged; otherwise it asks admission again), and one leaf per
subject (recomputed only for subjects whose live set or decision object changed). So a new
attestation after 1,000 claims at 100,000 costs a few thousand hashes, one pass over the
subjects, and hashing the two sorted id lists. :func:`build_statement` computes the same
statement from nothing; a test checks that both agree.

The view passed in must be current: it must have applied every envelope the admission holds
(as a node keeps its view), or the resolution digest describes an older state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..admission import Admission, claims_digest
from ..canonical import JsonValue, canonical_bytes
from ..crypto import SigningKey
from ..ids import ZERO_ID, LogId, tagged_hash
from ..memory.view import Subject, SubjectKey, View
from ..merkle import MerkleTree, leaf_hash, merkle_root
from ..policy import Decision
from .dsse import sign_statement
from .statement import Counts, LogEntry, PolicyVersion, Statement, top_root_of

__all__ = [
    "RESOLUTION_DIGEST_TAG",
    "RESOLUTION_SUBJECT_TAG",
    "AttestationBuilder",
    "Resolution",
    "build_statement",
    "resolution_of",
    "subject_leaf",
]

RESOLUTION_SUBJECT_TAG = b"resolution-subject/v1"
RESOLUTION_DIGEST_TAG = b"resolution-digest/v1"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a statement says about the view."""

    digest: bytes
    policies: tuple[PolicyVersion, ...]
    subjects: int
    conflicts_open: int


def subject_leaf(key: SubjectKey, subject: Subject) -> bytes:
    """The resolution digest's leaf for one subject (see the module doc)."""
    value = subject.value_entry()
    decision = subject.decision
    doc: list[JsonValue] = [
        list(key[0]),
        key[1],
        [claim_id.hex() for claim_id in subject.live],
        None if value is None else value.claim.id.hex(),
        None if decision is None else decision.to_json(),
    ]
    return tagged_hash(RESOLUTION_SUBJECT_TAG, canonical_bytes(doc))


def _policy_of(decision: Decision | None) -> tuple[str, int] | None:
    if decision is None:
        return None
    impl = decision.explanation.get("impl_version")
    return decision.rule, impl if type(impl) is int else 0


def _is_open(decision: Decision | None) -> bool:
    return decision is not None and decision.status != "resolved"


def _digest(leaves: Iterable[bytes]) -> bytes:
    return tagged_hash(RESOLUTION_DIGEST_TAG, b"".join(leaves))


def _policies(uses: dict[tuple[str, int], int]) -> tuple[PolicyVersion, ...]:
    return tuple(PolicyVersion(name, version) for (name, version), n in sorted(uses.items()) if n)


def resolution_of(view: View) -> Resolution:
    """The resolution digest, policies and subject counts of ``view``, from nothing."""
    leaves: list[bytes] = []
    uses: dict[tuple[str, int], int] = {}
    open_count = 0
    for key, subject in view.subjects.items():
        leaves.append(subject_leaf(key, subject))
        policy = _policy_of(subject.decision)
        if policy is not None:
            uses[policy] = uses.get(policy, 0) + 1
        open_count += _is_open(subject.decision)
    leaves.sort()
    return Resolution(_digest(leaves), _policies(uses), len(view.subjects), open_count)


def build_statement(
    admission: Admission, view: View, *, signer: bytes, seq: int, prev: bytes, hlc: int
) -> Statement:
    """The statement of everything ``admission`` holds, computed from nothing."""
    logs = tuple(
        LogEntry(log.author, log.epoch, head.seq, head.id, merkle_root(admission.logs[log]))
        for log, head in admission.frontier()
    )
    records = admission.records
    evidence = tuple(sorted(env_id for env_id, r in records.items() if r.side))
    resolution = resolution_of(view)
    counts = Counts(
        envelopes=len(records),
        claims=sum(len(r.claims) for r in records.values()),
        live_claims=len(admission.live_claims()),
        subjects=resolution.subjects,
        conflicts_open=resolution.conflicts_open,
    )
    return Statement(
        mesh_id=admission.mesh_id,
        signer=signer,
        seq=seq,
        prev=prev,
        hlc=hlc,
        logs=logs,
        evidence=evidence,
        top_root=top_root_of(logs),
        claims_digest=admission.claims_digest(),
        resolution_digest=resolution.digest,
        policies=resolution.policies,
        counts=counts,
    )


@dataclass(slots=True)
class _SubjectState:
    live: tuple[bytes, ...]
    decision: Decision | None
    leaf: bytes
    policy: tuple[str, int] | None
    open: bool


class _ResolutionCache:
    """Per-subject leaves, recomputed only for subjects whose live set or decision changed.

    The view replaces a subject's ``live`` tuple and ``decision`` whenever it recomputes the
    subject, and both are immutable, so an unchanged object identity means unchanged content.
    """

    def __init__(self) -> None:
        self._view: View | None = None
        self._reset()

    def _reset(self) -> None:
        self._states: dict[SubjectKey, _SubjectState] = {}
        self._leaves: list[bytes] = []
        self._uses: dict[tuple[str, int], int] = {}
        self._open = 0

    def update(self, view: View) -> Resolution:
        if view is not self._view:
            self._reset()
            self._view = view
        removed: set[bytes] = set()
        added: list[bytes] = []
        for key, subject in view.subjects.items():
            state = self._states.get(key)
            if (
                state is not None
                and state.live is subject.live
                and state.decision is subject.decision
            ):
                continue
            if state is not None:
                removed.add(state.leaf)
                self._count(state, -1)
            fresh = _SubjectState(
                subject.live,
                subject.decision,
                subject_leaf(key, subject),
                _policy_of(subject.decision),
                _is_open(subject.decision),
            )
            self._states[key] = fresh
            self._count(fresh, +1)
            added.append(fresh.leaf)
        if removed:
            self._leaves = [leaf for leaf in self._leaves if leaf not in removed]
        if added:
            self._leaves.extend(added)
            self._leaves.sort()  # a sorted run and a short tail: timsort merges them
        return Resolution(
            _digest(self._leaves), _policies(self._uses), len(self._states), self._open
        )

    def _count(self, state: _SubjectState, step: int) -> None:
        if state.policy is not None:
            self._uses[state.policy] = self._uses.get(state.policy, 0) + step
        self._open += step * state.open


class _LiveCache:
    """The sorted live claim ids, the evidence ids and the claims count, kept up to date.

    While ``Admission.generation`` is unchanged no stored envelope changes state (membership
    operations, forks, refused integrations and undone batches all move it), so only the claims
    of envelopes appended to a log since the last update are judged. Otherwise, or when an
    envelope was kept off its log, everything is taken from admission again.
    """

    def __init__(self) -> None:
        self._admission: Admission | None = None
        self._generation = -1
        self._sizes: dict[LogId, int] = {}
        self._ids: list[bytes] = []
        self._known: set[bytes] = set()
        self._evidence: tuple[bytes, ...] = ()
        self._claims = 0

    def update(self, admission: Admission) -> None:
        records = admission.records
        on_logs = sum(len(ids) for ids in admission.logs.values())
        stale = (
            admission is not self._admission
            or admission.generation != self._generation
            or len(records) != on_logs + len(self._evidence)
            or any(self._sizes.get(log, 0) > len(ids) for log, ids in admission.logs.items())
        )
        if stale:
            self._rebuild(admission)
            return
        fresh: list[bytes] = []
        for log, ids in admission.logs.items():
            done = self._sizes.get(log, 0)
            for env_id in ids[done:]:
                record = records[env_id]
                self._claims += len(record.claims)
                if admission.exclusion(record) is not None:
                    continue
                for claim in record.claims:
                    if claim.id in self._known:
                        continue
                    if admission.membership.agent_status(claim.agent, claim.aseq) is None:
                        self._known.add(claim.id)
                        fresh.append(claim.id)
            self._sizes[log] = len(ids)
        if fresh:
            self._ids.extend(fresh)
            self._ids.sort()

    def _rebuild(self, admission: Admission) -> None:
        records = admission.records
        self._admission = admission
        self._generation = admission.generation
        self._ids = [claim.id for claim in admission.live_claims()]
        self._known = set(self._ids)
        self._evidence = tuple(sorted(env_id for env_id, r in records.items() if r.side))
        self._claims = sum(len(r.claims) for r in records.values())
        self._sizes = {log: len(ids) for log, ids in admission.logs.items()}

    @property
    def digest(self) -> bytes:
        return claims_digest(self._ids)  # already sorted: the sort inside is one linear pass

    @property
    def live(self) -> int:
        return len(self._ids)

    @property
    def evidence(self) -> tuple[bytes, ...]:
        return self._evidence

    @property
    def claims(self) -> int:
        return self._claims


class AttestationBuilder:
    """Makes statements of one admission, reusing what the last one computed (module doc)."""

    def __init__(self, admission: Admission, view: View) -> None:
        if view.admission is not admission:
            raise ValueError("the view must be the view of this admission")
        self.admission = admission
        self.view = view
        self._trees: dict[LogId, MerkleTree] = {}
        self._live = _LiveCache()
        self._resolution = _ResolutionCache()

    def tree(self, log: LogId) -> MerkleTree:
        """The log's tree as of the last statement (it answers proofs for any earlier size)."""
        return self._trees[log]

    def refresh_trees(self) -> None:
        """Bring every log tree up to what the admission holds (a statement does it too), so
        proofs can be made for any statement of this admission, the newest included."""
        self._update_trees()

    def _update_trees(self) -> None:
        for log, ids in self.admission.logs.items():
            tree = self._trees.get(log)
            if (
                tree is None
                or tree.size > len(ids)
                or (tree.size and tree.leaf_hash(tree.size - 1) != leaf_hash(ids[tree.size - 1]))
            ):
                tree = self._trees[log] = MerkleTree()
            for env_id in ids[tree.size :]:
                tree.append(env_id)

    def statement(self, *, signer: bytes, seq: int, prev: bytes, hlc: int) -> Statement:
        """The statement of everything the admission holds now."""
        admission = self.admission
        self._update_trees()
        self._live.update(admission)
        resolution = self._resolution.update(self.view)
        logs = tuple(
            LogEntry(log.author, log.epoch, head.seq, head.id, self._trees[log].root())
            for log, head in admission.frontier()
        )
        counts = Counts(
            envelopes=sum(e.size for e in logs) + len(self._live.evidence),
            claims=self._live.claims,
            live_claims=self._live.live,
            subjects=resolution.subjects,
            conflicts_open=resolution.conflicts_open,
        )
        return Statement(
            mesh_id=admission.mesh_id,
            signer=signer,
            seq=seq,
            prev=prev,
            hlc=hlc,
            logs=logs,
            evidence=self._live.evidence,
            top_root=top_root_of(logs),
            claims_digest=self._live.digest,
            resolution_digest=resolution.digest,
            policies=resolution.policies,
            counts=counts,
        )

    def next_statement(self, *, signer: bytes, hlc: int, previous: Statement | None) -> Statement:
        """The signer's next statement after ``previous`` (None: its first, seq 1)."""
        if previous is None:
            return self.statement(signer=signer, seq=1, prev=ZERO_ID, hlc=hlc)
        if previous.signer != signer or previous.mesh_id != self.admission.mesh_id:
            raise ValueError("the previous statement is not this signer's in this mesh")
        if hlc < previous.hlc:
            raise ValueError("an attestation's hlc must not go back past the previous one's")
        return self.statement(signer=signer, seq=previous.seq + 1, prev=previous.id, hlc=hlc)

    def attest(
        self, key: SigningKey, *, hlc: int, previous: Statement | None
    ) -> tuple[Statement, bytes]:
        """The next statement, and its DSSE JSON signed by ``key``."""
        statement = self.next_statement(signer=key.public_key, hlc=hlc, previous=previous)
        return statement, sign_statement(statement, key)
