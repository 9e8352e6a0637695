"""``memmesh fuzz``: fuzz one decoder in a child process under a memory limit.

``memmesh fuzz --target T --runs N [--seed S] [--json]`` runs :func:`memmesh.fuzz.run_isolated`
(the targets, the corpus and the report: ``docs/operations.md``, "Fuzzing"). The exit status is 0
with no findings, 1 with findings (a process death included) and 2 for an unknown target.
``python -m memmesh.fuzz`` runs a target in the current process instead, with more options
(``--replay``, ``--findings-dir``, plugins).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["fuzz", "register"]


def register(app: typer.Typer) -> None:
    app.command("fuzz")(fuzz)


def fuzz(
    *,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="The decoder to fuzz (see --list).")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="Inputs, the corpus first.")] = (
        10_000
    ),
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed of the mutations (default: random).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    memory_limit_mib: Annotated[
        int, typer.Option("--memory-limit-mib", min=64, help="Address-space limit of the child.")
    ] = 512,
    corpus_dir: Annotated[
        Path | None,
        typer.Option("--corpus-dir", help="Committed inputs (default: tests/fuzz_corpus)."),
    ] = None,
    list_targets: Annotated[bool, typer.Option("--list", help="List the targets.")] = False,
) -> None:
    """Fuzz one decoder with mutated inputs in a memory-limited child process; any exception
    other than a refusal with a reason code, a slow input or a dying child is a finding."""
    from . import fuzz as harness  # noqa: PLC0415 - the harness builds a mesh when imported

    if list_targets:
        typer.echo("\n".join(sorted(harness.TARGETS)))
        return
    if target is None:
        raise typer.BadParameter("--target is required (see --list)", param_hint="--target")
    if target not in harness.TARGETS:
        known = ", ".join(sorted(harness.TARGETS))
        sys.stderr.write(f"error: unknown fuzz target {target!r}; known: {known}\n")
        raise typer.Exit(2)
    chosen = seed if seed is not None else random.SystemRandom().randrange(2**32)
    report = harness.run_isolated(
        target,
        runs,
        chosen,
        memory_limit_bytes=memory_limit_mib * 2**20,
        corpus_dir=corpus_dir if corpus_dir is not None else harness.DEFAULT_CORPUS_DIR,
    )
    if as_json:
        sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    else:
        _print(report)
    if report["findings_total"] or report["process_deaths"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    for finding in report["findings"]:
        typer.echo(f"FINDING {finding['error']}\n  input {finding['input_hex'][:400]}")
        if finding.get("traceback"):
            typer.echo(finding["traceback"])
    typer.echo(
        f"{report['target']}: {report['runs']} runs, seed {report['seed']}, "
        f"{report['accepted']} accepted, {report['findings_total']} findings, "
        f"{report['process_deaths']} process deaths, {report['inputs_per_s']} inputs/s, "
        f"slowest {report['slowest_s']} s, peak RSS {report.get('peak_rss_kib')} KiB"
    )
    for reason, count in sorted(report["rejected"].items()):
        typer.echo(f"  {reason}: {count}")
    if report.get("notes"):
        typer.echo("notes: " + json.dumps(report["notes"], sort_keys=True))
    typer.echo(f"reproduce: {report.get('command', '')}")
