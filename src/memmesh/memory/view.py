"""The view: per subject, its claims, the live ones, the resolved value and the conflict state.

It is derived from admission's stored envelopes and kept up to date incrementally: the caller
hands it the envelopes each integration added (:meth:`View.apply`), and it touches only their
subjects. When admission's ``generation`` moved (a membership operation, a fork, a refused
integration), which claims are excluded may have changed anywhere, so every claim's status is
checked again and the subjects that changed are recomputed. :meth:`View.build` makes a view
from nothing; a test checks after every step that both give the same :meth:`View.snapshot`.

**Live claims** of a subject are its valid, non-excluded claims that no other valid,
non-excluded claim of the subject supersedes. One live claim is the value (a ``retraction``
means deleted; a ``resolution`` stands for the winner it names). Two or more are a **conflict**:
the policy chosen for the namespace decides a winner with an explanation, or escalates and no
value wins until a write (a ``resolution``, or any put that saw them) supersedes them.

Conflict records carry when this node first saw the conflict and when it was settled, from the
``now_ms`` the caller passes: local facts, kept out of every snapshot and digest.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..canonical import JsonValue, canonical_bytes
from ..claims import Claim, signature_ok
from ..ids import tagged_hash
from ..membership import Role
from ..policy import Candidate, Context, Decision, PolicyClaim, PolicyTable, Rule, decide
from .causal import precedes
from .types import (
    BUILTIN_TYPES,
    DECISION,
    POLICY,
    POLICY_NAMESPACE,
    RESOLUTION,
    RETRACTION,
    SCHEMA,
    SYSTEM_PREFIX,
    TYPES_NAMESPACE,
    Invalid,
    SchemaCache,
    check_shape,
    parse_schema_value,
    resolution_winner,
)

if TYPE_CHECKING:
    from ..admission import Admission, EnvelopeRecord

__all__ = [
    "Conflict",
    "Entry",
    "NamespaceCursor",
    "NamespacePage",
    "SettleTimes",
    "Subject",
    "SubjectKey",
    "View",
]

SubjectKey = tuple[tuple[str, ...], str]
CONFLICT_ID_TAG = b"conflict-id/v1"
_HISTORIES_KEPT = 16
_ROLE_DEPENDENT = frozenset({POLICY, SCHEMA, RESOLUTION})


@dataclass(slots=True)
class Entry:
    """One stored claim of a subject and why it counts or not."""

    claim: Claim
    envelope_id: bytes
    excluded: str | None
    """Admission's reason (revoked author, equivocation...), or None."""
    invalid: str | None
    """The memory model's reason (:class:`~memmesh.memory.types.Invalid`), or None."""
    detail: str = ""

    @property
    def counts(self) -> bool:
        return self.excluded is None and self.invalid is None


@dataclass(slots=True)
class Conflict:
    id: bytes
    subject: SubjectKey
    candidates: tuple[bytes, ...]
    decision: Decision
    detected_ms: int
    resolved_ms: int | None = None
    """When the policy settled it (at detection for an automatic rule) or a write superseded
    the candidates."""
    settled_by: str = ""
    """``policy``, or ``write`` (a resolution or an update that saw the candidates)."""


class SettleTimes:
    """How long each settled conflict took to settle (ms from detection to settling), sorted,
    kept as conflicts settle and reopen: the operating signals read their count, median and
    histogram from here, where walking every conflict the node ever saw made each ``/metrics``
    scrape and ``/v1/state`` linear in the mesh's history."""

    __slots__ = ("_sorted", "total_ms")

    def __init__(self) -> None:
        self._sorted: list[int] = []
        self.total_ms = 0

    def add(self, ms: int) -> None:
        insort(self._sorted, ms)
        self.total_ms += ms

    def remove(self, ms: int) -> None:
        at = bisect_left(self._sorted, ms)
        if at == len(self._sorted) or self._sorted[at] != ms:
            raise ValueError(f"no settle time of {ms} ms to remove")
        del self._sorted[at]
        self.total_ms -= ms

    def __len__(self) -> int:
        return len(self._sorted)

    def __iter__(self) -> Iterator[int]:
        return iter(self._sorted)

    def median(self) -> int | None:
        """The upper median (the middle one of an odd count), None when none settled."""
        return self._sorted[len(self._sorted) // 2] if self._sorted else None

    def at_most(self, seconds: float) -> int:
        """How many took at most ``seconds`` (``ms / 1000 <= seconds``, as a histogram's
        bucket counts them)."""
        limit = math.floor(seconds * 1000)
        while (limit + 1) / 1000 <= seconds:  # the float product may land one below or above
            limit += 1
        while limit / 1000 > seconds:
            limit -= 1
        return bisect_right(self._sorted, limit)


class Entries:
    """A subject's entries by claim id, in the order they came (each keyed by its own claim's
    id). Most subjects hold one claim, and a one-entry ``dict`` costs 224 bytes: the first entry
    is held alone (about 17 MB less per 100,000 subjects), a dict only from the second on."""

    __slots__ = ("_many", "_one")

    def __init__(self) -> None:
        self._one: Entry | None = None
        self._many: dict[bytes, Entry] | None = None

    def __setitem__(self, claim_id: bytes, entry: Entry) -> None:
        if entry.claim.id != claim_id:
            raise ValueError("an entry is keyed by its own claim's id")
        if self._many is not None:
            self._many[claim_id] = entry
        elif self._one is None or self._one.claim.id == claim_id:
            self._one = entry
        else:
            self._many = {self._one.claim.id: self._one, claim_id: entry}
            self._one = None

    def get(self, claim_id: bytes) -> Entry | None:
        if self._many is not None:
            return self._many.get(claim_id)
        one = self._one
        return one if one is not None and one.claim.id == claim_id else None

    def __getitem__(self, claim_id: bytes) -> Entry:
        entry = self.get(claim_id)
        if entry is None:
            raise KeyError(claim_id)
        return entry

    def __contains__(self, claim_id: object) -> bool:
        return isinstance(claim_id, bytes) and self.get(claim_id) is not None

    def __len__(self) -> int:
        if self._many is not None:
            return len(self._many)
        return 0 if self._one is None else 1

    def values(self) -> list[Entry]:
        if self._many is not None:
            return list(self._many.values())
        return [] if self._one is None else [self._one]

    def last(self, count: int) -> list[Entry]:
        """The ``count`` entries that came last, in the order they came."""
        if count <= 0:
            return []
        if self._many is not None:
            return list(itertools.islice(reversed(self._many.values()), count))[::-1]
        return [] if self._one is None else [self._one]

    def __iter__(self) -> Iterator[bytes]:
        return iter([entry.claim.id for entry in self.values()])

    def __eq__(self, other: object) -> bool:
        """Equal as the ``dict`` it stands for (whatever the order)."""
        if not isinstance(other, Entries):
            return NotImplemented
        return {e.claim.id: e for e in self.values()} == {e.claim.id: e for e in other.values()}

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict


@dataclass(slots=True, eq=False)
class Subject(Entries):
    """A subject: its entries (:attr:`entries`, the subject itself: an ``Entries`` object of
    its own cost each subject 48 bytes more, 4.8 MB per 100,000 subjects), what is live
    among them, and what the view decided."""

    key: SubjectKey
    live: tuple[bytes, ...] = ()
    decision: Decision | None = None
    conflict: bytes | None = None
    """The id of the conflict the live claims form now, if they do."""
    shown: bool = False
    """:attr:`present` as of the last recompute (what the view's per-namespace count holds)."""

    def __post_init__(self) -> None:
        Entries.__init__(self)

    @property
    def entries(self) -> Entries:
        """The subject's entries by claim id, in the order they came."""
        return self

    def __bool__(self) -> bool:
        return True  # a subject, even one with no entries yet (``Entries`` is falsy when empty)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subject):
            return NotImplemented
        mine = (self.key, self.live, self.decision, self.conflict, self.shown)
        theirs = (other.key, other.live, other.decision, other.conflict, other.shown)
        return mine == theirs and Entries.__eq__(self, other) is True

    __hash__ = None  # mutable, as its entries

    def value_entry(self) -> Entry | None:
        """The entry whose value the subject shows, or None (absent, or an open conflict)."""
        if len(self.live) == 1:
            chosen: bytes | None = self.live[0]
        elif self.decision is not None and self.decision.status == "resolved":
            chosen = self.decision.winner
        else:
            return None
        entry = self.entries.get(chosen) if chosen is not None else None
        winner = resolution_winner(entry.claim) if entry is not None else None
        if winner is not None:
            entry = self.entries.get(winner)
        return entry

    @property
    def present(self) -> bool:
        """Something to show: a value that is not a retraction, or a conflict (whose candidates
        may include one). A subject whose shown claim is a retraction is deleted."""
        if not self.live:
            return False
        if self.conflict is not None:
            return True
        entry = self.value_entry()
        return entry is not None and entry.claim.type != RETRACTION


@dataclass(slots=True)
class ViewCounts:
    """Running counts for the operating signals (content claims only, not ``_mesh`` ones)."""

    entries: int = 0
    with_provenance: int = 0
    """Entries naming a ``source``, ``derived_from`` or ``based_on`` (every claim has an author,
    a signature and an HLC timestamp by construction)."""
    decisions: int = 0
    decisions_traceable: int = 0
    """``decision`` claims citing a receipt or attestation in ``based_on``."""

    def add(self, claim: Claim) -> None:
        if claim.namespace[:1] == (SYSTEM_PREFIX,):
            return
        self.entries += 1
        if claim.source is not None or claim.derived_from or claim.based_on:
            self.with_provenance += 1
        if claim.type == DECISION:
            self.decisions += 1
            if claim.based_on:
                self.decisions_traceable += 1


_Ordered = TypeVar("_Ordered", tuple[tuple[str, ...], str], tuple[int, bytes])


class SortedSet(Generic[_Ordered]):
    """A set read in sorted order: kept sorted while items arrive in order, as conflicts do by
    detection time, and sorted again on the next read only after one arrived out of order.
    Sorting on every read cost a metrics scrape 30 ms at 50,000 conflicts; inserting each
    in place would cost a view built from a long history one list move per item."""

    __slots__ = ("_items", "_sorted")

    def __init__(self) -> None:
        self._items: set[_Ordered] = set()
        self._sorted: list[_Ordered] | None = []

    def add(self, item: _Ordered) -> None:
        if item in self._items:
            return
        self._items.add(item)
        order = self._sorted
        if order is not None:
            if not order or order[-1] < item:
                order.append(item)
            else:
                self._sorted = None

    def discard(self, item: _Ordered) -> None:
        if item not in self._items:
            return
        self._items.remove(item)
        order = self._sorted
        if order is not None:
            del order[bisect_left(order, item)]

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def ordered(self) -> list[_Ordered]:
        """Every item, sorted (the list is the index's own: do not change it)."""
        if self._sorted is None:
            self._sorted = sorted(self._items)
        return self._sorted


@dataclass(frozen=True, slots=True)
class NamespaceCursor:
    """Where a namespace page stopped: the namespace the next page reads first, and how many
    more cuts it skips first (what is left of an ``offset``)."""

    start: tuple[str, ...]
    offset: int = 0


@dataclass(frozen=True, slots=True)
class NamespacePage:
    found: list[tuple[str, ...]]
    next: NamespaceCursor | None
    """None: nothing under the prefix is left past this page."""
    scanned: int


class View:
    """The memory view over one :class:`~memmesh.admission.Admission`."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.subjects: dict[SubjectKey, Subject] = {}
        self.namespaces: dict[tuple[str, ...], list[str]] = {}
        """Each namespace's keys, sorted."""
        self._present: dict[tuple[str, ...], int] = {}
        """Each namespace's subjects that are :attr:`Subject.present`, counted as subjects are
        recomputed, so listing namespaces never walks the keys of one whose subjects were all
        deleted."""
        self._namespace_order: list[tuple[str, ...]] = []
        """Every namespace of :attr:`namespaces`, sorted: a prefix is one contiguous run. Both
        are kept in order as subjects appear (a view never forgets one), so a read under a
        prefix neither sorts nor walks the other namespaces: sorting them at every search
        stalled a node of 70,000 namespaces for 440 ms a read."""
        self.conflicts: dict[bytes, Conflict] = {}
        self._histories: OrderedDict[SubjectKey, list[Entry]] = OrderedDict()
        """The histories last asked for, sorted (:meth:`history`). A subject's entries only
        grow, in the order they came, so a kept history that grew sorts only the new ones:
        sorting a history of 20,000 claims for each page of it took 11 ms."""
        self._conflicted: SortedSet[SubjectKey] = SortedSet()
        """The subjects whose ``conflict`` is set, so listing the open ones reads only them."""
        self._unsettled: set[SubjectKey] = set()
        """Those of them whose conflict no policy settles: what the signals count."""
        self._detected: SortedSet[tuple[int, bytes]] = SortedSet()
        """(``detected_ms``, id) of every conflict in :attr:`conflicts`."""
        self.settle_times = SettleTimes()
        """Of every conflict in :attr:`conflicts` that is settled (``resolved_ms`` set)."""
        self._located: dict[bytes, SubjectKey] = {}
        """Claim id -> its subject, for every claim in the view."""
        self._seen: set[bytes] = set()
        """Envelope ids applied."""
        self._generation = admission.generation
        self._upheavals = admission.upheavals
        self._members_seen = dict(admission.membership.state)
        """The membership at the last recheck: the keys whose state moved since are the only
        authors and agents whose claims a membership operation can change."""
        self._claims_by_agent: dict[bytes, list[bytes]] = {}
        self._schemas = SchemaCache()
        self._table: PolicyTable | None = None
        self.counts = ViewCounts()
        self.newly_excluded: list[bytes] = []
        """Claims that counted and are now excluded (a revocation or a fork arrived), for the
        caller to drain: a read that returned one was poisoned."""

    @classmethod
    def build(cls, admission: Admission, now_ms: int = 0) -> View:
        """A view of everything stored, from nothing (in causal order)."""
        view = cls(admission)
        records = admission.records
        order = sorted(records, key=lambda i: (records[i].rank, i))
        view.apply(order, now_ms)
        return view

    # -- updates ------------------------------------------------------------------------------

    def apply(self, envelope_ids: Iterable[bytes], now_ms: int) -> set[SubjectKey]:
        """Take in newly integrated envelopes; return the subjects that changed."""
        added: dict[SubjectKey, int] = {}
        """Per subject, how many entries this call added: its last ones, as entries keep the
        order they came in (the only change to it, unless ``full``). A count, not a list of
        them: a view built at start adds every claim in one call, and 100,000 short lists
        freed at its end left about 10 MB of the interpreter's memory in holes between the
        objects that stay."""
        records = self.admission.records
        fresh = [i for i in envelope_ids if i not in self._seen and i in records]
        fresh.sort(key=lambda i: (records[i].rank, i))  # causal order: targets before claims
        policies_changed = False
        for env_id in fresh:
            self._seen.add(env_id)
            record = records[env_id]
            for claim in record.claims:
                subject = claim.subject
                entry = self._entry(record, claim)
                held = self.subjects.get(subject)
                if held is None:
                    held = self.subjects[subject] = Subject(key=subject)
                held.entries[claim.id] = entry
                self.counts.add(claim)
                self._located[claim.id] = held.key  # one key tuple per subject, not per claim
                self._index(claim.namespace, claim.key)
                added[subject] = added.get(subject, 0) + 1
                self._claims_by_agent.setdefault(claim.agent, []).append(claim.id)
                policies_changed |= claim.type == POLICY
        full: set[SubjectKey] = set()
        """Subjects whose older entries may count otherwise now: their live set is worked
        out from every entry again."""
        if self.admission.generation != self._generation:
            self._generation = self.admission.generation
            full |= self._recheck_changed()
            policies_changed = True
        if policies_changed:
            self._table = None
            full |= {k for k, s in self.subjects.items() if len(s.live) > 1}
        lives = {
            key: _live_of(self.subjects[key].entries.values())
            if key in full
            else _live_after(self.subjects[key].live, self.subjects[key].entries.last(added[key]))
            for key in sorted(full | added.keys())
        }
        # Every live set first, then the decisions: deciding reads the policy table, built
        # from the policy subjects' live sets, so a conflict that sorts before them (one in
        # ``_mesh.members``: two admits of one key) was decided, and the table kept, with
        # the policies of before this call. A view built in one call (at every start)
        # decided every conflict by the default rules and disagreed with running replicas.
        for key, live in lives.items():
            self.subjects[key].live = live
        present = self._present
        for key in lives:
            now = self.subjects[key]
            self._recompute(key, now_ms)
            if now.present != now.shown:
                now.shown = not now.shown
                present[key[0]] = present.get(key[0], 0) + (1 if now.shown else -1)
        return set(lives)

    def _index(self, namespace: tuple[str, ...], key: str) -> None:
        keys = self.namespaces.get(namespace)
        if keys is None:
            keys = self.namespaces[namespace] = []
            insort(self._namespace_order, namespace)
        at = bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            keys.insert(at, key)

    def _entry(self, record: EnvelopeRecord, claim: Claim) -> Entry:
        excluded = self.admission.claim_exclusion(record, claim)
        invalid, detail = self._validity(record, claim)
        return Entry(
            claim,
            record.envelope.id,
            None if excluded is None else str(excluded),
            invalid,
            detail,
        )

    def _role(self, agent: bytes) -> Role | None:
        member = self.admission.membership.state.get(agent)
        return None if member is None else member.role

    def _validity(self, record: EnvelopeRecord, claim: Claim) -> tuple[str | None, str]:
        return self._judge(claim, record.envelope.id) or (None, "")

    def check_new(self, claim: Claim) -> tuple[str, str] | None:
        """Why a claim this node is about to write would not count, or None. Everything stored
        is in the causal past of the next local envelope, so the rules are the replicated ones
        with that past: a local writer gets the error a peer would mark."""
        return self._judge(claim, None)

    def _judge(self, claim: Claim, env_id: bytes | None) -> tuple[str, str] | None:
        """(reason, detail) when ``claim``, carried by ``env_id``, does not count; ``env_id``
        None judges a claim about to be written, whose causal past is everything stored."""
        shape = check_shape(claim, self._role(claim.agent))
        if shape is not None:
            return str(shape), ""
        for target in claim.supersedes:
            located = self._located.get(target)
            if located is None:
                return str(Invalid.SUPERSEDES_UNSEEN), target.hex()
            if located != claim.subject:
                return str(Invalid.SUPERSEDES_OTHER_SUBJECT), target.hex()
            target_env = self.subjects[located].entries[target].envelope_id
            if env_id is not None and not precedes(self.admission, target_env, env_id):
                return str(Invalid.SUPERSEDES_UNSEEN), target.hex()
        if claim.type not in BUILTIN_TYPES:
            registration = self._registration(claim.type, env_id)
            if registration is None:
                return str(Invalid.UNKNOWN_TYPE), claim.type
            violation = self._schemas.violation(registration, claim.value)
            if violation is not None:
                return str(Invalid.SCHEMA_VIOLATION), violation
        return None

    def _registration(self, type_name: str, env_id: bytes | None) -> Claim | None:
        """The registration of ``type_name`` with the highest version, then the smallest claim
        id, among the valid, non-excluded ones in the causal past of ``env_id`` (None: all)."""
        subject = self.subjects.get((TYPES_NAMESPACE, type_name))
        if subject is None:
            return None
        best: tuple[int, bytes] | None = None
        chosen: Claim | None = None
        for claim_id in sorted(subject.entries):
            entry = subject.entries[claim_id]
            if not entry.counts or entry.claim.type != SCHEMA:
                continue
            if env_id is not None and not precedes(self.admission, entry.envelope_id, env_id):
                continue
            parsed = parse_schema_value(entry.claim.key, entry.claim.value)
            assert parsed is not None  # check_shape let it in
            rank = (-parsed[0], claim_id)
            if best is None or rank < best:
                best, chosen = rank, entry.claim
        return chosen

    def _recheck_changed(self) -> set[SubjectKey]:
        """The admission's generation moved: recheck the claims whose exclusion or validity
        may have changed. When only membership operations moved it (the usual case: an agent
        or node admitted or revoked), those are the claims of the keys whose membership state
        differs from the last recheck, as agents or as the authors of the envelopes carrying
        them: a claim's exclusion reads only its agent's and its envelope author's state, its
        log's fork and its envelope's integration, and the validity rechecked reads its
        agent's role. Anything else (a fork, a refused integration, a rollback) rechecks every
        claim: admitting one agent cost a view of 50,000 claims 124 ms that way."""
        members = self.admission.membership.state
        seen, self._members_seen = self._members_seen, dict(members)
        upheavals, self._upheavals = self._upheavals, self.admission.upheavals
        if upheavals != self.admission.upheavals:
            return self._recheck(
                entry
                for key in sorted(self.subjects)
                for entry in self.subjects[key].entries.values()
            )
        moved = sorted(k for k in seen.keys() | members.keys() if seen.get(k) != members.get(k))
        if not moved:
            return set()
        records, authors = self.admission.records, set(moved)
        ids = [claim_id for key in moved for claim_id in self._claims_by_agent.get(key, ())]
        for log in sorted(self.admission.logs):
            if log.author in authors:
                for env_id in self.admission.logs[log]:
                    ids.extend(claim.id for claim in records[env_id].claims)
        located, subjects = self._located, self.subjects
        return self._recheck(
            subjects[located[claim_id]].entries[claim_id]
            for claim_id in dict.fromkeys(ids)
            if claim_id in located
        )

    def _recheck(self, entries: Iterable[Entry]) -> set[SubjectKey]:
        """Recheck ``entries``' exclusion, and the validity of the types that depend on their
        author's role; the subjects of those that changed."""
        records = self.admission.records
        changed: set[SubjectKey] = set()
        for entry in entries:
            record = records[entry.envelope_id]
            excluded = self.admission.claim_exclusion(record, entry.claim)
            new_excluded = None if excluded is None else str(excluded)
            if entry.claim.type in _ROLE_DEPENDENT:
                invalid, detail = self._validity(record, entry.claim)
            else:
                invalid, detail = entry.invalid, entry.detail
            if entry.excluded is None and new_excluded is not None:
                self.newly_excluded.append(entry.claim.id)
            if (new_excluded, invalid) != (entry.excluded, entry.invalid):
                entry.excluded, entry.invalid, entry.detail = new_excluded, invalid, detail
                changed.add(self._located[entry.claim.id])
        return changed

    def _recompute(self, key: SubjectKey, now_ms: int) -> None:
        """Decide and record the conflict of a subject whose live claims are set."""
        subject = self.subjects[key]
        live = subject.live
        previous = self.conflicts.get(subject.conflict) if subject.conflict else None
        if len(live) < 2:
            subject.decision, subject.conflict = None, None
            self._conflicted.discard(key)
            self._unsettled.discard(key)
            if previous is not None and previous.resolved_ms is None:
                self._settle(previous, now_ms, "write")
            return
        rule, _ = self.rule_for(key[0])
        candidates = [self._candidate(subject.entries[c]) for c in live]
        decision = decide(candidates, rule, Context(key[0], key[1]))
        subject.decision = decision
        conflict_id = conflict_id_of(key, live)
        if previous is not None and previous.id != conflict_id and previous.resolved_ms is None:
            self._settle(previous, now_ms, "write")
        record = self.conflicts.get(conflict_id)
        if record is None:
            record = Conflict(conflict_id, key, live, decision, now_ms)
            self.conflicts[conflict_id] = record
            self._detected.add((now_ms, conflict_id))
        record.decision = decision
        if decision.status == "resolved" and record.resolved_ms is None:
            self._settle(record, now_ms, "policy")
        elif decision.status != "resolved" and record.settled_by == "policy":
            self._reopen(record)  # a policy change reopened it
        subject.conflict = conflict_id
        self._conflicted.add(key)
        if decision.status == "resolved":
            self._unsettled.discard(key)
        else:
            self._unsettled.add(key)

    def _settle(self, record: Conflict, now_ms: int, by: str) -> None:
        record.resolved_ms, record.settled_by = now_ms, by
        self.settle_times.add(now_ms - record.detected_ms)

    def _reopen(self, record: Conflict) -> None:
        assert record.resolved_ms is not None
        self.settle_times.remove(record.resolved_ms - record.detected_ms)
        record.resolved_ms, record.settled_by = None, ""

    def _candidate(self, entry: Entry) -> Candidate:
        return Candidate.from_claim(entry.claim, self._role_name(entry.claim.agent))

    def _role_name(self, agent: bytes) -> str | None:
        role = self._role(agent)
        return None if role is None else str(role)

    # -- policies -----------------------------------------------------------------------------

    def rule_for(self, namespace: tuple[str, ...]) -> tuple[Rule, bytes | None]:
        """The policy rule for a namespace and the policy claim that set it (None: default)."""
        if self._table is None:
            self._table = PolicyTable(self._policies())
        return self._table.select(namespace)

    def _policies(self) -> list[PolicyClaim]:
        """The live policy claims (valid, so by an admin) that parse."""
        found: list[PolicyClaim] = []
        for key in self.namespaces.get(POLICY_NAMESPACE, ()):
            subject = self.subjects[(POLICY_NAMESPACE, key)]
            for claim_id in subject.live:
                try:
                    found.append(PolicyClaim.from_claim(subject.entries[claim_id].claim))
                except ValueError:
                    continue
        return found

    # -- reads --------------------------------------------------------------------------------

    def get(self, namespace: tuple[str, ...], key: str) -> Subject | None:
        return self.subjects.get((namespace, key))

    def list_namespaces(self, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        """Namespaces with at least one subject that has a value or a conflict (deleted ones
        do not count), system ones excluded unless the prefix asks for them; sorted."""
        return list(self._shown_namespaces(prefix))

    def _shown_namespaces(
        self, prefix: tuple[str, ...], start: tuple[str, ...] = ()
    ) -> Iterator[tuple[str, ...]]:
        """:meth:`list_namespaces`, one at a time: the run of namespaces that start with
        ``prefix`` in the sorted index (every tuple that starts with it sorts at or after it,
        and before any tuple past it that does not), from ``start`` on."""
        order, depth = self._namespace_order, len(prefix)
        hide_system = prefix[:1] != (SYSTEM_PREFIX,)
        for i in range(bisect_left(order, max(prefix, start)), len(order)):
            namespace = order[i]
            if namespace[:depth] != prefix:
                return
            if self._shown(namespace, hide_system):
                yield namespace

    def namespace_cuts(
        self,
        prefix: tuple[str, ...] = (),
        *,
        depth: int | None = None,
        suffix: tuple[str, ...] = (),
    ) -> Iterator[tuple[str, ...]]:
        """The shown namespaces under ``prefix`` (:meth:`list_namespaces`) that end with
        ``suffix``, each cut to its first ``depth`` labels, without repeats, sorted; lazily.
        Cuts of sorted namespaces come sorted; once a cut is given, the namespaces under it
        are stepped over by bisection (:meth:`_cut_walk`), so none repeats it, and listing
        the top labels of a mesh reads a few namespaces, not all of them."""
        start = bisect_left(self._namespace_order, prefix)
        return (cut for cut, _ in self._cut_walk(prefix, depth, suffix, start) if cut is not None)

    def namespace_page(
        self,
        prefix: tuple[str, ...] = (),
        *,
        depth: int | None = None,
        suffix: tuple[str, ...] = (),
        start: tuple[str, ...] | None = None,
        offset: int = 0,
        limit: int,
        scan_max: int,
    ) -> NamespacePage:
        """:meth:`namespace_cuts` from the namespace ``start`` on (all of them if None), past
        ``offset`` cuts, reading at most ``scan_max`` namespaces: a listing of a mesh with
        many namespaces, or a suffix that matches few of them, no longer holds the node for
        all of them (and an offset no longer costs what it skips, page after page). The page
        ends when it holds ``limit`` cuts or ``scan_max`` namespaces were read; ``next`` is
        where the following page starts, with what is left of ``offset``, and None only when
        nothing under ``prefix`` is left. Following ``next`` lists what
        :meth:`namespace_cuts` lists while nothing is written."""
        if limit < 1 or scan_max < 1 or offset < 0:
            raise ValueError("a namespace page reads at least one namespace for at least one cut")
        order = self._namespace_order
        lo = bisect_left(order, prefix if start is None else max(prefix, start))
        found: list[tuple[str, ...]] = []
        skipped = scanned = 0
        for cut, resume in self._cut_walk(prefix, depth, suffix, lo):
            scanned += 1
            if cut is not None:
                if skipped < offset:
                    skipped += 1
                else:
                    found.append(cut)
            if len(found) == limit or scanned == scan_max:
                following = order[resume] if resume < len(order) else None
                if following is None or following[: len(prefix)] != prefix:
                    return NamespacePage(found, None, scanned)
                return NamespacePage(found, NamespaceCursor(following, offset - skipped), scanned)
        return NamespacePage(found, None, scanned)

    def _cut_walk(
        self, prefix: tuple[str, ...], depth: int | None, suffix: tuple[str, ...], start: int
    ) -> Iterator[tuple[tuple[str, ...] | None, int]]:
        """Each namespace under ``prefix`` read from index ``start`` of the sorted index: the
        cut it gives (None when it is filtered out), and the index the walk reads next. A cut
        of ``depth`` labels stands for every namespace under it, so those are stepped over:
        none of them can give another cut, and no page can start among them."""
        if depth is not None and depth <= 0:
            return
        order = self._namespace_order
        hide_system = prefix[:1] != (SYSTEM_PREFIX,)
        i = start
        while i < len(order):
            namespace = order[i]
            if namespace[: len(prefix)] != prefix:
                return
            i += 1
            if (suffix and namespace[-len(suffix) :] != suffix) or not self._shown(
                namespace, hide_system
            ):
                yield None, i
                continue
            cut = namespace if depth is None else namespace[:depth]
            if len(cut) == depth:  # step over the rest under this cut
                i = bisect_right(order, cut, lo=i, key=lambda n: n[: len(cut)])
            yield cut, i

    def _present_in(self, namespace: tuple[str, ...]) -> bool:
        return self._present.get(namespace, 0) > 0

    def _shown(self, namespace: tuple[str, ...], hide_system: bool) -> bool:
        """Listed: a subject of it is present, and it is not a system one being hidden."""
        return not (hide_system and namespace[0] == SYSTEM_PREFIX) and self._present_in(namespace)

    def items(
        self, prefix: tuple[str, ...] = (), after: SubjectKey | None = None
    ) -> Iterator[tuple[SubjectKey, Subject]]:
        """Subjects under a namespace prefix, sorted by namespace then key, only those past
        ``after`` if given; lazily, so a search that stops at its limit reads no further. Read
        it whole before the view changes (a subject added meanwhile shifts the indexes)."""
        return ((key, subject) for key, subject in self.scan(prefix, after) if subject is not None)

    def scan(
        self, prefix: tuple[str, ...] = (), after: SubjectKey | None = None
    ) -> Iterator[tuple[SubjectKey, Subject | None]]:
        """:meth:`items`, with one more step for each namespace under ``prefix`` that is not
        shown (every subject deleted, or a system one): its last key and None. A reader that
        bounds its steps (:func:`~memmesh.memory.search.search_page`) counts those too, so a
        prefix of many emptied namespaces cannot hold it for all of them, and the key it
        stopped at, passed back as ``after``, goes on past that namespace."""
        subjects, order, depth = self.subjects, self._namespace_order, len(prefix)
        hide_system = prefix[:1] != (SYSTEM_PREFIX,)
        start = prefix if after is None else max(prefix, after[0])
        for i in range(bisect_left(order, start), len(order)):
            namespace = order[i]
            if namespace[:depth] != prefix:
                return
            keys = self.namespaces[namespace]
            first = bisect_right(keys, after[1]) if after and after[0] == namespace else 0
            if first == len(keys):
                continue
            if not self._shown(namespace, hide_system):
                yield (namespace, keys[-1]), None
                continue
            for j in range(first, len(keys)):
                yield (namespace, keys[j]), subjects[(namespace, keys[j])]

    def subjects_of(
        self, namespace: tuple[str, ...], *, after: str | None = None, limit: int | None = None
    ) -> tuple[list[tuple[str, Subject]], bool]:
        """The subjects of exactly ``namespace`` by key, as :meth:`items` shows them (none
        when none is present), without walking the namespaces under it: at most ``limit`` of
        them, past the key ``after``; and whether more keys follow."""
        if not self._present_in(namespace):
            return [], False
        keys, subjects = self.namespaces[namespace], self.subjects
        start = 0 if after is None else bisect_right(keys, after)
        end = len(keys) if limit is None else min(len(keys), start + limit)
        page = [(keys[i], subjects[(namespace, keys[i])]) for i in range(start, end)]
        return page, end < len(keys)

    def open_conflicts(self) -> list[Conflict]:
        """The conflict of every subject that has one, by subject."""
        return self.conflicts_page("current", None, len(self._conflicted) or 1)[0]

    def unsettled_conflicts(self) -> int:
        """How many subjects have a conflict that no policy settles: read on every metrics
        scrape and state call (sorting the conflicts for it took 30 ms at 50,000)."""
        return len(self._unsettled)

    def conflicts_page(
        self, status: str, after: Conflict | None, limit: int
    ) -> tuple[list[Conflict], bool]:
        """At most ``limit`` conflicts past ``after`` (from the first if None), and whether
        more follow: ``current``, the conflict of every subject that has one, by subject then
        id; ``all``, every conflict, settled ones included, by detection time then id.
        ``after`` need not be listed any more (its subject may have settled since)."""
        conflicts = self.conflicts
        if status == "all":
            detected = self._detected.ordered()
            start = 0 if after is None else bisect_right(detected, (after.detected_ms, after.id))
            chosen = [conflicts[c] for _, c in detected[start : start + limit]]
            return chosen, start + limit < len(detected)
        if status != "current":
            raise ValueError(f"conflicts are current or all, not {status!r}")
        keys = self._conflicted.ordered()
        start = 0 if after is None else bisect_left(keys, after.subject)
        if after is not None and start < len(keys) and keys[start] == after.subject:
            current = self.subjects[after.subject].conflict
            assert current is not None
            start += current <= after.id  # its subject's conflict now sorts after it, or not
        page = []
        for key in keys[start : start + limit]:
            conflict = self.subjects[key].conflict
            assert conflict is not None
            page.append(conflicts[conflict])
        return page, start + limit < len(keys)

    def history(self, namespace: tuple[str, ...], key: str) -> list[Entry]:
        """Every claim of a subject, superseded, excluded and invalid ones included, in causal
        order (rank of the envelope, then claim id)."""
        subject = self.subjects.get((namespace, key))
        if subject is None:
            return []
        entries, histories, order = subject.entries.values(), self._histories, self.history_order
        kept = histories.pop(subject.key, None)
        if kept is not None and len(kept) < len(entries):  # it grew: place the new ones
            new = sorted(entries[len(kept) :], key=order)
            if kept and order(kept[-1]) < order(new[0]):
                kept.extend(new)
            else:
                kept = None  # a late one sorts among them
        if kept is None or len(kept) != len(entries):
            kept = sorted(entries, key=order)
        histories[subject.key] = kept
        while len(histories) > _HISTORIES_KEPT:
            histories.popitem(last=False)
        return list(kept)

    def history_order(self, entry: Entry) -> tuple[int, bytes, bytes]:
        """Where ``entry`` sorts in :meth:`history`."""
        return self.admission.records[entry.envelope_id].rank, entry.envelope_id, entry.claim.id

    def snapshot(self) -> bytes:
        """Canonical bytes of everything the view derives (no local times): what an
        incremental view and a rebuilt one must agree on."""
        doc: list[JsonValue] = []
        for key in sorted(self.subjects):
            subject = self.subjects[key]
            entries: list[JsonValue] = [
                [e.claim.id.hex(), e.excluded, e.invalid]
                for e in sorted(subject.entries.values(), key=lambda e: e.claim.id)
            ]
            decision = None if subject.decision is None else subject.decision.to_bytes().hex()
            doc.append([list(key[0]), key[1], entries, [c.hex() for c in subject.live], decision])
        return canonical_bytes(doc)


def conflict_id_of(subject: SubjectKey, candidates: Sequence[bytes]) -> bytes:
    body: Any = [list(subject[0]), subject[1], sorted(c.hex() for c in candidates)]
    return tagged_hash(CONFLICT_ID_TAG, canonical_bytes(body))


def describe(entry: Entry, role: str | None = None) -> dict[str, JsonValue]:
    """An entry as JSON: the claim's fields, provenance and status."""
    claim = entry.claim
    return {
        "claim_id": claim.id.hex(),
        "envelope_id": entry.envelope_id.hex(),
        "namespace": list(claim.namespace),
        "key": claim.key,
        "type": claim.type,
        "value": claim.value,
        "agent": claim.agent.hex(),
        "aseq": claim.aseq,
        "hlc": list(claim.hlc),
        "valid_at": claim.valid_at,
        "invalid_at": claim.invalid_at,
        "source": claim.source,
        "derived_from": [r.hex() for r in claim.derived_from],
        "based_on": [r.hex() for r in claim.based_on],
        "confidence": claim.confidence,
        "supersedes": [r.hex() for r in claim.supersedes],
        "signature": "verified" if signature_ok(claim) else "invalid",
        "excluded": entry.excluded,
        "invalid": entry.invalid,
        "invalid_detail": entry.detail or None,
        "role": role,
    }


def _live_of(entries: Iterable[Entry]) -> tuple[bytes, ...]:
    """The live claims of a subject of ``entries``: the counting ones that no counting one
    supersedes, sorted by id."""
    counting = [e for e in entries if e.counts]
    superseded = {target for e in counting for target in e.claim.supersedes}
    return tuple(sorted(e.claim.id for e in counting if e.claim.id not in superseded))


def _live_after(live: tuple[bytes, ...], added: list[Entry]) -> tuple[bytes, ...]:
    """:func:`_live_of` the subject's entries after ``added`` joined those whose live claims
    were ``live``, when nothing else about them changed: a counting claim supersedes only
    claims already in the view when it arrived (any other target makes it invalid), and
    claims arrive in causal order, so none of the older ones supersedes a new one, and a
    new one takes out only what it names. A subject updated many times no longer walks
    its whole history at each write (14.9 ms a write at 20,000 versions)."""
    counting = [e for e in added if e.counts]
    if not counting:
        return live
    superseded = {target for e in counting for target in e.claim.supersedes}
    kept = [c for c in live if c not in superseded]
    kept += (e.claim.id for e in counting if e.claim.id not in superseded)
    return tuple(sorted(kept))
