"""Everything a simulation run depends on, in one frozen record derived from flags or the seed.

``swarm_options(seed)`` draws every option from the seed within TigerBeetle-style ranges (each
seed switches faults on or off and picks their rates), which is what ``memmesh sim campaign``
runs; :meth:`SimOptions.command` prints the command line that reproduces a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from .seed import rng_for

__all__ = ["KINDS", "PARTITIONS_WITH_FLAG", "SimOptions", "parse_kinds", "swarm_options"]

KINDS = (
    "forger",
    "replayer",
    "equivocator",
    "spoofer",
    "eraser",
    "poisoner",
    "revoked",
    "flooder",
)
"""The Byzantine node kinds (``memmesh.sim.byzantine``)."""


def parse_kinds(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"forger,replayer"`` -> ``("forger", "replayer")``: one Byzantine node per name."""
    names = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(n.strip() for n in names if n.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown Byzantine kinds {unknown}; known: {', '.join(KINDS)}")
    return kinds


PARTITIONS_WITH_FLAG = 3
"""Partition episodes ``--partitions`` asks for."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    """One run. Probabilities are per frame (network) or per commit and per open (disk)."""

    seed: int
    nodes: int = 5
    updates: int = 100
    duration_ms: int = 10_000
    """The fault phase: writes, partitions, crashes, joins and leaves happen in it; at its end
    comes the final heal (every fault stops, crashed nodes restart) and the liveness check."""
    warmup_ms: int = 1_000
    """Writes begin this long into the fault phase: the nodes start together, and the overlay
    and the push tree form first (in 0.2 s at 1,000 nodes), as they would before agents
    write. 0 writes from the first instant (campaigns do: cold starts under faults)."""
    swarm: bool = False
    """Every option below was drawn from the seed (``swarm_options``)."""
    seed_peers: int = 2
    """Addresses each node is given besides its ring neighbour (``PeerKnown``)."""
    agents: int = 4
    conflict_share: float = 0.1
    """Share of writes made in bursts of 2-3 concurrent writes to one hot subject."""
    latency_ms_min: int = 1
    latency_ms_max: int = 20
    """Each directed link's base one-way latency is drawn in this range."""
    jitter_ms_mean: int = 2
    """Mean of the exponential delay added to each frame."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """A reordered frame gets an extra delay and may overtake later frames of its link."""
    bandwidth_bytes_per_ms: int = 12_500
    """Each directed link's capacity (12,500 bytes/ms is 100 Mbit/s); frames queue behind it."""
    partitions: int = 0
    clogs: int = 0
    """Episodes in which one link's frames are held back for seconds."""
    flush_delay_ms: int = 1
    """The commit batch window: as the runtime does, a node whose last commit ended less than
    this ago waits this long from ``Persist`` to ``Flush`` (an idle one flushes at once); a
    crash in between loses what was staged, which was never acknowledged."""
    write_fault: float = 0.0
    read_fault: float = 0.0
    crashes: int = 0
    torn_commit: float = 0.5
    """Share of crashes that strike during a commit instead of between two events."""
    joins: int = 0
    leaves: int = 0
    clock_skew_ms_max: int = 0
    clock_drift_ppm_max: int = 0
    converge_rounds_max: int = 20
    """Liveness bound: every live node converges within this many anti-entropy intervals of
    the final heal."""
    give_up_rounds: int = 120
    """How long the run waits for convergence past the bound, to report how late it came."""
    anti_entropy_interval_ms: int = 1_000
    dial_backoff_max_ms: int = 30_000
    author_pushes_per_s: int = 50
    """Each node's push budget per author node (``SyncLimits.author_pushes_per_s``): below
    the default, so the flooder (100 envelopes a second on every link) runs into it, and still
    far above what an honest simulated node signs."""
    author_push_burst: int = 100
    byzantine: tuple[str, ...] = ()
    """One Byzantine node of each kind named (``memmesh.sim.byzantine``), beside the ``nodes``
    honest ones; the checker then judges what the honest nodes did with their envelopes."""

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError("a swarm needs at least 2 nodes")
        if self.updates < 0 or self.duration_ms < 1:
            raise ValueError("updates must be >= 0 and duration_ms >= 1")
        if not 0 <= self.warmup_ms < self.duration_ms:
            raise ValueError("warmup_ms must be within 0..duration_ms - 1")
        for name in ("loss", "duplicate", "reorder", "write_fault", "read_fault"):
            if not 0.0 <= getattr(self, name) <= 0.9:
                raise ValueError(f"{name} must be within 0..0.9")
        if not 0.0 <= self.conflict_share <= 1.0 or not 0.0 <= self.torn_commit <= 1.0:
            raise ValueError("conflict_share and torn_commit are shares within 0..1")
        if self.latency_ms_min < 0 or self.latency_ms_max < self.latency_ms_min:
            raise ValueError("latency_ms_max must be >= latency_ms_min >= 0")
        if self.leaves >= self.nodes - 1:
            raise ValueError("leaves must leave at least 2 nodes")
        if parse_kinds(self.byzantine) != self.byzantine:
            raise ValueError("byzantine is a tuple of kind names")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def command(self) -> str:
        """The exact command line that reproduces this run."""
        byzantine = f" --byzantine {','.join(self.byzantine)}" if self.byzantine else ""
        if self.swarm:
            base = f"memmesh sim run --swarm --seed {self.seed}{byzantine}"
            same = self == swarm_options(self.seed, byzantine=self.byzantine)
            return base if same else base + " (options changed)"
        args = [f"--nodes {self.nodes}", f"--updates {self.updates}", f"--seed {self.seed}"]
        default = SimOptions(seed=self.seed)
        for flag, name in _FLAGS:
            value = getattr(self, name)
            if value != getattr(default, name):
                args.append(f"--{flag} {value}")
        if self.duration_ms != default.duration_ms:
            args.append(f"--duration {self.duration_ms / 1000}")
        if self.warmup_ms != default.warmup_ms:
            args.append(f"--warmup {self.warmup_ms / 1000}")
        if self.partitions == PARTITIONS_WITH_FLAG:
            args.append("--partitions")
        elif self.partitions:
            args.append(f"--partition-count {self.partitions}")
        if self.byzantine:
            args.append(f"--byzantine {','.join(self.byzantine)}")
        return "memmesh sim run " + " ".join(args)


_FLAGS = (
    ("loss", "loss"),
    ("duplicate", "duplicate"),
    ("reorder", "reorder"),
    ("crashes", "crashes"),
    ("joins", "joins"),
    ("leaves", "leaves"),
    ("clock-skew-ms", "clock_skew_ms_max"),
    ("conflicts", "conflict_share"),
    ("seed-peers", "seed_peers"),
)
"""CLI flags of ``memmesh sim run`` and the option each sets."""


def swarm_options(seed: int, **overrides: Any) -> SimOptions:
    """Every option drawn from ``seed``: 3-9 nodes, loss 0-30 %, duplication 0-50 %,
    reordering, partitions and heals, clogged links, crashes (some during a commit), read and
    write faults, joins and leaves, clock skew up to +-5 min and drift up to +-200 ppm."""
    r = rng_for(seed, "options")

    def sometimes(p_on: float, low: float, high: float) -> float:
        return round(r.uniform(low, high), 4) if r.random() < p_on else 0.0

    nodes = r.randint(3, 9)
    latency_min = r.randint(1, 20)
    options = SimOptions(
        seed=seed,
        swarm=True,
        nodes=nodes,
        updates=r.randint(10, 60),
        duration_ms=r.randint(3_000, 15_000),
        warmup_ms=0,
        seed_peers=r.randint(1, 2),
        agents=r.randint(1, 4),
        conflict_share=sometimes(0.7, 0.0, 0.6),
        latency_ms_min=latency_min,
        latency_ms_max=latency_min + r.randint(0, 80),
        jitter_ms_mean=r.randint(0, 30),
        loss=sometimes(0.75, 0.0, 0.30),
        duplicate=sometimes(0.75, 0.0, 0.50),
        reorder=sometimes(0.5, 0.0, 0.30),
        bandwidth_bytes_per_ms=r.choice((1_000, 12_500, 125_000)),
        partitions=r.randint(0, 4),
        clogs=r.randint(0, 3),
        flush_delay_ms=r.randint(0, 5),
        write_fault=sometimes(0.5, 0.0, 0.05),
        read_fault=sometimes(0.5, 0.0, 0.2),
        crashes=r.randint(0, 4),
        torn_commit=round(r.random(), 4),
        joins=r.randint(0, 2),
        leaves=r.randint(0, 1) if nodes > 3 else 0,
        clock_skew_ms_max=r.choice((0, r.randint(0, 300_000))),
        clock_drift_ppm_max=r.randint(0, 200),
    )
    return replace(options, **overrides) if overrides else options
