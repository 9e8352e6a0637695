"""The ``memmesh`` command line (also ``python -m memmesh``).

Every command that prints data takes ``--json``. Heavy modules are imported inside the command
that needs them, so ``memmesh --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .cli_node import register as register_node_commands
from .cli_sim import sim_app
from .crypto import SigningKey, read_key_file, write_key_file
from .errors import MemmeshError
from .ids import short_id
from .teardown import exit_now_if_asked, skip_teardown

if TYPE_CHECKING:
    from .membership import Genesis

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
register_node_commands(app)
app.add_typer(sim_app, name="sim")

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


@app.command()
def init(
    *,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="The node's directory, created with mode 0700 "
            "(default: MEMMESH_DATA_DIR, else ./memmesh-data)."
        ),
    ] = None,
    genesis: Annotated[
        Path | None,
        typer.Option(help="Join the mesh of this genesis file instead of founding a new mesh."),
    ] = None,
    mesh_name: Annotated[
        str | None, typer.Option(help="Name of the new mesh (default: memmesh).")
    ] = None,
    gossip_port: Annotated[
        int | None, typer.Option(help="Sync listener port for memmesh.toml (default 7400).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="REST API port for memmesh.toml (default 7401).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a node's data dir (keys, genesis, memmesh.toml); without --genesis, found a mesh.

    A new mesh gets a new admin key (admin.key) and a genesis that admits this node (role node)
    and its agent (role writer). Init never overwrites a file.
    """
    from .config import CONFIG_FILE_NAME, load_settings, render_config_toml, write_new_file
    from .membership import Role, make_genesis

    if genesis is not None and mesh_name is not None:
        _init_refuse("mesh_name", "flag --mesh-name", "only names a new mesh, not with --genesis")
    name = "memmesh" if mesh_name is None else mesh_name
    if not 0 < len(name.encode()) <= 256:
        _init_refuse("mesh_name", "flag --mesh-name", "must be 1 to 256 bytes of UTF-8")
    settings = load_settings(data_dir=data_dir, gossip_port=gossip_port, api_port=api_port)
    directory = settings.data_dir
    config_path = directory / CONFIG_FILE_NAME
    admin_path = directory / "admin.key" if genesis is None else None
    _init_check_free(
        directory,
        settings.node_key_path,
        [settings.agent_key_path, settings.genesis_path, config_path, admin_path],
    )
    joined = None if genesis is None else _init_read_genesis(genesis)
    _init_make_dir(directory)

    node_key = SigningKey.generate()
    agent_key = SigningKey.generate()
    write_key_file(settings.agent_key_path, agent_key)
    admin_key: SigningKey | None = None
    if joined is None:
        assert admin_path is not None
        admin_key = SigningKey.generate()
        write_key_file(admin_path, admin_key)
        members = [(node_key.public_key, Role.NODE), (agent_key.public_key, Role.WRITER)]
        mesh = make_genesis(admin_key, name, members)
    else:
        mesh = joined
    write_new_file(settings.genesis_path, mesh.raw)
    ports = {"gossip_port": settings.gossip_port, "api_port": settings.api_port}
    write_new_file(config_path, render_config_toml(ports, _INIT_CONFIG_HEADER).encode())
    # The node key goes last: a data dir holding one is complete, so a second init there is a
    # mistake, never a repair.
    write_key_file(settings.node_key_path, node_key)

    needs_admission = (
        []
        if joined is None
        else [
            {"public_key": node_key.public_key.hex(), "role": Role.NODE.value},
            {"public_key": agent_key.public_key.hex(), "role": Role.WRITER.value},
        ]
    )
    result: dict[str, Any] = {
        "data_dir": str(directory),
        "founded": joined is None,
        "mesh_name": mesh.name,
        "mesh_id": mesh.mesh_id.hex(),
        "node_public_key": node_key.public_key.hex(),
        "agent_public_key": agent_key.public_key.hex(),
        "admin_public_key": None if admin_key is None else admin_key.public_key.hex(),
        "admin_key_file": None if admin_path is None else str(admin_path),
        "genesis_file": str(settings.genesis_path),
        "config_file": str(config_path),
        "needs_admission": needs_admission,
    }
    if as_json:
        _emit(result, True, "")
        return
    _emit(
        {k: v for k, v in result.items() if v is not None and k != "needs_admission"},
        False,
        "memmesh init",
    )
    if joined is None:
        typer.echo(
            f"Founded mesh {mesh.name!r}; this node and its agent are members. {admin_path} "
            "can admit and revoke members: keep it safe, and off this machine once the mesh runs."
        )
    else:
        typer.echo(
            f"Joining mesh {mesh.name!r}. Before this node can sync, an admin must admit its "
            f"node key {node_key.public_key.hex()} (role node) and its agent key "
            f"{agent_key.public_key.hex()} (role writer); the admit chain goes in "
            f"{settings.admit_chain_path}."
        )


_INIT_CONFIG_HEADER = """\
memmesh node configuration, written by `memmesh init`.
Precedence: flags > MEMMESH_* environment variables > this file > defaults.
Every setting: docs/operations.md, section Configuration. Relative paths in this
file are relative to its directory; keys and genesis default to files beside it."""


def _init_refuse(setting: str | None, source: str, message: str) -> NoReturn:
    from .config import ConfigError, ConfigProblem

    raise ConfigError([ConfigProblem(setting, source, message)])


def _init_check_free(directory: Path, node_key: Path, others: list[Path | None]) -> None:
    """Refuse before writing anything: init never overwrites a key or any other file."""
    from .errors import LocalError

    if node_key.exists():
        raise LocalError(
            f"{directory}: already holds a node key ({node_key}); refusing to overwrite keys: "
            "choose another --data-dir for a new node"
        )
    existing = [str(p) for p in others if p is not None and p.exists()]
    if existing:
        raise LocalError(
            f"{directory}: already holds {', '.join(existing)}; refusing to overwrite "
            "(remove what a failed init left, or choose another --data-dir)"
        )


def _init_read_genesis(path: Path) -> Genesis:
    from .errors import Rejected
    from .membership import GENESIS_BYTES_MAX, decode_genesis

    try:
        with path.open("rb") as f:
            return decode_genesis(f.read(GENESIS_BYTES_MAX + 1))
    except OSError as exc:
        _init_refuse("genesis", f"flag --genesis {path}", f"cannot read: {exc.strerror}")
    except Rejected as exc:
        _init_refuse("genesis", f"flag --genesis {path}", f"not a valid genesis: {exc}")


def _init_make_dir(directory: Path) -> None:
    import os

    from .errors import LocalError

    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; an old dir tightens
    except OSError as exc:
        raise LocalError(f"{directory}: cannot create the data dir: {exc.strerror}") from None


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


@bench_app.command("transport")
def bench_transport(
    nodes: Annotated[
        int, typer.Option(help="Node processes, and relay clients (one writer, the rest receive).")
    ] = 10,
    rates: Annotated[
        str, typer.Option(help="Offered rates in updates/s, comma-separated (the ladder).")
    ] = "50,100,200,500,1000,2000",
    seconds_per_rate: Annotated[float, typer.Option(help="Seconds each rate is offered.")] = 5.0,
    directory: BenchDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Propagation from one writer to N-1 processes: memmesh nodes against the
    pycrdt-websocket relay, over a ladder of offered rates."""
    from .bench.transport import run_transport_bench

    try:
        ladder = [int(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise typer.BadParameter(
            "rates are integers, comma-separated", param_hint="--rates"
        ) from None
    result = run_transport_bench(
        nodes=nodes, rates=ladder, seconds_per_rate=seconds_per_rate, directory=directory
    )
    _emit(result, as_json, "memmesh bench transport")


@bench_app.command("convergence")
def bench_convergence(
    nodes: Annotated[int, typer.Option(help="Simulated nodes (real cores).")] = 100,
    updates: Annotated[int, typer.Option(help="Writes, spread over the run.")] = 200,
    seed: Annotated[int, typer.Option(help="The simulation seed.")] = 1,
    loss: Annotated[float, typer.Option(help="Share of frames lost on every link.")] = 0.01,
    as_json: JsonFlag = False,
) -> None:
    """Rounds, time, deliveries and bytes to converge in the simulator, against plain
    flooding over the same simulated network in the same run."""
    from .bench.convergence import run_convergence_bench

    result = run_convergence_bench(nodes=nodes, updates=updates, seed=seed, loss=loss)
    skip_teardown()  # memmesh.teardown: the simulations' heap need not be freed at exit
    _emit(result, as_json, "memmesh bench convergence")


@bench_app.command("view")
def bench_view(
    claims: Annotated[int, typer.Option(help="Claims written, over 100 namespaces.")] = 100_000,
    conflict_rounds: Annotated[
        int, typer.Option(help="Conflicts made on two real nodes, to time their visibility.")
    ] = 30,
    directory: BenchDir = None,
    as_json: JsonFlag = False,
) -> None:
    """The memory view at scale: puts, gets, search, RSS against a bare pycrdt document, and
    how soon two nodes list a conflict."""
    from .bench.view import run_view_bench

    result = run_view_bench(claims=claims, conflict_rounds=conflict_rounds, directory=directory)
    _emit(result, as_json, "memmesh bench view")


@bench_app.command("attest")
def bench_attest(
    claims: Annotated[int, typer.Option(help="Claims attested (one per envelope).")] = 100_000,
    new_claims: Annotated[
        int, typer.Option(help="Claims written before each incremental attestation.")
    ] = 1_000,
    as_json: JsonFlag = False,
) -> None:
    """Attestations at scale: a new one after new claims, full offline verification against
    the signatures it must check, and the size of a claim's inclusion proof."""
    from .bench.attest import run_attest_bench

    result = run_attest_bench(claims=claims, new_claims=new_claims)
    _emit(result, as_json, "memmesh bench attest")


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "--data-dir", help="The artefacts folder (default ./memmesh-demo/run-<UTC>)."
        ),
    ] = None,
) -> None:
    """A customer-success swarm of four nodes: facts with provenance, a conflict made during a
    partition and settled by policy, a decision citing its receipt, and an attestation verified
    offline. Checks every step; exits 1 if one does not behave as told."""
    from .demo import DemoFailed, run_demo

    try:
        run_demo(Console(), out)
    except DemoFailed as exc:
        Console(stderr=True).print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc


def main() -> None:
    """Console entry point: our own errors become one line on stderr and exit status 1."""
    try:
        app()
    except MemmeshError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        exit_now_if_asked(1)
        sys.exit(1)
    except SystemExit as exc:
        exit_now_if_asked(exc.code)  # memmesh.teardown: a command with a large heap
        raise
