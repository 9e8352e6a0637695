"""``memmesh swarm up|down``: a local swarm of node processes on loopback, for demos, tests and
benchmarks.

``up`` founds one mesh (an admin key, and per node a node key and an agent key, all in the
genesis), writes a data dir per node under DIR with its keys, the genesis and a ``memmesh.toml``,
starts ``memmesh node run`` for each as its own process (its own session, logs in
``node.log``), waits until every node answers ``/readyz``, and records the swarm in
``DIR/swarm.json``. Node ``i`` dials every node before it, so the swarm is one connected mesh;
with ``no_peers`` the nodes start alone and ``POST /v1/peers`` connects them later. ``down``
stops them with SIGTERM (they drain and commit), then SIGKILL after a grace period, and checks
that no process is left.

The generated nodes start with ``start_isolated = true``: their keys are new, so no peer can
know a later seq of their logs (DESIGN §4 rule 6 guards restored copies of old data dirs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..crypto import SigningKey, write_key_file
from ..errors import LocalError
from ..membership import Role, make_genesis

__all__ = ["SwarmError", "swarm_down", "swarm_up"]

SWARM_FILE = "swarm.json"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this interpreter started, kept so they are reaped (not left as zombies, and not
reported as still running when the handle is collected) when ``swarm_down`` runs here."""


class SwarmError(LocalError):
    """The swarm could not be started or stopped as asked."""


def swarm_up(
    nodes: int,
    directory: Path,
    *,
    base_port: int | None = None,
    no_peers: bool = False,
    ready_timeout_s: float = 30.0,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if nodes < 1:
        raise SwarmError("a swarm has at least one node")
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / SWARM_FILE).exists():
        raise SwarmError(f"{directory} already holds a swarm: run `memmesh swarm down` first")
    admin = SigningKey.generate()
    node_keys = [SigningKey.generate() for _ in range(nodes)]
    agent_keys = [SigningKey.generate() for _ in range(nodes)]
    members = [(k.public_key, Role.NODE) for k in node_keys]
    members += [(k.public_key, Role.WRITER) for k in agent_keys]
    genesis = make_genesis(admin, f"swarm-{directory.name}", members)
    write_key_file(directory / "admin.key", admin)
    ports = _ports(2 * nodes, base_port)
    entries: list[dict[str, Any]] = []
    for i in range(nodes):
        data_dir = directory / f"node{i}"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        write_key_file(data_dir / "node.key", node_keys[i])
        write_key_file(data_dir / "agent.key", agent_keys[i])
        (data_dir / "genesis.bin").write_bytes(genesis.raw)
        gossip_port, api_port = ports[2 * i], ports[2 * i + 1]
        gossip = f"ws://127.0.0.1:{gossip_port}/v1/sync"
        peers = [] if no_peers else [e["gossip"] for e in entries]
        config = {
            "gossip_port": gossip_port,
            "api_port": api_port,
            "peers": peers,
            "start_isolated": True,
            "log_format": "json",
            **(extra_config or {}),
        }
        (data_dir / "memmesh.toml").write_text(_toml(config))
        entries.append(
            {
                "name": f"node{i}",
                "api": f"http://127.0.0.1:{api_port}",
                "gossip": gossip,
                "pubkey": node_keys[i].public_key.hex(),
                "agent": agent_keys[i].public_key.hex(),
                "data_dir": str(data_dir),
                "pid": 0,
            }
        )
    result = {"mesh": genesis.mesh_id.hex(), "nodes": entries}
    try:
        for entry in entries:
            entry["pid"] = _start(Path(entry["data_dir"]))
        (directory / SWARM_FILE).write_text(json.dumps(result, indent=2))
        deadline = time.monotonic() + ready_timeout_s
        for entry in entries:
            _wait_ready(entry, deadline)
    except BaseException:
        _stop([e["pid"] for e in entries if e["pid"]], grace_s=5.0)
        (directory / SWARM_FILE).unlink(missing_ok=True)
        raise
    return result


def swarm_down(directory: Path, *, grace_s: float = 10.0) -> dict[str, Any]:
    path = directory / SWARM_FILE
    if not path.exists():
        raise SwarmError(f"no swarm in {directory} (no {SWARM_FILE})")
    swarm = json.loads(path.read_text())
    pids = [int(node["pid"]) for node in swarm["nodes"]]
    killed = _stop(pids, grace_s=grace_s)
    left = [pid for pid in pids if _alive(pid)]
    _reap_exited()
    if left:
        raise SwarmError(f"processes still running: {left}")
    path.unlink()
    return {"stopped": len(pids), "killed": killed}


def _reap_exited() -> None:
    """Collect every node this process started that has exited since, whoever stopped it: a
    node killed by pid and started again (a crash test) leaves its first process behind, and
    unreaped it stays a zombie until this process exits."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def _toml(config: dict[str, Any]) -> str:
    lines = ["# written by `memmesh swarm up`"]
    for key, value in config.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars and lists are valid TOML
    return "\n".join(lines) + "\n"


def _ports(count: int, base: int | None) -> list[int]:
    if base is not None:
        return list(range(base, base + count))
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start(data_dir: Path) -> int:
    log = (data_dir / "node.log").open("ab")
    with log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "memmesh", "node", "run", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=data_dir,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def _wait_ready(entry: dict[str, Any], deadline: float) -> None:
    url = entry["api"] + "/readyz"
    while True:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback
        ):
            if response.status == 200:
                return
        if not _alive(entry["pid"]):
            log = Path(entry["data_dir"]) / "node.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SwarmError(f"{entry['name']} exited before it was ready:\n{tail}")
        if time.monotonic() > deadline:
            raise SwarmError(f"{entry['name']} not ready at {url} in time")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _stop(pids: list[int], *, grace_s: float) -> int:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    killed = 0
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    return killed
