"""The ``memmesh`` command line (also ``python -m memmesh``).

Every command that prints data takes ``--json``. Heavy modules are imported inside the command
that needs them, so ``memmesh --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .crypto import SigningKey, read_key_file, write_key_file
from .errors import MemmeshError
from .ids import short_id

app = typer.Typer(
    name="memmesh",
    help="Memory Mesh: shared, signed, attestable memory for swarms of AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Make and inspect Ed25519 key files.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks with baselines measured in the same run.")
app.add_typer(keys_app, name="keys")
app.add_typer(bench_app, name="bench", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BenchDir = Annotated[
    Path | None, typer.Option("--dir", help="Where to put the temporary stores (default: TMPDIR).")
]


def _emit(data: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        return
    table = Table("figure", "value", title=title)
    for name, value in data.items():
        table.add_row(name, str(value))
    Console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Argument(help="Key file to create (mode 0600).")],
    force: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Generate an Ed25519 key and write it to OUT."""
    key = SigningKey.generate()
    write_key_file(out, key, overwrite=force)
    _emit(
        {
            "path": str(out),
            "public_key": key.public_key.hex(),
            "short_id": short_id(key.public_key),
        },
        as_json,
        "key generated",
    )


@keys_app.command("pubkey")
def keys_pubkey(
    path: Annotated[Path, typer.Argument(help="Key file to read.")],
    as_json: JsonFlag = False,
) -> None:
    """Print the public key of a key file."""
    key = read_key_file(path)
    if as_json:
        _emit({"public_key": key.public_key.hex(), "short_id": short_id(key.public_key)}, True, "")
    else:
        typer.echo(key.public_key.hex())


@bench_app.command("store")
def bench_store(
    commits: Annotated[int, typer.Option(help="Single-envelope commits per round.")] = 300,
    groups: Annotated[int, typer.Option(help="64-envelope commits per round.")] = 30,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds; figures are medians.")] = 3,
    directory: BenchDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Durable commit throughput of the LMDB store against raw LMDB."""
    from .bench.store import run_store_bench

    result = run_store_bench(commits=commits, groups=groups, rounds=rounds, directory=directory)
    _emit(result, as_json, "memmesh bench store")


@bench_app.command("core")
def bench_core(
    envelopes: Annotated[int, typer.Option(help="Remote envelopes to ingest.")] = 3000,
    local_claims: Annotated[int, typer.Option(help="Claims for the local write rate.")] = 12_800,
    latency_samples: Annotated[int, typer.Option(help="Single writes timed one by one.")] = 500,
    directory: BenchDir = None,
    as_json: JsonFlag = False,
) -> None:
    """The admission pipeline against raw Ed25519 verify and raw pycrdt apply."""
    from .bench.core import run_core_bench

    result = run_core_bench(
        envelopes=envelopes,
        local_claims=local_claims,
        latency_samples=latency_samples,
        directory=directory,
    )
    _emit(result, as_json, "memmesh bench core")


@bench_app.command("sync")
def bench_sync(
    claims: Annotated[
        int, typer.Option(help="Claims the catching-up replica is behind.")
    ] = 100_000,
    wire_claims: Annotated[
        int, typer.Option(help="Claims pushed per envelope size for the wire bytes.")
    ] = 2048,
    directory: BenchDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Sync wire bytes against bare Yjs updates, and catch-up against raw Ed25519 verify."""
    from .bench.sync import run_sync_bench

    result = run_sync_bench(claims=claims, wire_claims=wire_claims, directory=directory)
    _emit(result, as_json, "memmesh bench sync")


@app.command()
def demo(
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the demo's files here (default: a temp dir).")
    ] = None,
) -> None:
    """Show what Memory Mesh does so far, checking each step."""
    from .demo import DemoFailed, run_demo

    try:
        run_demo(Console(), data_dir)
    except DemoFailed as exc:
        Console(stderr=True).print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc


def main() -> None:
    """Console entry point: our own errors become one line on stderr and exit status 1."""
    try:
        app()
    except MemmeshError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
