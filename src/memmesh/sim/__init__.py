"""The deterministic swarm simulator: real ``MeshCore`` nodes on virtual time, a faulty
network, faulty disks and skewed clocks, all derived from one printed seed.

``run_sim(SimOptions(seed=...))`` runs one simulation; ``swarm_options(seed)`` draws every
option from the seed, as ``memmesh sim campaign`` does. See ``docs/simulation.md``.
"""

from .options import SimOptions, swarm_options
from .run import SimRun, run_sim, summary

__all__ = ["SimOptions", "SimRun", "run_sim", "summary", "swarm_options"]
