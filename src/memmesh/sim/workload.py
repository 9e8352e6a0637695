"""Agents writing claims: a seeded schedule of writes over the fault phase after its warm-up
(``SimOptions.warmup_ms``), a tunable share of them in bursts of concurrent writes to a few hot
subjects.

A burst writes one subject on 2-3 different nodes at the same virtual instant, so the writes
cannot see each other: a conflict the memory model must keep. Every other write is a new
subject. A write to a hot subject supersedes the claims of that subject its node has
integrated (what ``put`` does), so ``supersedes`` only ever names the writer's causal past.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..claims import Claim
from ..core import WriteAcked
from .mesh import SimMesh
from .options import SimOptions

__all__ = ["Workload", "WriteSpec"]

HOT_SUBJECTS = 4
SUPERSEDES_MAX = 64


@dataclass(frozen=True, slots=True)
class WriteSpec:
    number: int
    at_us: int
    burst: int
    """Concurrent writes (1 for an ordinary write)."""
    hot: int | None
    """The hot subject of a burst, or None for a new subject."""


class Workload:
    def __init__(self, options: SimOptions, mesh: SimMesh, rng: random.Random) -> None:
        self.options, self.mesh, self.rng = options, mesh, rng
        self.specs: list[WriteSpec] = []
        start_us = options.warmup_ms * 1000
        window_us = options.duration_ms * 1000 - start_us
        left, number = options.updates, 0
        while left > 0:
            burst = 1
            if options.conflict_share and rng.random() < options.conflict_share:
                burst = min(left, rng.randint(2, 3))
            hot = rng.randrange(HOT_SUBJECTS) if burst > 1 else None
            at_us = start_us + rng.randrange(window_us)
            self.specs.append(WriteSpec(number, at_us, burst, hot))
            left -= burst
            number += 1
        self.specs.sort(key=lambda s: (s.at_us, s.number))
        self._hot_claims: dict[bytes, list[tuple[int, bytes]]] = {}
        """Envelope id -> (hot subject, claim id) of the hot claims it carries."""
        self._seen: dict[int, dict[int, set[bytes]]] = {}
        """Node -> hot subject -> claim ids it has integrated."""
        self._subjects: dict[int, int | None] = {}
        """Write token -> its hot subject."""

    def write(
        self,
        spec: WriteSpec,
        writable: list[int],
        local_ms: Callable[[int], int],
        submit: Callable[[int, list[Claim]], int],
    ) -> int:
        """Make the writes of ``spec`` on nodes drawn from ``writable``; return how many."""
        if not writable:
            return 0
        nodes = self.rng.sample(writable, min(spec.burst, len(writable)))
        for node in nodes:
            agent = self.mesh.agents[self.rng.randrange(len(self.mesh.agents))]
            if spec.hot is None:
                key, supersedes = f"k{spec.number}", []
            else:
                key = f"hot{spec.hot}"
                seen = self._seen.get(node, {}).get(spec.hot, set())
                supersedes = sorted(seen)[:SUPERSEDES_MAX]
            claim = self.mesh.claim(
                agent,
                key=key,
                value={"write": spec.number, "node": node},
                hlc_ms=local_ms(node),
                supersedes=supersedes,
            )
            token = submit(node, [claim])
            self._subjects[token] = spec.hot
        return len(nodes)

    def on_ack(self, notice: WriteAcked) -> None:
        hot = self._subjects.pop(notice.token, None)
        if hot is not None:
            claims = self._hot_claims.setdefault(notice.envelope_id, [])
            claims.extend((hot, claim_id) for claim_id in notice.claim_ids)

    def on_done(self, token: int) -> None:
        """A write failed or was lost: forget its subject."""
        self._subjects.pop(token, None)

    def on_integrated(self, node: int, envelope_ids: tuple[bytes, ...]) -> None:
        for env_id in envelope_ids:
            for hot, claim_id in self._hot_claims.get(env_id, ()):
                self._seen.setdefault(node, {}).setdefault(hot, set()).add(claim_id)
