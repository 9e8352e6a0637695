"""The checker: safety after every step, liveness after the final heal.

Safety is checked where it can change, so it holds after every event at the cost of a few
dictionary look-ups per event:

- **nothing invalid integrated**: every envelope a node integrates was committed by its own
  author first (honest nodes only forward what they stored), no envelope is rejected for
  anything but a full buffer, and no equivocation evidence ever appears;
- **no seq reused**: every commit anywhere is checked against one map of (log, seq) -> id;
- **no acknowledged write lost**: an acknowledged envelope is on its node's disk when
  acknowledged, after every restart of that node, and in the end on every live node.

Liveness is judged by the runner: after the final heal every live node must hold the same set
of envelopes, hence the same frontier and claims digest, within the bound.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from ..core import Integrated, RejectedEnvelope, WriteAcked
from ..envelope import Envelope
from ..errors import Reason
from ..ids import LogId, short_id

__all__ = ["Checker", "SafetyViolation"]

_LOAD_REFUSALS = frozenset({Reason.CAUSAL_BUFFER_FULL, Reason.PENDING_BUFFER_FULL})
"""Refusals of valid envelopes for lack of room: counted, not a safety violation (sync fetches
them again), and they would show as a liveness failure if they never got in."""


class SafetyViolation(AssertionError):
    """A safety property failed; the message says which, where and when."""


@dataclass(slots=True)
class Checker:
    authored: set[bytes] = field(default_factory=set)
    """Every envelope committed by its own author (the valid envelopes of this run)."""
    seqs: dict[tuple[LogId, int], bytes] = field(default_factory=dict)
    acked: dict[int, dict[int, bytes]] = field(default_factory=dict)
    """Per node, the envelopes it acknowledged (seq -> id)."""
    refused_for_load: int = 0
    checks: int = 0

    def fail(self, now_us: int, message: str) -> SafetyViolation:
        return SafetyViolation(f"at {now_us / 1e6:.6f} s: {message}")

    def on_commit(self, node: int, author: bytes, envelopes: list[Envelope], now_us: int) -> None:
        for env in envelopes:
            self.checks += 1
            key = (env.log, env.seq)
            held = self.seqs.setdefault(key, env.id)
            if held != env.id:
                raise self.fail(
                    now_us,
                    f"seq reused: log {env.log} seq {env.seq} is {short_id(held)} and "
                    f"{short_id(env.id)} (committed on node {node})",
                )
            if env.author == author:
                self.authored.add(env.id)

    def on_ack(self, node: int, notice: WriteAcked, on_disk: bool, now_us: int) -> None:
        self.checks += 1
        if not on_disk:
            raise self.fail(
                now_us, f"node {node} acknowledged {short_id(notice.envelope_id)} not on its disk"
            )
        acked = self.acked.setdefault(node, {})
        held = acked.setdefault(notice.seq, notice.envelope_id)
        if held != notice.envelope_id:
            raise self.fail(now_us, f"node {node} acknowledged two envelopes at seq {notice.seq}")

    def on_integrated(self, node: int, notice: Integrated, now_us: int) -> None:
        for env_id in notice.envelope_ids:
            self.checks += 1
            if env_id not in self.authored:
                raise self.fail(
                    now_us, f"node {node} integrated {short_id(env_id)}, which no author committed"
                )

    def on_rejected(self, node: int, notice: RejectedEnvelope, now_us: int) -> None:
        if notice.reason in _LOAD_REFUSALS:
            self.refused_for_load += 1
            return
        raise self.fail(
            now_us,
            f"node {node} rejected an honest node's envelope: {notice.reason.value}: "
            f"{notice.detail}",
        )

    def on_evidence(self, node: int, now_us: int) -> None:
        raise self.fail(now_us, f"node {node} found equivocation evidence among honest nodes")

    def after_restart(
        self, node: int, on_disk: Container[bytes], records: Container[bytes], now_us: int
    ) -> None:
        """Every envelope ``node`` ever acknowledged is on its disk and in its new replica."""
        for env_id in self.acked.get(node, {}).values():
            self.checks += 1
            if env_id not in on_disk or env_id not in records:
                raise self.fail(
                    now_us, f"node {node} lost acknowledged {short_id(env_id)} in a restart"
                )

    def acked_ids(self) -> set[bytes]:
        return {env_id for acked in self.acked.values() for env_id in acked.values()}
