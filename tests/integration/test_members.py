"""The operator's path for a new node, end to end with real processes: ``memmesh init
--genesis``, ``memmesh members add`` (with the admit chain handed to the newcomer), the newcomer
syncing and writing, ``members list``, ``peers`` and ``status``, then ``members revoke``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh.runtime.swarm import swarm_down, swarm_up


def cli(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout


def state(api: str) -> dict[str, Any]:
    with urllib.request.urlopen(api + "/v1/state", timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[dict[str, Any]]:
    swarm = swarm_up(2, tmp_path / "swarm")
    yield swarm
    swarm_down(tmp_path / "swarm")


def test_a_new_node_is_admitted_syncs_writes_and_is_revoked(
    mesh: dict[str, Any], tmp_path: Path
) -> None:
    first, second = mesh["nodes"]
    admin_key = str(tmp_path / "swarm" / "admin.key")
    genesis = str(Path(first["data_dir"]) / "genesis.bin")
    newcomer = tmp_path / "newcomer"
    made = cli("init", "--data-dir", str(newcomer), "--genesis", genesis, "--api-port", "0",
               "--gossip-port", "0", "--json")  # fmt: skip
    assert made["founded"] is False
    node_key, agent_key = made["node_public_key"], made["agent_public_key"]

    # An admin admits both keys through the first node; the chain goes to the newcomer.
    cli("members", "add", node_key, "--role", "node", "--admin-key", admin_key,
        "--chain-out", str(newcomer / "admit-chain.bin"), "--api", first["api"])  # fmt: skip
    cli("members", "add", agent_key, "--role", "writer", "--admin-key", admin_key,
        "--api", first["api"])  # fmt: skip
    members = {m["key"]: m["role"] for m in cli("members", "list", "--api", first["api"],
                                                 "--json")["members"]}  # fmt: skip
    assert members[node_key] == "node" and members[agent_key] == "writer"

    # The newcomer dials the *second* node, which may not have the admit yet: the chain it
    # presents in its handshake is what lets it in.
    api_port = _free_port()
    with (newcomer / "node.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memmesh", "node", "run", "--data-dir", str(newcomer),
             "--api-port", str(api_port), "--peer", second["gossip"], "--start-isolated"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: _alive(api) and state(api)["active_peers"] >= 1, 15, "newcomer syncs")
        # An active session is not yet the agent's admit: until that is integrated here, a
        # write as the agent is refused as NotAMember (403).
        wait_until(lambda: _role(api, agent_key) == "writer", 15, "the agent's admit synced")
        body = json.dumps({"namespace": "ops", "key": "hello", "value": "from the newcomer"})
        request = urllib.request.Request(api + "/v1/store/items", data=body.encode(), method="PUT")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=15) as response:
            assert response.status == 201
        digest = lambda a: state(a)["claims_digest"]  # noqa: E731
        wait_until(lambda: digest(api) == digest(first["api"]) == digest(second["api"]), 10,
                   "three nodes on one digest")  # fmt: skip
        assert "hello" in json.dumps(
            json.loads(
                urllib.request.urlopen(first["api"] + "/v1/store/items?namespace=ops").read()
            )
        )
        peers = cli("peers", "list", "--api", api, "--json")["peers"]
        assert {p["state"] for p in peers} == {"active"}
        assert second["pubkey"] in {p["node"] for p in peers}  # the others it may learn of
        status = cli("status", "--api", api)
        assert "may write: True" in status
        assert "gc pause max" in status  # every garbage collection's pause is observed

        # Revoked: members refuse its sessions; its later envelopes are excluded everywhere.
        seq = next(f["seq"] for f in state(first["api"])["frontier"] if f["author"] == node_key)
        cli("members", "revoke", node_key, "--admin-key", admin_key, "--node-seq", str(seq),
            "--api", first["api"])  # fmt: skip
        wait_until(lambda: state(api)["active_peers"] == 0, 15, "the revoked node cut off")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def _role(api: str, key: str) -> str | None:
    members = cli("members", "list", "--api", api, "--json")["members"]
    return next((m["role"] for m in members if m["key"] == key), None)


def _alive(api: str) -> bool:
    try:
        with urllib.request.urlopen(api + "/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
