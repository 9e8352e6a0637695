"""The JSON report of a run and its plots.

Every figure is computed from what the run recorded; the definitions travel in the report
(``definitions``) so a reader of the JSON alone knows what each number counts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..core.messages import Envelopes, encode_message
from .flood import FloodResult, FloodUpdate, run_flood
from .metrics import percentile
from .run import SimRun

__all__ = ["DEFINITIONS", "byzantine_report", "flood_updates", "make_report", "write_plots"]

DEFINITIONS = {
    "rounds": "per update, the gossip hops (message generations from the writer, pushed or "
    "fetched) after which the last node integrated it; p50/p99 over updates",
    "update": "an envelope committed by its author during the run (one acknowledged local "
    "write, or a few written within one commit window)",
    "deliveries_per_update_per_node": "envelope copies received by nodes, duplicates included, "
    "over updates x (nodes - 1)",
    "bytes_per_update": "every byte of every frame sent (handshakes, anti-entropy and lost "
    "frames included) over updates",
    "converge_after_heal_rounds": "anti-entropy intervals from the final heal until every live "
    "node held every envelope (same frontier and claims digest), rounded up",
    "spread_ms": "virtual time from a write's acknowledgement to the last node integrating it",
    "first_copy_pushed_share": "share of (envelope, node) pairs whose first copy came by eager "
    "push rather than by a fetch (anti-entropy or a missing dependency)",
}


def flood_updates(run: SimRun, limit: int) -> list[FloodUpdate]:
    """The run's updates for the flooding baseline (every k-th when over ``limit``), each
    with the size of a real one-envelope push frame."""
    nodes = run.cluster.nodes
    spreads = sorted(run.metrics.spread.items(), key=lambda item: (item[1].written_us, item[0]))
    spreads = [(i, s) for i, s in spreads if s.origin < run.options.nodes]
    step = max(1, -(-len(spreads) // limit)) if limit else 1
    chosen: list[FloodUpdate] = []
    for env_id, spread in spreads[::step]:
        raw = nodes[spread.origin].disk.memory.envelopes.get(env_id)
        if raw is not None:
            frame = len(encode_message(Envelopes(0, [raw], False)))
            chosen.append(FloodUpdate(spread.written_us, spread.origin, frame))
    return chosen


def byzantine_report(run: SimRun) -> dict[str, Any]:
    """Per Byzantine kind: what its attackers sent (envelope copies by variant), what they
    built (by what an honest node must do with it), copies delivered to honest nodes,
    rejections by reason (straight from the Byzantine peer), and at the end the (honest node,
    envelope) pairs held excluded, by reason, or live."""
    by_kind = run.checker.byzantine_report()
    for attacker in run.attackers:
        entry = by_kind.setdefault(attacker.kind, {})
        sent = entry.setdefault("sent", {})
        assert isinstance(sent, dict)
        for variant, copies in attacker.sent.variants.items():
            sent[variant] = sent.get(variant, 0) + copies
        entry["sent"] = dict(sorted(sent.items()))
        entry["frames"] = int(entry.get("frames", 0)) + attacker.sent.frames  # type: ignore[call-overload]
    return {
        "kinds": list(run.options.byzantine),
        "nodes": [n.index for n in run.cluster.nodes if n.byzantine is not None],
        "equivocation_evidence": len(run.checker.byz_evidence),
        "by_kind": {kind: by_kind[kind] for kind in sorted(by_kind)},
    }


def make_report(run: SimRun, *, flood_limit: int | None = 200) -> dict[str, Any]:
    """The JSON report; ``flood_limit`` updates are replayed by flooding (None: no baseline)."""
    options, metrics, stats = run.options, run.metrics, run.cluster.network.stats
    updates = run.updates
    live = [n for n in run.cluster.nodes if not n.left]
    pairs = updates * max(1, len(live) - 1)
    hops = [s.hops_max for s in metrics.spread.values()]
    spread_us = [s.last_us - s.written_us for s in metrics.spread.values()]
    links = run.cluster.network.links
    first_copies = metrics.first_copies_pushed + metrics.first_copies_fetched
    disks = [n.disk for n in run.cluster.nodes]
    report: dict[str, Any] = {
        "simulator": "memmesh sim (real MeshCore nodes, virtual time)",
        "seed": options.seed,
        "command": options.command(),
        "ok": run.ok,
        "failure_kind": run.failure_kind,
        "failure": run.failure,
        "converged": run.converged_us is not None and run.failure_kind != "divergence",
        "converge_after_heal_rounds": run.converge_rounds(),
        "converge_after_heal_ms": None
        if run.converged_us is None
        else (run.converged_us - run.heal_us) / 1000,
        "converge_rounds_max": options.converge_rounds_max,
        "nodes": options.nodes,
        "nodes_live_at_end": len(live),
        "updates": updates,
        "writes": {
            "submitted": len(run.writes),
            "acked": metrics.writes_acked,
            "failed": dict(sorted(metrics.writes_failed.items())),
            "lost_in_crash": metrics.writes_lost_in_crash,
            "skipped_no_node": metrics.writes_skipped,
        },
        "rounds_p50": percentile(hops, 0.5),
        "rounds_p99": percentile(hops, 0.99),
        "rounds_max": max(hops, default=0),
        "spread_ms_p50": percentile(spread_us, 0.5) / 1000,
        "spread_ms_p99": percentile(spread_us, 0.99) / 1000,
        "deliveries_per_update_per_node": round(metrics.copies_delivered / pairs, 4)
        if pairs
        else 0.0,
        "duplicate_share": round(metrics.copies_already_held / metrics.copies_delivered, 4)
        if metrics.copies_delivered
        else 0.0,
        "first_copy_pushed_share": round(metrics.first_copies_pushed / first_copies, 4)
        if first_copies
        else 0.0,
        "bytes_per_update": round(stats.bytes_sent / updates, 1) if updates else 0.0,
        "bytes_per_update_per_node": round(stats.bytes_sent / pairs, 1) if pairs else 0.0,
        "messages_per_update": round(stats.frames_sent / updates, 2) if updates else 0.0,
        "by_kind": {
            kind: {
                "messages": stats.messages_by_kind[kind],
                "bytes": stats.bytes_by_kind[kind],
            }
            for kind in sorted(stats.messages_by_kind)
        },
        "virtual_s": run.virtual_us / 1e6,
        "events": run.events,
        "wall_s": round(run.wall_s, 3),
        "wall_s_by_phase": {k: round(v, 3) for k, v in run.phase_wall_s.items()},
        "events_per_wall_s": round(run.events / run.wall_s, 1) if run.wall_s else 0.0,
        "trace_hash": run.trace_hash,
        "options": options.as_dict(),
        "faults": {
            **dict(sorted(run.faults.counts.items())),
            "frames_lost": links.frames_lost,
            "frames_duplicated": links.frames_duplicated,
            "frames_reordered": links.frames_reordered,
            "frames_dropped_total": stats.frames_dropped,
            "dial_failures": stats.dial_failures,
            "disk_write_faults": sum(d.write_faults for d in disks),
            "disk_read_faults": sum(d.read_faults for d in disks),
            "crashes_in_commit": run.cluster.stats.crashes_in_commit,
            "session_refusals": dict(sorted(run.cluster.stats.refusals.items())),
            "timer_stalls": run.cluster.stats.timer_stalls,
            "pushes_throttled": sum(run.cluster.stats.throttled.values()),
        },
        "checks": {
            "safety_checks": run.checker.checks,
            "refused_for_load": run.checker.refused_for_load,
            "hops_unknown": metrics.hops_unknown,
        },
        "definitions": DEFINITIONS,
    }
    if options.byzantine:
        report["byzantine"] = byzantine_report(run)
    if flood_limit is not None:
        started = time.perf_counter()
        overlay = run.cluster.session_graph()
        flood = run_flood(options, overlay, flood_updates(run, flood_limit))
        report["flooding"] = flood.figures()
        report["flooding"]["wall_s"] = round(time.perf_counter() - started, 3)
        run.flood = flood
    return report


def write_plots(run: SimRun, out: Path) -> list[Path]:
    """PNG plots into ``out``: time to converge, cost per update, backlog over time."""
    import matplotlib  # noqa: PLC0415 - an optional extra, imported only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    flood: FloodResult | None = run.flood
    written: list[Path] = []

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    spread = sorted((s.last_us - s.written_us) / 1000 for s in run.metrics.spread.values())
    if spread:
        left.plot(spread, [(i + 1) / len(spread) for i in range(len(spread))], label="memmesh")
    if flood is not None and flood.spread_us:
        times = sorted(t / 1000 for t in flood.spread_us)
        left.plot(times, [(i + 1) / len(times) for i in range(len(times))], label="flooding")
    left.set(
        xlabel="ms from acknowledgement to the last node",
        ylabel="share of updates",
        title="Time to reach every node",
    )
    left.legend()
    hops = [s.hops_max for s in run.metrics.spread.values()]
    bins = range(0, max([*hops, *(flood.hops if flood else []), 1]) + 2)
    right.hist(hops, bins=bins, alpha=0.6, label="memmesh")
    if flood is not None:
        right.hist(flood.hops, bins=bins, alpha=0.6, label="flooding")
    right.set(xlabel="rounds (hops of the last node)", ylabel="updates", title="Rounds")
    right.legend()
    written.append(_save(fig, out / "converge.png"))

    stats = run.cluster.network.stats
    updates = max(1, run.updates)
    kinds = sorted(stats.messages_by_kind)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(kinds, [stats.messages_by_kind[k] / updates for k in kinds])
    left.set(ylabel="messages per update", title="Messages per update, by kind")
    left.tick_params(axis="x", rotation=45)
    right.bar(kinds, [stats.bytes_by_kind[k] / updates for k in kinds], label="memmesh")
    if flood is not None and flood.updates:
        right.bar(["flooding"], [flood.frames_bytes / flood.updates], label="flooding")
    right.set(ylabel="bytes per update", title="Bytes per update, by kind")
    right.tick_params(axis="x", rotation=45)
    right.legend()
    written.append(_save(fig, out / "cost.png"))

    fig, axis = plt.subplots(figsize=(8, 4))
    samples = run.metrics.backlog
    axis.plot(
        [t / 1e6 for t, _, _ in samples],
        [m for _, m, _ in samples],
        label="envelopes missing, summed over up nodes",
    )
    axis.plot([t / 1e6 for t, _, _ in samples], [e for _, _, e in samples], label="events pending")
    axis.axvline(run.heal_us / 1e6, color="grey", linestyle="--", label="final heal")
    axis.set(xlabel="virtual seconds", ylabel="count", title="Backlog over time")
    axis.legend()
    written.append(_save(fig, out / "backlog.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    return path
