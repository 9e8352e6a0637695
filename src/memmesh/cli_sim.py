"""``memmesh sim``: run the deterministic swarm simulator, one seed or a campaign of seeds.

The simulator is imported inside each command, so ``memmesh --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .teardown import skip_teardown

if TYPE_CHECKING:
    from .sim import SimOptions

__all__ = ["sim_app"]

sim_app = typer.Typer(
    help="Deterministic swarm simulation: real cores, virtual time, one seed.",
    no_args_is_help=True,
)

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON (no progress bar).")]
_BYZANTINE = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated Byzantine node kinds to add, one node each: forger, replayer, "
        "equivocator, spoofer, eraser, poisoner, revoked, flooder."
    ),
]


def _kinds(text: str | None) -> tuple[str, ...]:
    from .sim.options import parse_kinds  # noqa: PLC0415 - keeps --help fast

    try:
        return parse_kinds(text or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--byzantine") from None


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


@sim_app.command("run")
def sim_run(
    *,
    nodes: Annotated[int, typer.Option(help="Nodes at the start.")] = 5,
    updates: Annotated[int, typer.Option(help="Writes the agents make.")] = 100,
    seed: Annotated[int, typer.Option(help="The seed every option and fault derives from.")] = 1,
    loss: Annotated[float, typer.Option(help="Share of frames lost on every link.")] = 0.0,
    duplicate: Annotated[float, typer.Option(help="Share of frames delivered twice.")] = 0.0,
    reorder: Annotated[float, typer.Option(help="Share of frames delayed past later ones.")] = 0.0,
    partitions: Annotated[
        bool, typer.Option("--partitions", help="Three partition episodes, each healed.")
    ] = False,
    partition_count: Annotated[
        int | None, typer.Option(help="Partition episodes (instead of --partitions).")
    ] = None,
    crashes: Annotated[int, typer.Option(help="Node crashes (some inside a commit).")] = 0,
    joins: Annotated[int, typer.Option(help="Nodes that join during the run.")] = 0,
    leaves: Annotated[int, typer.Option(help="Nodes that leave (after draining).")] = 0,
    clock_skew_ms: Annotated[int, typer.Option(help="Largest clock skew, +- milliseconds.")] = 0,
    conflicts: Annotated[
        float, typer.Option(help="Share of writes made concurrently to one hot subject.")
    ] = 0.1,
    seed_peers: Annotated[
        int, typer.Option(help="Random addresses each node is given besides its ring neighbour.")
    ] = 2,
    duration: Annotated[
        float, typer.Option(help="Virtual seconds of the fault phase (writes happen in it).")
    ] = 10.0,
    warmup: Annotated[
        float,
        typer.Option(
            help="Virtual seconds before the first write, while the overlay and the push tree "
            "form (0: write from the start)."
        ),
    ] = 1.0,
    swarm: Annotated[
        bool, typer.Option("--swarm", help="Draw every option from the seed, as a campaign does.")
    ] = False,
    flood_updates: Annotated[
        int, typer.Option(help="Updates the flooding baseline replays (0: none).")
    ] = 200,
    out: Annotated[Path | None, typer.Option(help="Write report.json and PNG plots here.")] = None,
    byzantine: _BYZANTINE = None,
    as_json: _JSON = False,
) -> None:
    """Run one simulation; exit 1 (printing the command that reproduces it) if it fails."""
    from .sim import SimOptions, run_sim, swarm_options  # noqa: PLC0415 - keeps --help fast
    from .sim.options import PARTITIONS_WITH_FLAG  # noqa: PLC0415
    from .sim.report import make_report, write_plots  # noqa: PLC0415

    kinds = _kinds(byzantine)
    if swarm:
        options = swarm_options(seed, byzantine=kinds) if kinds else swarm_options(seed)
    else:
        count = partition_count if partition_count is not None else 0
        if partitions:
            count = PARTITIONS_WITH_FLAG
        try:
            options = SimOptions(
                seed=seed,
                nodes=nodes,
                updates=updates,
                duration_ms=round(duration * 1000),
                warmup_ms=round(warmup * 1000),
                loss=loss,
                duplicate=duplicate,
                reorder=reorder,
                partitions=count,
                crashes=crashes,
                joins=joins,
                leaves=leaves,
                clock_skew_ms_max=clock_skew_ms,
                clock_drift_ppm_max=100 if clock_skew_ms else 0,
                conflict_share=conflicts,
                seed_peers=seed_peers,
                byzantine=kinds,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if not as_json:
        Console(stderr=True).print(f"seed {seed}: {options.command()}")
    with _progress(not as_json) as progress:
        task = progress.add_task(f"seed {seed}", total=1.0)
        run = run_sim(
            options, lambda done, phase: progress.update(task, completed=done, description=phase)
        )
        skip_teardown()  # nothing below needs cleaning up: the heap need not be freed at exit
        progress.update(task, description="flooding baseline")
        report = make_report(run, flood_limit=flood_updates or None)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        report["plots"] = [str(p) for p in write_plots(run, out)]
    _print_run(report, as_json)
    if not run.ok:
        _fail(options, run.failure or "")


def _print_run(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table("figure", "memmesh", "flooding", title=f"memmesh sim run (seed {report['seed']})")
    flood = report.get("flooding", {})
    for name in (
        "ok",
        "converged",
        "converge_after_heal_rounds",
        "nodes",
        "updates",
        "rounds_p50",
        "rounds_p99",
        "spread_ms_p50",
        "spread_ms_p99",
        "deliveries_per_update_per_node",
        "bytes_per_update",
        "events_per_wall_s",
        "wall_s",
        "trace_hash",
    ):
        table.add_row(name, str(report.get(name)), str(flood.get(name, "")))
    Console().print(table)
    if "byzantine" in report:
        _print_byzantine(report["byzantine"]["by_kind"])


def _print_byzantine(by_kind: dict[str, dict[str, Any]]) -> None:
    table = Table("kind", "rejected (by reason)", "excluded (by reason)", "held live",
                  title="Byzantine envelopes at honest nodes")  # fmt: skip
    for kind, entry in by_kind.items():
        table.add_row(
            kind,
            ", ".join(f"{r} {n}" for r, n in entry.get("rejected", {}).items()) or "-",
            ", ".join(f"{r} {n}" for r, n in entry.get("excluded", {}).items()) or "-",
            str(entry.get("held_live", 0)),
        )
    Console().print(table)


def _fail(options: SimOptions, failure: str) -> None:
    err = Console(stderr=True)
    err.print(f"[bold red]FAILED[/] seed {options.seed}: {failure}")
    err.print(f"reproduce: {options.command()}")
    raise typer.Exit(1)


@sim_app.command("campaign")
def sim_campaign(
    *,
    seeds: Annotated[int, typer.Option(help="How many seeds to run.")] = 100,
    first: Annotated[int, typer.Option(help="The first seed.")] = 0,
    jobs: Annotated[int | None, typer.Option(help="Processes (default: one per CPU).")] = None,
    byzantine: _BYZANTINE = None,
    as_json: _JSON = False,
) -> None:
    """Run seeds first..first+seeds-1, each with every option drawn from the seed (3-9 nodes,
    loss 0-30 %, duplication 0-50 %, partitions, crashes, disk faults, churn, clock skew up to
    +-5 min); print the failures with the commands that reproduce them; exit 1 if any."""
    from .sim.campaign import byzantine_totals, run_campaign  # noqa: PLC0415 - keeps --help fast

    if seeds < 1:
        raise typer.BadParameter("at least one seed", param_hint="--seeds")
    kinds = _kinds(byzantine)
    started = time.perf_counter()
    with _progress(not as_json) as progress:
        task = progress.add_task("seeds", total=seeds)
        results = run_campaign(
            range(first, first + seeds),
            jobs=jobs,
            on_result=lambda _: progress.advance(task),
            byzantine=kinds,
        )
    wall = time.perf_counter() - started
    failures = [r for r in results if not r["ok"]]
    rounds = [r["converge_rounds"] for r in results if r["converge_rounds"] is not None]
    summary = {
        "seeds": len(results),
        "first_seed": first,
        "failures": len(failures),
        "failed": [
            {
                "seed": r["seed"],
                "kind": r["failure_kind"],
                "failure": r["failure"],
                "reproduce": r["command"],
            }
            for r in failures
        ],
        "converge_after_heal_rounds_max": max(rounds, default=None),
        "events": sum(r["events"] for r in results),
        "wall_s": round(wall, 2),
        "seeds_per_s": round(len(results) / wall, 2),
    }
    if kinds:
        summary["byzantine"] = byzantine_totals(results)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console = Console()
        console.print(
            f"{summary['seeds']} seeds, {summary['failures']} failed, "
            f"{summary['seeds_per_s']} seeds/s, convergence after the final heal within "
            f"{summary['converge_after_heal_rounds_max']} rounds at most"
        )
        if "byzantine" in summary:
            _print_byzantine(summary["byzantine"])
        for failed in summary["failed"]:
            first_line = (failed["failure"] or "").splitlines()[0][:300]
            console.print(f"[bold red]seed {failed['seed']}[/] {failed['kind']}: {first_line}")
            console.print(f"  reproduce: {failed['reproduce']}")
    if failures:
        raise typer.Exit(1)
