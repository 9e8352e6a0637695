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

from ..admission import Admission, Outcome, Status
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
    rank: dict[bytes, int] = {}
    below: dict[bytes, int] = dict.fromkeys(by_id, 0)
    ready = [(1, env_id) for env_id in sorted(by_id) if waiting[env_id] == 0]
    heapq.heapify(ready)
    for _, env_id in ready:
        rank[env_id] = 1
    admission = Admission(MemoryStore(), genesis)
    result = Replay(admission)
    released: set[bytes] = set()

    def release(env_id: bytes) -> None:
        if env_id in released or env_id not in by_id:
            return
        released.add(env_id)
        for after in successors[env_id]:
            below[after] = max(below[after], rank[env_id])
            waiting[after] -= 1
            if waiting[after] == 0:
                rank[after] = below[after] + 1
                heapq.heappush(ready, (rank[after], after))

    while ready:
        _, env_id = heapq.heappop(ready)
        parts = decoded.get(env_id)
        if parts is not None:
            outcome = admission.receive_decoded(by_id[env_id], *parts)
        else:
            outcome = admission.receive(by_id[env_id].raw, signatures_checked=signatures_checked)
        if outcome.status in (Status.REJECTED, Status.DROPPED):
            result.refused.append((env_id, outcome))
            continue
        for admitted in outcome.admitted:
            release(admitted)
    refused = {env_id for env_id, _ in result.refused}
    result.unadmitted = sorted(
        env_id for env_id in by_id if env_id not in admission.records and env_id not in refused
    )
    return result
