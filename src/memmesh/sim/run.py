"""One simulation run: build the swarm from the seed, run the fault phase, heal, check
liveness, and measure.

The run stops at the first safety violation (the checker raises) or at an exception out of a
core, and reports it with the command that reproduces it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..admission import shared_preparation
from ..claims import Claim
from ..collector import fewer_collections
from ..core import WriteAcked, WriteFailed
from ..crypto import shared_verification
from ..envelope import Envelope
from .byzantine import Attacker
from .checker import Checker, SafetyViolation
from .clock import EPOCH_MS
from .cluster import Cluster, SimNode
from .faults import Faults
from .flood import FloodResult
from .loop import EventLoop, Trace
from .mesh import SimMesh
from .metrics import Metrics
from .options import SimOptions
from .seed import rng_for
from .topology import edges_of, seed_graph
from .workload import Workload, WriteSpec

__all__ = ["Progress", "SimRun", "run_sim"]

Progress = Callable[[float, str], None]
"""Called with the share of the run done (by virtual time) and a phase name."""

_PROGRESS_STEPS = 200
_CONVERGE_PROBE_US = 50_000
_ADMIT_RETRY_US = 500_000


@dataclass(slots=True)
class SimRun:
    """Everything a finished run knows; :mod:`memmesh.sim.report` turns it into figures."""

    options: SimOptions
    cluster: Cluster
    checker: Checker
    metrics: Metrics
    faults: Faults
    edges: list[tuple[int, int]]
    trace_hash: str = ""
    events: int = 0
    virtual_us: int = 0
    wall_s: float = 0.0
    heal_us: int = 0
    converged_us: int | None = None
    failure: str | None = None
    failure_kind: str | None = None
    """``safety``, ``liveness``, ``divergence`` or ``exception``."""
    bootstrap: list[Envelope] = field(default_factory=list)
    writes: list[tuple[int, int]] = field(default_factory=list)
    """(virtual us, node) of every workload write submitted."""
    phase_wall_s: dict[str, float] = field(default_factory=dict)
    """Wall seconds spent starting the nodes, in the fault phase and in the liveness phase
    (measured only; nothing in the run depends on them)."""
    flood: FloodResult | None = None
    """The flooding baseline over the same network, once the report ran it."""
    attackers: list[Attacker] = field(default_factory=list)
    """The Byzantine nodes' attackers (``--byzantine``)."""

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def updates(self) -> int:
        """Envelopes committed by their authors during the run (the bootstrap excluded)."""
        return len(self.checker.authored) - len(self.bootstrap)

    def converge_rounds(self) -> int | None:
        """Anti-entropy intervals from the final heal to convergence (rounded up)."""
        if self.converged_us is None:
            return None
        interval = self.options.anti_entropy_interval_ms * 1000
        return -(-(self.converged_us - self.heal_us) // interval)


class _Simulation:
    def __init__(self, options: SimOptions, progress: Progress | None) -> None:
        self.options, self.progress = options, progress
        self.loop, self.trace = EventLoop(), Trace()
        self.checker, self.metrics = Checker(), Metrics()
        byzantine = len(options.byzantine)
        total = options.nodes + byzantine
        self.mesh = SimMesh(options.seed, total, options.agents, byzantine)
        self.cluster = Cluster(
            options,
            loop=self.loop,
            trace=self.trace,
            checker=self.checker,
            metrics=self.metrics,
            mesh=self.mesh,
        )
        known = seed_graph(options.nodes, options.seed_peers, rng_for(options.seed, "topology"))
        self.edges = edges_of(known)
        for i in range(options.nodes):
            self.cluster.add_node(self.mesh.node_key(i), [f"sim://n{j}" for j in known[i]], [])
        if byzantine:
            # Each Byzantine node is given two honest addresses; shuffles spread its own.
            draw = rng_for(options.seed, "byzantine/topology")
            for kind in options.byzantine:
                index = len(self.cluster.nodes)
                seeds = draw.sample(range(options.nodes), min(2, options.nodes))
                key = self.mesh.node_key(index)
                self.checker.byz_authors[key.public_key] = kind
                self.cluster.add_node(key, [f"sim://n{j}" for j in seeds], [], kind)
        self.bootstrap: list[Envelope] = []
        if self.mesh.in_genesis < total:
            template, self.bootstrap = self.mesh.bootstrap(total, EPOCH_MS)
            self.checker.on_commit(0, self.mesh.node_key(0).public_key, self.bootstrap, 0)
            for node in self.cluster.nodes:
                self.cluster.preload(node, template)
        self.workload = Workload(options, self.mesh, rng_for(options.seed, "workload"))
        self.cluster.on_ack = self.workload.on_ack
        self.cluster.on_integrated = self.workload.on_integrated
        self.faults = Faults(
            self.cluster, self.loop, rng_for(options.seed, "faults"), self.edges, self._join
        )
        self._join_rng = rng_for(options.seed, "joins")
        self.run = SimRun(
            options, self.cluster, self.checker, self.metrics, self.faults, self.edges
        )
        self.run.bootstrap = self.bootstrap
        byzantine_nodes = [n for n in self.cluster.nodes if n.byzantine is not None]
        self.run.attackers = [
            Attacker(kind, number, node, self.cluster, self._healed)
            for number, (kind, node) in enumerate(
                zip(options.byzantine, byzantine_nodes, strict=True)
            )
        ]

    def _healed(self) -> bool:
        """Whether the final heal came (attacks stop there)."""
        return self.faults.healed

    # -- the phases ---------------------------------------------------------------------------

    def execute(self) -> SimRun:
        started = time.perf_counter()
        run, loop = self.run, self.loop
        phases = run.phase_wall_s
        try:
            for node in self.cluster.nodes:
                if not self.cluster.start(node):
                    self.faults.retry_start(node)
            for spec in self.workload.specs:
                loop.at(spec.at_us, self._write, spec)
            self.faults.schedule()
            for attacker in run.attackers:
                attacker.schedule()
            phases["start"] = time.perf_counter() - started
            self._fault_phase()
            phases["faults"] = time.perf_counter() - started - phases["start"]
            run.heal_us = loop.now_us
            self._liveness_phase()
            phases["liveness"] = time.perf_counter() - started - sum(phases.values())
        except SafetyViolation as exc:
            run.failure, run.failure_kind = str(exc), run.failure_kind or "safety"
        except Exception as exc:  # noqa: BLE001 - a core that raises is a finding, with its seed
            detail = "".join(traceback.format_exception(exc, limit=-6))
            run.failure, run.failure_kind = f"{type(exc).__name__}: {exc}\n{detail}", "exception"
        run.trace_hash = self.trace.hexdigest()
        run.events = loop.processed
        run.virtual_us = loop.now_us
        run.wall_s = time.perf_counter() - started
        if self.progress is not None:
            self.progress(1.0, "done")
        return run

    def _fault_phase(self) -> None:
        duration = self.options.duration_ms * 1000
        sample = max(_CONVERGE_PROBE_US, duration // 100)
        next_sample = 0
        for step in range(1, _PROGRESS_STEPS + 1):
            end = duration * step // _PROGRESS_STEPS
            while next_sample <= end:
                self.loop.run_until(next_sample)
                self._sample_backlog()
                next_sample += sample
            self.loop.run_until(end)
            if self.progress is not None:
                self.progress(0.8 * step / _PROGRESS_STEPS, "faults")

    def _liveness_phase(self) -> None:
        options, loop, run = self.options, self.loop, self.run
        interval = options.anti_entropy_interval_ms * 1000
        give_up = run.heal_us + options.give_up_rounds * interval
        sample_every = max(1, interval // _CONVERGE_PROBE_US)
        probes = 0
        while loop.now_us < give_up:
            if self._converged():
                run.converged_us = loop.now_us
                break
            loop.run_until(loop.now_us + _CONVERGE_PROBE_US)
            probes += 1
            if probes % sample_every == 0:
                self._sample_backlog()
            if self.progress is not None:
                done = (loop.now_us - run.heal_us) / (give_up - run.heal_us)
                self.progress(0.8 + 0.2 * done, "converging")
        self._sample_backlog()
        if run.converged_us is None:
            run.failure_kind = "liveness"
            run.failure = (
                f"no convergence within {options.give_up_rounds} anti-entropy rounds after the "
                f"final heal: {self._lagging()}"
            )
            return
        self._check_agreement()
        rounds = run.converge_rounds()
        assert rounds is not None
        if rounds > options.converge_rounds_max:
            run.failure_kind = "liveness"
            run.failure = (
                f"converged {rounds} anti-entropy rounds after the final heal "
                f"(bound {options.converge_rounds_max})"
            )

    # -- convergence --------------------------------------------------------------------------

    def _live(self) -> list[SimNode]:
        """The honest nodes that have not left (Byzantine nodes are not judged)."""
        return [n for n in self.cluster.nodes if not n.left and n.byzantine is None]

    def _converged(self) -> bool:
        """Every live node up and holding every envelope committed in the run. Replicas hold
        only committed envelopes (checked at each integration), so equal counts are equal
        sets. With Byzantine nodes, replicas also hold what attackers built: every live honest
        node must hold every honest author's envelope, and all the same set."""
        total = len(self.checker.authored)
        if self.options.byzantine:
            return self._converged_byzantine(total)
        for node in self._live():
            if node.core is None or len(node.core.admission.records) != total:
                return False
        return True

    def _converged_byzantine(self, total: int) -> bool:
        cores = [n.core for n in self._live()]
        first = cores[0] if cores else None
        if first is None or any(c is None for c in cores):
            return False
        held = first.admission.records.keys()
        size = len(held)
        if size < total or any(c is not None and len(c.admission.records) != size for c in cores):
            return False
        if not self.checker.authored <= held:
            return False
        return all(c is not None and c.admission.records.keys() == held for c in cores)

    def _lagging(self) -> str:
        authored = self.checker.authored
        total = len(authored)
        behind = [
            f"n{n.index} {'down' if n.core is None else len(n.core.admission.records)}/{total}"
            for n in self._live()
            if n.core is None or len(n.core.admission.records) != total
        ]
        if self.options.byzantine:
            behind = [
                f"n{n.index} down"
                if n.core is None
                else f"n{n.index} lacks {len(authored - n.core.admission.records.keys())}/"
                f"{total} honest, holds {len(n.core.admission.records)}"
                for n in self._live()
            ]
        return ", ".join(behind[:10]) + (" ..." if len(behind) > 10 else "")

    def _check_agreement(self) -> None:
        """Same envelopes must mean the same frontier and claims digest, with every
        acknowledged write in every replica."""
        live = self._live()
        cores = [n.core for n in live]
        assert all(c is not None for c in cores)
        first = cores[0]
        assert first is not None
        frontier, digest = first.frontier(), first.claims_digest()
        acked = self.checker.acked_ids()
        for node, core in zip(live, cores, strict=True):
            assert core is not None
            if core.frontier() != frontier or core.claims_digest() != digest:
                self.run.failure_kind = "divergence"
                raise SafetyViolation(
                    f"node {node.index} holds every envelope but its frontier or claims digest "
                    f"differs from node {live[0].index}'s"
                )
            missing = [i for i in acked if i not in core.admission.records]
            if missing:
                raise SafetyViolation(
                    f"node {node.index} lacks {len(missing)} acknowledged envelopes at the end"
                )
        if self.options.byzantine:
            self.checker.check_byzantine(
                ((n.index, c.admission) for n, c in zip(live, cores, strict=True) if c),
                self.loop.now_us,
            )

    def _sample_backlog(self) -> None:
        total = len(self.checker.authored)
        missing = sum(
            max(0, total - len(n.core.admission.records))
            for n in self._live()
            if n.core is not None
        )
        self.metrics.backlog.append((self.loop.now_us, missing, self.loop.pending()))

    # -- writes and joins ---------------------------------------------------------------------

    def _writable(self) -> list[int]:
        return [
            n.index
            for n in self.cluster.nodes
            if n.core is not None and not n.leaving and not n.left and n.byzantine is None
        ]

    def _write(self, spec: WriteSpec) -> None:
        writable = self._writable()
        made = self.workload.write(spec, writable, self.cluster.local_ms, self._submit)
        self.metrics.writes_skipped += spec.burst - made

    def _submit(self, node: int, claims: list[Claim]) -> int:
        self.run.writes.append((self.loop.now_us, node))
        return self.cluster.write(self.cluster.node_of(node), claims, self._write_done)

    def _write_done(self, token: int, outcome: WriteAcked | WriteFailed | None) -> None:
        if not isinstance(outcome, WriteAcked):
            self.workload.on_done(token)

    def _join(self) -> None:
        writable = self._writable()
        if not writable:
            return
        cluster, rng = self.cluster, self._join_rng
        index = len(cluster.nodes)
        key = self.mesh.node_key(index)
        seeds = rng.sample(writable, min(2, len(writable)))
        admit = self.mesh.admit(key, cluster.local_ms(writable[0]))
        node = cluster.add_node(key, [f"sim://n{s}" for s in seeds], [admit.raw])
        self.faults.add_edges(index, seeds)
        self._admit(index, admit)
        if not cluster.start(node):
            self.faults.retry_start(node)

    def _admit(self, index: int, admit: Claim | None = None) -> None:
        """Write the joining node's admit through a live node, again (a new claim) until
        one is acknowledged."""
        writable = [i for i in self._writable() if i != index]
        if not writable:
            self.loop.after(_ADMIT_RETRY_US, self._admit_again, index)
            return
        via = self._join_rng.choice(writable)
        if admit is None:
            admit = self.mesh.admit(self.cluster.node_of(index).key, self.cluster.local_ms(via))

        def done(token: int, outcome: WriteAcked | WriteFailed | None) -> None:
            if not isinstance(outcome, WriteAcked):
                self.loop.after(_ADMIT_RETRY_US, self._admit_again, index)

        self.cluster.write(self.cluster.node_of(via), [admit], done)

    def _admit_again(self, index: int) -> None:
        self._admit(index)


def run_sim(options: SimOptions, progress: Progress | None = None) -> SimRun:
    """Run one simulation to its end and return what it found and measured. Signatures are
    checked, and envelopes decoded, once per run, not once per simulated node
    (``shared_verification``, ``shared_preparation``): the answers are the same, and the wall
    time goes to the protocol rather than to checking one envelope a thousand times. The
    cyclic garbage collector runs less often meanwhile (:mod:`memmesh.collector`)."""
    with shared_verification(), shared_preparation(), fewer_collections():
        return _Simulation(options, progress).execute()


def summary(run: SimRun) -> dict[str, Any]:
    """The few figures a campaign keeps per seed."""
    return {
        "seed": run.options.seed,
        "ok": run.ok,
        "failure_kind": run.failure_kind,
        "failure": run.failure,
        "command": run.options.command(),
        "nodes": run.options.nodes,
        "updates": run.updates,
        "converge_rounds": run.converge_rounds(),
        "trace_hash": run.trace_hash,
        "events": run.events,
        "wall_s": round(run.wall_s, 3),
        **({"byzantine": run.checker.byzantine_report()} if run.options.byzantine else {}),
    }
