"""``memmesh mcp`` on a real node, driven by the official MCP SDK's client over stdio.

One node runs (``swarm_up``); the MCP server runs in its own process (``memmesh mcp --node
URL``, as ``python -m memmesh mcp``), started by the SDK's ``stdio_client`` the way Claude
Desktop or any MCP client starts it. The client lists the tools with their hints, writes a
memory, reads it back with its receipt, searches, has the node attest and verifies the
attestation offline, records a decision citing the receipt and the attestation, and gets tool
errors that carry the node's reason code.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from memmesh.cli_mcp import register
from memmesh.runtime.swarm import swarm_down, swarm_up

HEX64 = re.compile(r"[0-9a-f]{64}")
TOOLS = {
    "add_memory",
    "get_memory",
    "search_memories",
    "get_memory_history",
    "list_namespaces",
    "list_conflicts",
    "resolve_conflict",
    "create_attestation",
    "verify_attestation",
    "record_decision",
}
READ_ONLY = {
    "get_memory",
    "search_memories",
    "get_memory_history",
    "list_namespaces",
    "list_conflicts",
    "verify_attestation",
}
DESTRUCTIVE = {"resolve_conflict"}
TOKEN = "mcp-test-token"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[dict[str, Any]]:
    directory = tmp_path / "swarm"
    (entry,) = swarm_up(1, directory, extra_config={"api_token": TOKEN})["nodes"]
    try:
        yield entry
    finally:
        swarm_down(directory, grace_s=5)


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def _call(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name}: {_text(result)}"
    assert result.structured_content is not None, name
    return dict(result.structured_content)


async def _refused(session: ClientSession, name: str, **arguments: Any) -> str:
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name} should fail: {result}"
    return _text(result)


@asynccontextmanager
async def _session(
    errlog: TextIO, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """An MCP client session with ``memmesh mcp ARGS`` in its own process."""
    server = StdioServerParameters(
        command=sys.executable, args=["-W", "error", "-m", "memmesh", "mcp", *args], env=env
    )
    async with (
        stdio_client(server, errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def _drive(node: dict[str, Any], errlog: TextIO) -> None:
    api, agent = node["api"], node["agent"]
    async with _session(errlog, "--node", api, "--token", TOKEN) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        for name, tool in listed.items():
            hints = tool.annotations
            assert hints is not None, name
            assert hints.read_only_hint is (name in READ_ONLY), name
            assert hints.destructive_hint is (name in DESTRUCTIVE), name
            assert hints.open_world_hint is False, name
            assert tool.description, name
        assert listed["get_memory"].annotations.idempotent_hint is True  # type: ignore[union-attr]
        assert listed["add_memory"].annotations.idempotent_hint is False  # type: ignore[union-attr]

        value = {"tier": "gold", "seats": 40}
        written = await _call(
            session,
            "add_memory",
            namespace="crm.accounts",
            key="acme",
            value=value,
            source="crm-export",
        )
        claim_id = written["claim_id"]
        assert HEX64.fullmatch(claim_id)
        assert HEX64.fullmatch(written["envelope_id"])

        item = await _call(session, "get_memory", namespace="crm.accounts", key="acme")
        assert item["value"] == value
        assert item["state"] == "ok"
        assert item["claim_id"] == claim_id
        provenance = item["provenance"]
        assert provenance["agent"] == agent
        assert provenance["source"] == "crm-export"
        assert provenance["signature"] == "verified"
        receipt = item["receipt"]
        assert HEX64.fullmatch(receipt["id"])
        assert receipt["claims"] == [claim_id]
        assert receipt["reader"] == agent

        found = await _call(
            session, "search_memories", namespace_prefix="crm", filter={"tier": "gold"}
        )
        assert [(i["key"], i["value"]) for i in found["items"]] == [("acme", value)]
        assert found["receipt"]["claims"] == [claim_id]
        nothing = await _call(session, "search_memories", namespace_prefix="nowhere")
        assert nothing["items"] == []
        assert HEX64.fullmatch(nothing["receipt"]["id"])

        spaces = await _call(session, "list_namespaces", prefix="crm")
        assert spaces["namespaces"] == [["crm", "accounts"]]
        assert (await _call(session, "list_conflicts"))["conflicts"] == []

        attestation = await _call(session, "create_attestation")
        assert HEX64.fullmatch(attestation["id"])
        assert attestation["seq"] == 1
        assert attestation["witnesses"] == []
        report = await _call(session, "verify_attestation", dsse=attestation["dsse"])
        assert report["valid"] is True, report
        assert report["verdict"] == "valid"
        assert report["attestation"] == attestation["id"]
        wrong_key = await _call(
            session, "verify_attestation", dsse=attestation["dsse"], pubkey=agent
        )
        assert wrong_key["valid"] is False
        assert [f["code"] for f in wrong_key["failures"]] == ["signer_mismatch"]

        decision = await _call(
            session,
            "record_decision",
            namespace="crm.decisions",
            key="acme",
            decision={"action": "renew"},
            receipts=[receipt, attestation["id"]],
            source="renewal-agent",
        )
        assert HEX64.fullmatch(decision["claim_id"])
        cited = sorted([receipt["id"], attestation["id"]])
        assert decision["based_on"] == cited
        history = await _call(session, "get_memory_history", namespace="crm.decisions", key="acme")
        (entry,) = history["entries"]
        assert entry["claim_id"] == decision["claim_id"]
        assert entry["type"] == "decision"
        assert entry["status"] == "live"
        assert entry["based_on"] == cited

        empty_key = await _refused(session, "add_memory", namespace="crm.accounts", key="", value=1)
        assert "bad_request" in empty_key and "key" in empty_key
        missing = await _refused(session, "get_memory", namespace="crm.accounts", key="nobody")
        assert "not_found" in missing
        bad_id = await _refused(
            session,
            "record_decision",
            namespace="crm.decisions",
            key="x",
            decision=1,
            receipts=["not-an-id"],
        )
        assert "bad_request" in bad_id and "based_on" in bad_id
        unknown = await _refused(
            session, "resolve_conflict", conflict_id="00" * 32, winner=claim_id
        )
        assert "not_found" in unknown

    # --data-dir finds the node's API as every other command does; the token from the env.
    env = {"MEMMESH_API_TOKEN": TOKEN}
    async with _session(errlog, "--data-dir", node["data_dir"], env=env) as session:
        again = await _call(session, "get_memory", namespace="crm.accounts", key="acme")
        assert again["value"] == value
    async with _session(errlog, "--api", api) as session:
        no_token = await _refused(session, "get_memory", namespace="crm.accounts", key="acme")
        assert "unauthorized" in no_token


def test_mcp_server_over_stdio(node: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "mcp-server.log"
    with log.open("w") as errlog:
        try:
            asyncio.run(asyncio.wait_for(_drive(node, errlog), 60))
        except BaseException:
            errlog.flush()
            sys.stderr.write(f"--- MCP server stderr ---\n{log.read_text()}\n")
            raise


def test_register_adds_the_mcp_command() -> None:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: `mcp` is then a subcommand
    shown = CliRunner().invoke(app, ["mcp", "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    for option in ("--node", "--api", "--data-dir", "--token"):
        assert option in shown.output
