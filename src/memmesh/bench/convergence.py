"""``memmesh bench convergence``: how a swarm of real cores converges in the simulator, against
plain flooding over the same simulated network in the same run.

One ``memmesh sim run`` (no partitions, crashes or churn; ``loss`` on every link; see
``docs/simulation.md``): ``nodes`` real ``MeshCore`` nodes, each given its ring neighbour and two
random addresses, ``updates`` writes spread over 10 virtual seconds, then the faults stop and
the run waits until every node holds every envelope.

- ``rounds_p50``/``rounds_p99``: per update, the gossip hops after which the last node
  integrated it; ``spread_ms_p50``/``spread_ms_p99``: virtual ms from acknowledgement to the last
  node; ``converge_after_end_ms``: virtual ms from the end of the writes to full convergence.
- ``deliveries_per_update_per_node``: envelope copies received (duplicates included) over
  updates x (nodes - 1); ``bytes_per_update_per_node``: every byte sent (handshakes and
  anti-entropy included) over the same; ``envelopes_bytes_per_update_per_node``: the bytes of
  ``Envelopes`` messages alone (pushed or fetched).
- ``sim_events_per_wall_s``: simulated events (frames, timers, flushes, writes) per second of
  wall time, the simulator's own speed with the real cores in it.
- ``flooding``: the same figures for a protocol where every node forwards each new envelope to
  every neighbour, over the same seed graph, link latencies, loss and frame sizes (it models no
  handshake or anti-entropy, so its bytes are push bytes only).
"""

from __future__ import annotations

import math
from typing import Any

from ..sim import SimOptions, run_sim
from ..sim.report import make_report

__all__ = ["run_convergence_bench"]


def run_convergence_bench(
    *, nodes: int = 100, updates: int = 200, seed: int = 1, loss: float = 0.01
) -> dict[str, Any]:
    options = SimOptions(seed=seed, nodes=nodes, updates=updates, loss=loss)
    run = run_sim(options)
    report = make_report(run, flood_limit=updates)
    flood = report["flooding"]
    pairs = max(1, run.updates * (nodes - 1))
    return {
        "benchmark": "convergence",
        "ok": report["ok"],
        "failure": report["failure"],
        "nodes": nodes,
        "updates": report["updates"],
        "loss": loss,
        "seed": seed,
        "command": report["command"],
        "rounds_p50": report["rounds_p50"],
        "rounds_p99": report["rounds_p99"],
        "goal_rounds_p99": math.ceil(math.log2(nodes)) + 3,
        "spread_ms_p50": report["spread_ms_p50"],
        "spread_ms_p99": report["spread_ms_p99"],
        "converge_after_end_ms": report["converge_after_heal_ms"],
        "deliveries_per_update_per_node": report["deliveries_per_update_per_node"],
        "goal_deliveries_per_update_per_node": 1.5,
        "bytes_per_update_per_node": report["bytes_per_update_per_node"],
        "envelopes_bytes_per_update_per_node": round(
            report["by_kind"].get("Envelopes", {}).get("bytes", 0) / pairs, 1
        ),
        "sim_events": report["events"],
        "sim_events_per_wall_s": report["events_per_wall_s"],
        "wall_s": report["wall_s"],
        "trace_hash": report["trace_hash"],
        "flooding": {
            "note": "simulated in this run over the same network model and topology; "
            + flood["same_network"],
            "rounds_p50": flood["rounds_p50"],
            "rounds_p99": flood["rounds_p99"],
            "spread_ms_p50": flood["spread_ms_p50"],
            "spread_ms_p99": flood["spread_ms_p99"],
            "deliveries_per_update_per_node": flood["deliveries_per_update_per_node"],
            "bytes_per_update_per_node": round(flood["bytes_per_update"] / max(1, nodes - 1), 1),
            "coverage": flood["coverage"],
            "updates_simulated": flood["updates_simulated"],
        },
    }
