"""The daemon's commands: ``node run``, ``status``, ``peers``, ``members`` and ``swarm``.

All but ``node run`` and ``swarm`` talk to a running node's local API, named by ``--api URL`` or
found from ``--data-dir`` (its ``memmesh.toml``). Heavy modules are imported inside commands.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .errors import LocalError

__all__ = ["members_app", "node_app", "peers_app", "register", "swarm_app"]

node_app = typer.Typer(help="Run a node.", no_args_is_help=True)
peers_app = typer.Typer(help="The peers a running node dials.", no_args_is_help=True)
members_app = typer.Typer(help="Mesh membership: admit and revoke keys.", no_args_is_help=True)
swarm_app = typer.Typer(help="A local swarm of node processes on loopback.", no_args_is_help=True)
types_app = typer.Typer(help="Custom claim types and their JSON schemas.", no_args_is_help=True)
policy_app = typer.Typer(
    help="Conflict policies: which rule settles a namespace.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ApiUrl = Annotated[
    str | None, typer.Option("--api", help="The node's API URL (default: from --data-dir).")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The node's data dir.")]
NodeUrl = Annotated[
    str | None,
    typer.Option("--node", "--api", help="A running node's API URL (default: from --data-dir)."),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="MEMMESH_API_TOKEN", help="API bearer token.")
]


class ApiError(LocalError):
    """The node's API refused a request or could not be reached."""


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.add_typer(peers_app, name="peers")
    app.add_typer(members_app, name="members")
    app.add_typer(swarm_app, name="swarm")
    app.add_typer(policy_app, name="policy")
    app.add_typer(types_app, name="types")
    from .cli_memory import register as register_memory_commands  # it imports this module

    register_memory_commands(app)
    from .cli_attest import register as register_attest_commands  # it imports this module
    from .cli_mcp import register as register_mcp_command  # so does this one

    register_attest_commands(app)
    register_mcp_command(app)
    from .cli_evidence import evidence_app  # it imports this module too

    app.add_typer(evidence_app, name="evidence")
    from .cli_fuzz import register as register_fuzz_command

    register_fuzz_command(app)
    app.command("status")(status)


# -- node run -------------------------------------------------------------------------------------


@node_app.command("run")
def node_run(
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="A TOML config file.")] = None,
    gossip_port: Annotated[int | None, typer.Option(help="Gossip listener port.")] = None,
    api_port: Annotated[int | None, typer.Option(help="Local API port.")] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="A peer's gossip URL (repeatable).")
    ] = None,
    start_isolated: Annotated[
        bool | None,
        typer.Option(
            "--start-isolated/--no-start-isolated",
            help="Write before any peer has shown this node's own log (DESIGN §4 rule 6).",
        ),
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="console or json.")] = None,
) -> None:
    """Run the node until SIGTERM or SIGINT; it then commits what is staged and closes."""
    import asyncio

    from .config import load_settings
    from .runtime import NodeRuntime

    flags: dict[str, Any] = {
        "data_dir": data_dir,
        "gossip_port": gossip_port,
        "api_port": api_port,
        "peers": peer,
        "start_isolated": start_isolated,
        "log_format": log_format,
    }
    settings = load_settings(config, **{k: v for k, v in flags.items() if v is not None})
    asyncio.run(NodeRuntime(settings).run())


# -- talking to a node --------------------------------------------------------------------------


def _base(api: str | None, data_dir: Path | None) -> str:
    if api is not None:
        return api.rstrip("/")
    from .config import load_settings

    settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host  # noqa: S104
    return f"http://{host}:{settings.api_port}"


def _call(
    base: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    return json.loads(_fetch(base, method, path, body, token) or b"{}")


def _fetch(
    base: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    *,
    timeout_s: float = 30.0,
) -> bytes:
    """The raw answer of one API call; ``ApiError`` with the node's reason if it refuses."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ApiError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise ApiError(f"cannot reach the node at {base}: {exc}") from None


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        Console().print_json(json.dumps(data))


def status(
    api: ApiUrl = None, data_dir: DataDir = None, token: Token = None, as_json: JsonFlag = False
) -> None:
    """A running node's state: frontier, peers, buffers, whether it may write."""
    state = _call(_base(api, data_dir), "GET", "/v1/state", token=token)
    if as_json:
        _print(state, True)
        return
    console = Console()
    console.print(f"node {state['node'][:16]}  mesh {state['mesh'][:16]}  gossip {state['gossip']}")
    console.print(
        f"envelopes {state['envelopes']}  live claims {state['live_claims']}  "
        f"digest {state['claims_digest'][:16]}  may write: {state['may_write']}  "
        f"evidence {state['evidence']}  loop held max {state['loop_block_ms_max']} ms  "
        f"gc pause max {state['gc']['pause_ms_max']} ms"
    )
    sig = state["signals"]

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    console.print(
        f"[bold]signals[/]  provenance {share(sig['provenance_share'])} of "
        f"{sig['entries']} entries  |  conflicts {sig['conflicts_detected']} detected, "
        f"{sig['conflicts_resolved']} resolved, {sig['conflicts_open']} open"
        f" (p50 {sig['resolution_ms_p50'] if sig['resolution_ms_p50'] is not None else '-'} ms)"
        f"  |  decisions traceable {share(sig['traceable_share'])} of {sig['decisions']}"
        f"  |  incidents {share(sig['incidents_per_read'])} of {sig['reads']} reads "
        f"({sig['stale_reads']} stale, {sig['poisoned_reads']} poisoned)"
    )
    health = "ok" if state["may_write"] and state["active_peers"] else "degraded"
    console.print(
        f"[bold]health[/]  {health}: {state['active_peers']} active peers, "
        f"buffered {state['buffered']}, rejected {sum(state['rejected'].values())}, "
        f"attestations {state['attestations']}"
    )
    for author, dropped in state.get("throttled", {}).items():
        console.print(
            f"[bold]flagged[/]  member {author[:16]} pushed past its budget: {dropped} envelopes "
            "dropped here (fetched later by anti-entropy)"
        )
    table = Table("peer", "node", "state", "in sync", "frames in", "frames out")
    for p in state["peers"]:
        table.add_row(
            p["handle"],
            (p["node"] or "")[:16],
            p["state"],
            str(p["in_sync"]),
            str(p["frames_in"]),
            str(p["frames_out"]),
        )
    console.print(table)


@peers_app.command("list")
def peers_list(
    api: ApiUrl = None, data_dir: DataDir = None, token: Token = None, as_json: JsonFlag = False
) -> None:
    """The node's sessions with peers."""
    _print(_call(_base(api, data_dir), "GET", "/v1/peers", token=token), as_json)


@peers_app.command("add")
def peers_add(url: str, api: ApiUrl = None, data_dir: DataDir = None, token: Token = None) -> None:
    """Dial a peer's gossip URL (and keep redialling it)."""
    _print(_call(_base(api, data_dir), "POST", "/v1/peers", {"url": url}, token), True)


@peers_app.command("remove")
def peers_remove(
    url: str, api: ApiUrl = None, data_dir: DataDir = None, token: Token = None
) -> None:
    """Stop dialling a peer and close its connection."""
    _print(_call(_base(api, data_dir), "DELETE", "/v1/peers", {"url": url}, token), True)


# -- membership ---------------------------------------------------------------------------------


@members_app.command("list")
def members_list(
    api: ApiUrl = None, data_dir: DataDir = None, token: Token = None, as_json: JsonFlag = False
) -> None:
    """Members as this node's replica knows them."""
    _print(_call(_base(api, data_dir), "GET", "/v1/members", token=token), as_json)


AdminKey = Annotated[Path, typer.Option("--admin-key", help="The admin's agent key file.")]


@members_app.command("add")
def members_add(
    key: Annotated[str, typer.Argument(help="The public key to admit, hex.")],
    role: Annotated[str, typer.Option(help="node, writer, resolver, reader or admin.")],
    admin_key: AdminKey,
    chain_out: Annotated[
        Path | None,
        typer.Option(help="Write the new member's admit chain here (a joining node needs it)."),
    ] = None,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
) -> None:
    """Admit a key: an admit claim signed by the admin, written through the node."""
    from .membership import Role

    Role(role)  # a clear error for an unknown role
    bytes.fromhex(key)
    result = _signed_claim(
        api, data_dir, token, admin_key, MEMBERSHIP, key, "admit", {"key": key, "role": role}
    )
    base = _base(api, data_dir)
    chain = _call(base, "GET", f"/v1/members/{key}/chain", token=token)["chain"]
    if chain_out is not None:
        from .runtime import write_admit_chain

        write_admit_chain(chain_out, [bytes.fromhex(link) for link in chain])
    result["chain_links"] = len(chain)
    _print(result, True)


@members_app.command("revoke")
def members_revoke(
    key: Annotated[str, typer.Argument(help="The public key to revoke, hex.")],
    admin_key: AdminKey,
    node_seq: Annotated[
        int | None, typer.Option(help="For a node key: its last seq that stays live.")
    ] = None,
    epoch: Annotated[int, typer.Option(help="For a node key: the epoch of that seq.")] = 1,
    agent_seq: Annotated[
        int | None, typer.Option(help="For an agent key: its last claim seq that stays live.")
    ] = None,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
) -> None:
    """Revoke a key past a cutoff (exactly one of --node-seq or --agent-seq)."""
    if (node_seq is None) == (agent_seq is None):
        raise typer.BadParameter("give exactly one of --node-seq and --agent-seq")
    cutoff = {"epoch": epoch, "seq": node_seq} if node_seq is not None else {"aseq": agent_seq}
    _print(
        _signed_claim(
            api,
            data_dir,
            token,
            admin_key,
            MEMBERSHIP,
            key,
            "revoke",
            {"key": key, "cutoff": cutoff},
        ),
        True,
    )


@policy_app.command("set")
def policy_set(
    pattern: Annotated[str, typer.Argument(help="Namespace pattern: a.b, a.*, a.**.")],
    rule: Annotated[
        str, typer.Option(help="lww, trust, quorum, priority, manual or a custom one.")
    ],
    admin_key: AdminKey,
    version: Annotated[int, typer.Option(help="Higher versions win for one pattern.")] = 1,
    params: Annotated[str, typer.Option(help="The rule's params, a JSON object.")] = "{}",
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
) -> None:
    """Set the rule for a namespace pattern: a policy claim signed by the admin (see
    docs/policies.md)."""
    from .memory.types import POLICY_NAMESPACE
    from .policy import parse_policy_value

    try:
        value = {"pattern": pattern, "rule": rule, "version": version, "params": json.loads(params)}
        parse_policy_value(value)
    except ValueError as exc:  # json's errors are ValueErrors too
        raise typer.BadParameter(str(exc)) from None
    _print(
        _signed_claim(api, data_dir, token, admin_key, POLICY_NAMESPACE, pattern, "policy", value),
        True,
    )


@types_app.command("register")
def types_register(
    name: Annotated[str, typer.Argument(help="The type name, such as invoice.")],
    schema: Annotated[Path, typer.Option(help="A JSON Schema (2020-12) file.")],
    admin_key: AdminKey,
    version: Annotated[int, typer.Option(help="Higher versions win.")] = 1,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
) -> None:
    """Register a custom claim type: a schema claim signed by the admin. Claims of the type
    written after it is known are checked against it (docs/memory.md)."""
    from .memory.types import TYPES_NAMESPACE, parse_schema_value

    try:
        document = json.loads(schema.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"--schema: {exc}") from None
    value = {"schema": document, "version": version}
    if parse_schema_value(name, value) is None:
        raise typer.BadParameter(
            "not a registration: a custom type name (not built in), a version >= 1 and a valid "
            "JSON Schema 2020-12 object"
        )
    _print(
        _signed_claim(api, data_dir, token, admin_key, TYPES_NAMESPACE, name, "schema", value),
        True,
    )


MEMBERSHIP = ("_mesh", "members")


def _signed_claim(
    api: str | None,
    data_dir: Path | None,
    token: str | None,
    key_file: Path,
    namespace: tuple[str, ...],
    key: str,
    kind: str,
    value: dict[str, Any],
) -> dict[str, Any]:
    """A claim signed here with ``key_file`` (an admin's key never leaves this process),
    written through the node."""
    import time

    from .claims import make_claim
    from .crypto import read_key_file

    agent = read_key_file(key_file)
    base = _base(api, data_dir)
    state = _call(base, "GET", "/v1/state", token=token)
    last = _call(base, "GET", f"/v1/agents/{agent.public_key.hex()}", token=token)["last_aseq"]
    claim = make_claim(
        agent,
        mesh_id=bytes.fromhex(state["mesh"]),
        aseq=last + 1,
        hlc=(time.time_ns() // 1_000_000, 0),
        namespace=namespace,
        key=key,
        type=kind,
        value=value,
    )
    result: dict[str, Any] = _call(base, "POST", "/v1/claims", {"claim": claim.raw.hex()}, token)
    return result


# -- swarm --------------------------------------------------------------------------------------


@swarm_app.command("up")
def swarm_up(
    nodes: Annotated[int, typer.Option(help="How many node processes.")] = 3,
    directory: Annotated[Path, typer.Option("--dir", help="Where the data dirs go.")] = Path(
        "swarm"
    ),
    base_port: Annotated[int | None, typer.Option(help="First port (default: free ports).")] = None,
    no_peers: Annotated[bool, typer.Option("--no-peers", help="Start them unconnected.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a local swarm of node processes on loopback; print where each listens."""
    from .runtime.swarm import swarm_up as up

    result = up(nodes, directory, base_port=base_port, no_peers=no_peers)
    if as_json:
        _print(result, True)
        return
    table = Table("name", "api", "gossip", "pubkey", "pid", title=f"mesh {result['mesh'][:16]}")
    for node in result["nodes"]:
        table.add_row(
            node["name"], node["api"], node["gossip"], node["pubkey"][:16], str(node["pid"])
        )
    Console().print(table)


@swarm_app.command("down")
def swarm_down(
    directory: Annotated[Path, typer.Option("--dir", help="The swarm's directory.")] = Path(
        "swarm"
    ),
    as_json: JsonFlag = False,
) -> None:
    """Stop every node of the swarm (SIGTERM, then SIGKILL after a grace period)."""
    from .runtime.swarm import swarm_down as down

    _print(down(directory), as_json)
