"""``memmesh mcp``: serve a node's memory to MCP clients (Claude Desktop, IDEs, agent SDKs).

The server speaks MCP over stdio, so an MCP client starts it as a subprocess:
``memmesh mcp --node http://127.0.0.1:7401`` (or ``--data-dir DIR`` to find the node's API the
way every other command does). There is no HTTP transport on purpose: it would serve the node,
with the token this process holds, to every local process, unauthenticated. The tools are in
:mod:`memmesh.mcp_server` and ``docs/mcp.md``.

``python -m memmesh.cli_mcp --node URL`` runs the same command on its own.
"""

from __future__ import annotations

import sys

import typer

from .cli_node import DataDir, NodeUrl, Token, _base
from .errors import MemmeshError

__all__ = ["main", "mcp", "register"]


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(
    node: NodeUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
) -> None:
    """Serve an MCP server over stdio whose tools read and write the node's memory:
    add, get, search and history of memories, namespaces, conflicts, decisions citing read
    receipts, and attestations (created by the node, verified offline here)."""
    try:
        from .mcp_server import build_server  # noqa: PLC0415 - mcp is an optional extra
    except ImportError as exc:
        sys.stderr.write(
            f"error: the MCP server needs the `mcp` package ({exc}): pip install 'memmesh[mcp]'\n"
        )
        raise typer.Exit(2) from None
    base = _base(node, data_dir)
    try:
        server = build_server(base, token=token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    sys.stderr.write(f"memmesh mcp: serving the node at {base} over stdio\n")
    server.run("stdio")


def main() -> None:
    """``python -m memmesh.cli_mcp``: the ``mcp`` command on its own."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    try:
        app()
    except MemmeshError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
