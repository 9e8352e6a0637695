"""Replaying a set of envelopes into a fresh admission, reproducing which ones are on their log.

Admission decides by arrival which of two envelopes for one log and seq is on the log (the first
one) and which is kept off it as evidence. A verifier that is told which envelopes were on their
logs (the chains named by the statement's heads) and which were evidence must feed them in an
order that gives the same answer: every envelope after everything it names (prev and deps), and
each evidence envelope after the on-log envelope of its log and seq. The order that admission
first saw satisfies both rules, so such an order exists for honest input; it is found with
Kahn's algorithm, ties broken by (causal rank, id) so the replay is deterministic.

Each envelope goes through :meth:`Admission.receive`, the same path as any remote envelope:
signatures, mesh id, grammar, claims root, causal and membership checks. An envelope that waits
for its author's admit stays in admission's pending buffer and is released, with what depends on
it, when the admit arrives.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..admission import Admission, AdmissionLimits, Outcome, Status
from ..claims import Claim
from ..envelope import Envelope
from ..ids import ZERO_ID, LogId
from ..membership import Genesis
from ..store import MemoryStore
from ..ydecode import GrammarItem

__all__ = ["Replay", "replay"]


@dataclass(slots=True)
class Replay:
    admission: Admission
    refused: list[tuple[bytes, Outcome]] = field(default_factory=list)
    """Envelopes admission refused (rejected or dropped), with its outcome."""
    unadmitted: list[bytes] = field(default_factory=list)
    """Envelopes still waiting at the end (for a missing causal past or an admit), sorted."""


def replay(
    genesis: Genesis,
    envelopes: Sequence[Envelope],
    on_log: Collection[bytes],
    *,
    signatures_checked: bool = False,
    decoded: Mapping[bytes, tuple[Sequence[GrammarItem], Sequence[Claim]]] | None = None,
) -> Replay:
    """Admit ``envelopes`` into ``Admission(MemoryStore(), genesis)``; ``on_log`` names those
    meant to be on their logs (the others are meant to be evidence). ``signatures_checked``:
    the caller verified every envelope and claim signature already (admission skips only
    that). ``decoded``: envelope id -> its payload's items and claims, as the caller decoded
    them while checking those signatures (:meth:`Admission.receive_decoded`; used only with
    ``signatures_checked``), so nothing is decoded twice."""
    decoded = decoded if signatures_checked and decoded is not None else {}
    by_id = {env.id: env for env in envelopes}
    on_log_at: dict[tuple[LogId, int], bytes] = {
        (env.log, env.seq): env.id for env in envelopes if env.id in on_log
    }
    successors: dict[bytes, list[bytes]] = {env_id: [] for env_id in by_id}
    waiting: dict[bytes, int] = dict.fromkeys(by_id, 0)
    for env in envelopes:
        before = [*env.deps, *([env.prev] if env.prev != ZERO_ID else [])]
        if env.id not in on_log:
            twin = on_log_at.get((env.log, env.seq))
            if twin is not None:
                before.append(twin)
        for need in sorted(set(before)):
            if need in by_id and need != env.id:
                successors[need].append(env.id)
                waiting[env.id] += 1
    fast = _replay_in_order(
        genesis, _Order(by_id, successors, waiting).whole(), by_id, signatures_checked, decoded
    )
    if fast is not None:
        return fast
    order = _Order(by_id, successors, waiting)
    admission = Admission(MemoryStore(), genesis, limits=_LIMITS)
    result = Replay(admission)
    while (env_id := order.next()) is not None:
        parts = decoded.get(env_id)
        if parts is not None:
            outcome = admission.receive_decoded(by_id[env_id], *parts)
        else:
            outcome = admission.receive(by_id[env_id].raw, signatures_checked=signatures_checked)
        if outcome.status in (Status.REJECTED, Status.DROPPED):
            result.refused.append((env_id, outcome))
            continue
        for admitted in outcome.admitted:
            order.release(admitted)
    refused = {env_id for env_id, _ in result.refused}
    result.unadmitted = sorted(
        env_id for env_id in by_id if env_id not in admission.records and env_id not in refused
    )
    return result


_LIMITS = AdmissionLimits(held_envelope_bytes_max=1 << 62)
"""The replay holds every envelope's bytes: the bundle holds them all in memory already, so
letting go of older ones (what bounds a node's memory) would only cost time, detaching each
envelope and its claims from bytes that stay in memory anyway."""

_CHUNK = 512
"""Envelopes per admission call on the fast path (one batch, one in-memory commit)."""


def _replay_in_order(
    genesis: Genesis,
    order: list[bytes],
    by_id: Mapping[bytes, Envelope],
    signatures_checked: bool,
    decoded: Mapping[bytes, tuple[Sequence[GrammarItem], Sequence[Claim]]],
) -> Replay | None:
    """The replay of an honest bundle, fed in big batches: the same order as the careful loop
    of :func:`replay` (Kahn's algorithm by (causal rank, id)), computed up front on the
    assumption that every envelope is admitted at once. None as soon as one is not (refused,
    or waiting for an admit), and the careful loop replays from nothing instead: it feeds an
    envelope only once what it names was admitted, so refusals are reported the same way."""
    admission = Admission(MemoryStore(), genesis, limits=_LIMITS)
    for start in range(0, len(order), _CHUNK):
        chunk = order[start : start + _CHUNK]
        if decoded and all(env_id in decoded for env_id in chunk):
            outcomes = admission.receive_decoded_many(
                [(by_id[env_id], *decoded[env_id]) for env_id in chunk]
            )
        else:
            outcomes = admission.receive_many(
                [by_id[env_id].raw for env_id in chunk], signatures_checked=signatures_checked
            )
        if any(o.status is not Status.INTEGRATED for o in outcomes):
            return None
    return Replay(admission)


class _Order:
    """Kahn's algorithm over the bundle's dependencies, ties broken by (causal rank, id): the
    next envelope whose every dependency was released."""

    def __init__(
        self,
        by_id: Mapping[bytes, Envelope],
        successors: Mapping[bytes, list[bytes]],
        waiting: Mapping[bytes, int],
    ) -> None:
        self._successors = successors
        self._waiting = dict(waiting)
        self._rank: dict[bytes, int] = {}
        self._below: dict[bytes, int] = dict.fromkeys(by_id, 0)
        self._released: set[bytes] = set()
        self._ready = [(1, env_id) for env_id in sorted(by_id) if waiting[env_id] == 0]
        heapq.heapify(self._ready)
        for _, env_id in self._ready:
            self._rank[env_id] = 1

    def next(self) -> bytes | None:
        return heapq.heappop(self._ready)[1] if self._ready else None

    def release(self, env_id: bytes) -> None:
        """``env_id`` was admitted: what waited only for it becomes ready."""
        if env_id in self._released or env_id not in self._below:
            return
        self._released.add(env_id)
        for after in self._successors[env_id]:
            self._below[after] = max(self._below[after], self._rank[env_id])
            self._waiting[after] -= 1
            if self._waiting[after] == 0:
                self._rank[after] = self._below[after] + 1
                heapq.heappush(self._ready, (self._rank[after], after))

    def whole(self) -> list[bytes]:
        """Every envelope in order, as if each were admitted as soon as it came."""
        out: list[bytes] = []
        while (env_id := self.next()) is not None:
            out.append(env_id)
            self.release(env_id)
        return out
