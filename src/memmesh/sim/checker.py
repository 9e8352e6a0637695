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

**With Byzantine nodes** (``--byzantine``), the properties above hold for the honest nodes and
the honest authors' envelopes; the Byzantine nodes' own notices are not judged. An honest node
may integrate an envelope no author committed only if a Byzantine attacker built it (it is in
``byz_expect``); it may reject only what came straight from a Byzantine peer (counted by kind
and reason); equivocation evidence may only name a Byzantine author (the pairs are kept). At
the end (:meth:`Checker.check_byzantine`) every Byzantine envelope an honest node holds is
judged against what its attacker expected: one to reject must not be held at all, one to
exclude must be excluded, and the exclusions are counted by kind and reason.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from ..admission import Admission
from ..core import Integrated, RejectedEnvelope, WriteAcked
from ..envelope import Envelope, decode_envelope
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
    byz_authors: dict[bytes, str] = field(default_factory=dict)
    """Node keys of the Byzantine nodes, with their kind."""
    byz_expect: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    """Every envelope a Byzantine attacker built: id -> (kind, ``reject``, ``exclude`` or
    ``valid``)."""
    byz_rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per kind, rejections by honest nodes of envelopes a Byzantine peer sent, by reason."""
    byz_excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per kind, (honest node, envelope) pairs held excluded at the end, by reason."""
    byz_live: dict[str, int] = field(default_factory=dict)
    """Per kind, (honest node, envelope) pairs held live at the end (valid envelopes)."""
    byz_waiting: dict[str, int] = field(default_factory=dict)
    """Per kind, (honest node, envelope) pairs still buffered at the end (never stored)."""
    byz_fork_unseen: dict[str, int] = field(default_factory=dict)
    """Per kind, pairs held live that an equivocator meant to fork, but whose other branch no
    honest node got (lost on the way): no equivocation was ever visible."""
    byz_evidence: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    """Equivocation evidence honest nodes found (key -> both envelopes' bytes)."""
    byz_delivered: dict[str, int] = field(default_factory=dict)
    """Per kind, copies of its envelopes delivered to honest nodes (from anyone)."""

    def fail(self, now_us: int, message: str) -> SafetyViolation:
        return SafetyViolation(f"at {now_us / 1e6:.6f} s: {message}")

    def on_commit(self, node: int, author: bytes, envelopes: list[Envelope], now_us: int) -> None:
        byzantine = self.byz_authors
        for env in envelopes:
            if byzantine and env.author in byzantine:
                continue  # a Byzantine log may well reuse a seq: that is its attack
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
            if env_id not in self.authored and env_id not in self.byz_expect:
                raise self.fail(
                    now_us, f"node {node} integrated {short_id(env_id)}, which no author committed"
                )

    def on_rejected(
        self, node: int, notice: RejectedEnvelope, now_us: int, byzantine: str | None = None
    ) -> None:
        """``byzantine``: the kind of the peer that sent it, if Byzantine."""
        if byzantine is not None:
            counts = self.byz_rejected.setdefault(byzantine, {})
            counts[notice.reason.value] = counts.get(notice.reason.value, 0) + 1
            return
        if notice.reason in _LOAD_REFUSALS:
            self.refused_for_load += 1
            return
        raise self.fail(
            now_us,
            f"node {node} rejected an honest node's envelope: {notice.reason.value}: "
            f"{notice.detail}",
        )

    def on_evidence(
        self, node: int, now_us: int, pairs: Iterable[tuple[bytes, tuple[bytes, bytes]]] = ()
    ) -> None:
        """Evidence is only allowed against a Byzantine author; its pairs are kept."""
        honest_fork = True
        for key, (first, second) in pairs:
            authors = {decode_envelope(first).author, decode_envelope(second).author}
            honest_fork = not authors <= self.byz_authors.keys()
            if honest_fork:
                break
            self.byz_evidence.setdefault(key, (first, second))
        if honest_fork:
            raise self.fail(now_us, f"node {node} found equivocation evidence among honest nodes")

    def on_delivered(self, env_ids: Iterable[bytes]) -> None:
        for env_id in env_ids:
            held = self.byz_expect.get(env_id)
            if held is not None:
                self.byz_delivered[held[0]] = self.byz_delivered.get(held[0], 0) + 1

    def check_byzantine(self, nodes: Iterable[tuple[int, Admission]], now_us: int) -> None:
        """Judge every Byzantine envelope each honest node holds at the end: none to reject is
        held, every one to exclude is excluded; count exclusions and live ones by kind."""
        for node, admission in nodes:
            records = admission.records
            # Buffered (waiting for a causal past or an admit): never stored, never live. The
            # buffers have no public view of their ids, so the simulator reads them directly.
            waiting = admission._causal.keys() | admission._pending.keys()
            for env_id in sorted(self.byz_expect.keys() & waiting):
                kind = self.byz_expect[env_id][0]
                self.byz_waiting[kind] = self.byz_waiting.get(kind, 0) + 1
            for env_id in sorted(self.byz_expect.keys() & records.keys()):
                kind, expect = self.byz_expect[env_id]
                self.checks += 1
                reason = admission.exclusion(records[env_id])
                if expect == "reject":
                    raise self.fail(
                        now_us,
                        f"node {node} holds {short_id(env_id)}, a {kind} envelope it must reject",
                    )
                if reason is None:
                    env = records[env_id].envelope
                    if (
                        expect == "exclude"
                        and kind == "equivocator"
                        and (env.log not in admission.forks)
                    ):
                        # Neither this replica nor, once converged, any other holds the other
                        # branch: the equivocation never became visible, so it is live.
                        self.byz_fork_unseen[kind] = self.byz_fork_unseen.get(kind, 0) + 1
                        continue
                    if expect == "exclude":
                        raise self.fail(
                            now_us,
                            f"node {node} holds {short_id(env_id)}, a {kind} envelope it must "
                            "exclude, as live",
                        )
                    self.byz_live[kind] = self.byz_live.get(kind, 0) + 1
                else:
                    counts = self.byz_excluded.setdefault(kind, {})
                    counts[reason.value] = counts.get(reason.value, 0) + 1

    def byzantine_report(self) -> dict[str, dict[str, object]]:
        """Per kind: envelopes built by expectation, copies delivered to honest nodes,
        rejections and exclusions by reason, and pairs held live."""
        kinds = sorted(set(self.byz_authors.values()))
        built: dict[str, dict[str, int]] = {k: {} for k in kinds}
        for kind, expect in self.byz_expect.values():
            built[kind][expect] = built[kind].get(expect, 0) + 1
        return {
            kind: {
                "built": dict(sorted(built[kind].items())),
                "delivered_to_honest": self.byz_delivered.get(kind, 0),
                "rejected": dict(sorted(self.byz_rejected.get(kind, {}).items())),
                "excluded": dict(sorted(self.byz_excluded.get(kind, {}).items())),
                "held_live": self.byz_live.get(kind, 0),
                "held_live_fork_unseen": self.byz_fork_unseen.get(kind, 0),
                "waiting_in_buffers": self.byz_waiting.get(kind, 0),
            }
            for kind in kinds
        }

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
