"""``memmesh put|get|search|history|conflicts|resolve``: the memory, from a shell.

Each command talks to one node's API through :class:`memmesh.client.MeshClient`
(``--api URL``, or ``--data-dir DIR`` to find it); with ``--agent-key FILE`` the claim is signed
here with that agent's key instead of the node's. Every command takes ``--json``; without it a
short human form is printed. A refusal exits 1 with the node's reason code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_node import ApiUrl, DataDir, JsonFlag, Token, _base

__all__ = ["register"]

AgentKey = Annotated[
    Path | None, typer.Option("--agent-key", help="Sign with this agent key file, not the node's.")
]
Namespace = Annotated[str, typer.Argument(help="Dotted namespace, such as crm.accounts.")]
Key = Annotated[str, typer.Argument(help="The key within the namespace.")]


def register(app: typer.Typer) -> None:
    for name, command in (
        ("put", put),
        ("get", get),
        ("search", search),
        ("history", history),
        ("conflicts", conflicts),
        ("resolve", resolve),
    ):
        app.command(name)(command)


def _client(
    api: str | None, data_dir: Path | None, token: str | None, agent_key: Path | None
) -> Any:
    from .client import MeshClient
    from .crypto import read_key_file

    key = read_key_file(agent_key) if agent_key is not None else None
    return MeshClient(_base(api, data_dir), token=token, agent_key=key)


def _out(data: Any, as_json: bool, text: str) -> None:
    sys.stdout.write((json.dumps(data, indent=2) if as_json else text) + "\n")


def _guarded(action: Any) -> Any:
    from .client import MeshError

    try:
        return action()
    except MeshError as exc:
        sys.stderr.write(f"error: {exc.code}: {exc.detail}\n")
        raise typer.Exit(1) from None


def put(
    namespace: Namespace,
    key: Key,
    value: Annotated[str, typer.Argument(help="The value, as JSON (a bare word is a string).")],
    type: Annotated[str, typer.Option("--type", help="Claim type.")] = "fact",
    source: Annotated[str | None, typer.Option(help="Where the value came from.")] = None,
    based_on: Annotated[
        list[str] | None, typer.Option("--based-on", help="Receipt or attestation id cited.")
    ] = None,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    agent_key: AgentKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a value; it supersedes what the node holds for that key."""
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    client = _client(api, data_dir, token, agent_key)
    fields: dict[str, Any] = {"type": type, "source": source, "based_on": tuple(based_on or ())}
    written = _guarded(lambda: client.put(namespace, key, parsed, **fields))
    data = {"claim_id": written.claim_id, "envelope_id": written.envelope_id, "seq": written.seq}
    _out(data, as_json, f"{written.claim_id} (seq {written.seq})")


def get(
    namespace: Namespace,
    key: Key,
    as_of: Annotated[
        Path | None,
        typer.Option("--as-of", help="Read as of this attestation file (DSSE JSON)."),
    ] = None,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Read a value with its provenance, conflict state and receipt (now, or as of an
    attestation: exactly what it covered, rebuilt from the node's log)."""
    attestation = None
    if as_of is not None:
        from .attest import AttestationError, decode_dsse, decode_statement

        try:
            attestation = decode_statement(decode_dsse(as_of.read_bytes()).payload).id.hex()
        except (OSError, AttestationError) as exc:
            sys.stderr.write(f"error: {as_of}: not an attestation: {exc}\n")
            raise typer.Exit(2) from None
    client = _client(api, data_dir, token, None)
    item = _guarded(lambda: client.get(namespace, key, as_of=attestation))
    if item is None:
        sys.stderr.write(f"not found: {namespace}:{key}\n")
        raise typer.Exit(1)
    data = {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "state": item.state,
        "claim": item.claim,
        "conflict": item.conflict,
        "receipt": item.receipt,
    }
    author = (item.claim or {}).get("agent", "")[:12]
    _out(data, as_json, f"{json.dumps(item.value)}  [{item.state}; by {author}]")


def search(
    namespace_prefix: Namespace,
    filter: Annotated[
        str | None, typer.Option(help='JSON filter, such as {"tier": "gold"}.')
    ] = None,
    limit: Annotated[int, typer.Option(help="Most items.")] = 10,
    offset: Annotated[int, typer.Option(help="Items to skip.")] = 0,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Values under a namespace prefix, filtered with $eq $ne $gt $gte $lt $lte."""
    try:
        conditions = json.loads(filter) if filter else None
    except ValueError as exc:
        raise typer.BadParameter(f"--filter is not JSON: {exc}") from None
    client = _client(api, data_dir, token, None)
    items = _guarded(
        lambda: client.search(namespace_prefix, filter=conditions, limit=limit, offset=offset)
    )
    data = [{"namespace": list(i.namespace), "key": i.key, "value": i.value} for i in items]
    lines = [f"{'.'.join(i.namespace)}:{i.key} = {json.dumps(i.value)}" for i in items]
    _out({"items": data}, as_json, "\n".join(lines) or "(nothing)")


def history(
    namespace: Namespace,
    key: Key,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Every claim of a key, superseded, excluded and invalid ones included."""
    entries = _guarded(lambda: _client(api, data_dir, token, None).history(namespace, key))
    lines = [
        f"{e['claim_id'][:12]} {e['status']:<10} {e['type']:<11} {json.dumps(e['value'])}"
        f" by {e['agent'][:12]}#{e['aseq']}"
        for e in entries
    ]
    _out({"entries": entries}, as_json, "\n".join(lines) or "(nothing)")


def conflicts(
    all_: Annotated[bool, typer.Option("--all", help="Settled ones too.")] = False,
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Current conflicts: candidates, the policy's decision and why."""
    client = _client(api, data_dir, token, None)
    found = _guarded(lambda: client.conflicts("all" if all_ else "current"))
    lines = [
        f"{c['id'][:12]} {'.'.join(c['namespace'])}:{c['key']} {c['decision']['status']} "
        f"by {c['decision']['rule']}: {c['decision']['explanation'].get('why', '')}"
        for c in found
    ]
    _out({"conflicts": found}, as_json, "\n".join(lines) or "(no conflicts)")


def resolve(
    conflict_id: Annotated[str, typer.Argument(help="The conflict's id.")],
    winner: Annotated[str, typer.Option(help="The claim id that wins.")],
    api: ApiUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    agent_key: AgentKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Settle a conflict with a resolution claim (by a resolver or an admin)."""
    client = _client(api, data_dir, token, agent_key)
    written = _guarded(lambda: client.resolve_conflict(conflict_id, winner))
    data = {"claim_id": written.claim_id, "envelope_id": written.envelope_id, "seq": written.seq}
    _out(data, as_json, f"resolved by {written.claim_id}")
