"""Real node processes on loopback: a swarm converges, survives SIGKILL, refuses strangers and
oversized frames, drops silent peers, and a restored old data dir does not reuse a seq."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from memmesh.core.messages import Bye, Hello, decode_message, encode_message
from memmesh.crypto import SigningKey, read_key_file
from memmesh.faultproxy import FaultProxy
from memmesh.runtime.swarm import swarm_down, swarm_up
from memmesh.runtime.transport import REFUSAL_CLOSE_CODE
from memmesh.testing import PeerScript

FAST = {"heartbeat_interval_ms": 300, "receive_timeout_ms": 1000, "handshake_timeout_ms": 1000}


def call(base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def converged(apis: list[str]) -> bool:
    states = [call(api, "/v1/state") for api in apis]
    return len({(json.dumps(s["frontier"]), s["claims_digest"]) for s in states}) == 1


def held_ids(api: str) -> set[str]:
    return {i["claim_id"] for i in call(api, "/v1/store/items?namespace=test.node")["items"]}


def read_claim_id(api: str, key: str) -> str | None:
    """The claim id whose value ``test.node:key`` shows on that node, None while absent."""
    try:
        item = call(api, f"/v1/store/items?namespace=test.node&key={key}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return item["claim_id"]  # type: ignore[no-any-return]


def put(api: str, key: str, value: object) -> dict[str, Any]:
    body = {"namespace": "test.node", "key": key, "value": value}
    result: dict[str, Any] = call(api, "/v1/store/items", "PUT", body)
    return result


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    started: list[Path] = []

    def start(nodes: int, **options: Any) -> dict[str, Any]:
        directory = tmp_path / f"swarm{len(started)}"
        result = swarm_up(nodes, directory, **options)
        started.append(directory)
        return result

    yield start
    for directory in started:
        if (directory / "swarm.json").exists():
            swarm_down(directory, grace_s=5)


def _run_node(data_dir: str, *flags: str) -> subprocess.Popen[bytes]:
    with Path(data_dir, "node.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "memmesh", "node", "run", "--data-dir", data_dir, *flags],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _ready(api: str) -> bool:
    try:
        return bool(call(api, "/readyz")["status"] == "ready")
    except (urllib.error.URLError, ConnectionError):
        return False


def _one_tree(apis: list[str]) -> bool:
    states = [call(api, "/v1/state") for api in apis]
    trees = [state["tree"] for state in states]
    roots = {tree["root"] for tree in trees}
    if len(roots) != 1 or None in roots:
        return False
    (root,) = roots
    distance_of = {state["node"]: state["tree"]["distance"] for state in states}
    for state, tree in zip(states, trees, strict=True):
        if state["node"] == root:
            if tree["distance"] != 0 or tree["parent"] is not None:
                return False
            continue
        parent = [p for p in state["peers"] if p["handle"] == tree["parent"]]
        if len(parent) != 1 or parent[0]["state"] != "active":
            return False
        if tree["distance"] != distance_of[parent[0]["node"]] + 1:
            return False
    return True


def test_five_nodes_converge_after_random_writes_everywhere(
    swarm: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    nodes = swarm(5)["nodes"]
    apis = [n["api"] for n in nodes]
    rng = random.Random(5)
    acked = [put(rng.choice(apis), f"k{i}", i)["claim_ids"][0] for i in range(40)]
    wait_until(lambda: converged(apis), 10, "five nodes on one frontier and digest")
    for api in apis:
        held = {
            item["claim_id"] for item in call(api, "/v1/store/items?namespace=test.node")["items"]
        }
        assert set(acked) <= held
    # A write on one node is readable on all five within 2 s.
    claim_id = put(apis[2], "fresh", "value")["claim_ids"][0]
    took = wait_until(
        lambda: all(read_claim_id(a, "fresh") == claim_id for a in apis),
        2,
        "one write readable everywhere",
    )
    assert took < 2
    # /v1/state shows the push tree: one root for all, at distance 0, and every other node
    # with a parent among its active sessions and a distance one past that parent's.
    wait_until(lambda: _one_tree(apis), 10, "one push tree")
    pids = [n["pid"] for n in nodes]
    swarm_down(Path(nodes[0]["data_dir"]).parent)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_swarm_down_reaps_a_node_killed_by_pid_and_started_again(tmp_path: Path) -> None:
    """A crash test kills a node by pid and starts it again under a new one: the first process
    must not stay a zombie of this one once the swarm is down."""
    directory = tmp_path / "swarm"
    (node,) = swarm_up(1, directory, no_peers=True)["nodes"]
    first = int(node["pid"])
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: _state_of(first) in ("Z", None), 10, "the node killed")
    again = _run_node(node["data_dir"])
    swarm_file = directory / "swarm.json"
    recorded = json.loads(swarm_file.read_text())
    recorded["nodes"][0]["pid"] = again.pid
    swarm_file.write_text(json.dumps(recorded))
    wait_until(lambda: _ready(node["api"]), 15, "the node started again")
    swarm_down(directory, grace_s=5)
    assert again.wait(10) is not None
    assert _state_of(first) is None  # reaped: gone, not a zombie


def _state_of(pid: int) -> str | None:
    """The process state letter of ``pid`` (``Z``: a zombie), None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_node_killed_during_writes_loses_no_acknowledged_write(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    nodes = swarm(3)["nodes"]
    apis = [n["api"] for n in nodes]
    victim = nodes[1]
    acked: list[tuple[str, int]] = []

    def writer(worker: int) -> None:
        for i in range(10_000):
            try:
                result = put(victim["api"], f"w{worker}-{i}", i)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # the node is gone: writes in flight were never acknowledged
            acked.append((result["claim_ids"][0], result["seq"]))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 40, 20, "some writes acknowledged")
    os.kill(victim["pid"], signal.SIGKILL)  # while four writers are mid-request
    for thread in threads:
        thread.join(30)
    time.sleep(0.2)
    process = _run_node(victim["data_dir"])
    try:
        wait_until(lambda: _ready(victim["api"]), 15, "the killed node to come back")
        wait_until(lambda: converged(apis), 10, "the restarted node to catch up")
        for api in apis:
            items = call(api, "/v1/store/items?namespace=test.node")["items"]
            assert {claim_id for claim_id, _ in acked} <= {item["claim_id"] for item in items}
        # It writes on after its last seq: no seq reused, no equivocation anywhere.
        after = put(victim["api"], "after-restart", True)
        assert after["seq"] > max(seq for _, seq in acked)
        wait_until(lambda: converged(apis), 10, "the new write to spread")
        assert all(call(api, "/v1/state")["evidence"] == 0 for api in apis)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


async def _raw_session(url: str, frames: list[bytes]) -> tuple[list[object], int | None, Any]:
    """Connect as a bare websocket client, send ``frames``, collect what comes back."""
    got: list[object] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, autoping=False) as ws:
        for frame in frames:
            await ws.send_bytes(frame)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                got.append(decode_message(msg.data, frame_bytes_max=4 << 20))
        return got, ws.close_code, ws


def test_a_non_member_is_refused_with_its_reason(swarm: Callable[..., dict[str, Any]]) -> None:
    node = swarm(1)["nodes"][0]
    mesh = bytes.fromhex(call(node["api"], "/v1/state")["mesh"])
    stranger = SigningKey.generate()
    hello = encode_message(Hello([1], mesh, stranger.public_key, os.urandom(32), []))
    got, code, _ = asyncio.run(_raw_session(node["gossip"], [hello]))
    byes = [m for m in got if isinstance(m, Bye)]
    assert [b.reason for b in byes] == ["not_member"]
    assert code == REFUSAL_CLOSE_CODE


def test_a_16_mib_frame_closes_the_connection_within_a_second(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    node = swarm(1)["nodes"][0]

    async def flood() -> tuple[float, int | None]:
        async with aiohttp.ClientSession() as session, session.ws_connect(node["gossip"]) as ws:
            started = time.monotonic()
            try:
                await ws.send_bytes(b"\x00" * (16 << 20))
                async for _ in ws:
                    pass
            except (ConnectionError, aiohttp.ClientError):
                pass  # the node closed the connection while the frame was still being sent
            return time.monotonic() - started, ws.close_code

    took, code = asyncio.run(flood())
    assert took < 1.0
    assert code in (1009, 1006, None)  # too big; or the socket was reset under the sender
    assert _ready(node["api"])


def test_a_silent_peer_is_dropped_within_receive_timeout_plus_heartbeat(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    nodes = swarm(2, no_peers=True, extra_config=FAST)["nodes"]
    # Node 1's key, its process stopped, plays a member that goes silent after its handshake.
    os.kill(nodes[1]["pid"], signal.SIGTERM)
    key = read_key_file(Path(nodes[1]["data_dir"]) / "node.key")
    mesh = bytes.fromhex(call(nodes[0]["api"], "/v1/state")["mesh"])
    script = PeerScript(key, mesh)

    async def go_silent() -> tuple[float, bool]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(nodes[0]["gossip"], autoping=False) as ws,
        ):
            first = await ws.receive(timeout=2)
            await ws.send_bytes(script.hello)
            await ws.send_bytes(script.auth(first.data))
            active = False
            for _ in range(20):
                state = await asyncio.to_thread(call, nodes[0]["api"], "/v1/state")
                if state["active_peers"] == 1:
                    active = True
                    break
                await asyncio.sleep(0.05)
            started = time.monotonic()
            async for _ in ws:  # answer nothing, not even pings
                pass
            return time.monotonic() - started, active

    took, active = asyncio.run(go_silent())
    assert active, "the handshake completed"
    limit = (FAST["receive_timeout_ms"] + FAST["heartbeat_interval_ms"]) / 1000
    assert took <= limit + 0.5
    assert call(nodes[0]["api"], "/v1/state")["active_peers"] == 0


def test_a_restored_old_data_dir_does_not_reuse_a_seq(
    swarm: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    nodes = swarm(2)["nodes"]
    a, b = nodes
    put(a["api"], "first", 1)
    backup = tmp_path / "backup"
    wait_until(lambda: converged([a["api"], b["api"]]), 10, "the first write to spread")
    os.kill(a["pid"], signal.SIGTERM)  # a clean copy of a stopped node's data dir
    wait_until(lambda: not _ready(a["api"]), 10, "node a to stop")
    time.sleep(0.3)
    shutil.copytree(a["data_dir"], backup)
    process = _run_node(a["data_dir"])
    wait_until(lambda: _ready(a["api"]), 15, "node a back")
    for i in range(3):
        put(a["api"], f"later{i}", i)
    wait_until(lambda: converged([a["api"], b["api"]]), 10, "the later writes to spread")
    process.send_signal(signal.SIGTERM)
    process.wait(10)
    # The old copy comes back in its place, not allowed to write alone.
    shutil.rmtree(a["data_dir"])
    shutil.copytree(backup, a["data_dir"])
    (Path(a["data_dir"]) / "store" / "LOCK").unlink(missing_ok=True)
    restored = _run_node(a["data_dir"], "--no-start-isolated")
    try:
        wait_until(lambda: _ready(a["api"]), 15, "the restored node")
        result = put(a["api"], "after-restore", True)
        assert result["seq"] == 5  # seqs 2..4 came back by sync first; none was reused
        wait_until(lambda: converged([a["api"], b["api"]]), 10, "everything to spread")
        assert call(b["api"], "/v1/state")["evidence"] == 0
    finally:
        restored.send_signal(signal.SIGTERM)
        restored.wait(10)


def test_a_partition_by_a_faulty_proxy_heals_into_one_state(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    """node2 reaches the mesh only through a proxy that cuts, blackholes and delays."""
    # Without discovery, or node2 would learn the others' real addresses and go round the proxy.
    config = {**FAST, "dial_backoff_max_ms": 500, "discover_peers": False}
    nodes = swarm(3, no_peers=True, extra_config=config)["nodes"]
    apis = [n["api"] for n in nodes]
    port = int(nodes[1]["gossip"].rsplit(":", 1)[1].split("/")[0])
    with FaultProxy("127.0.0.1", port) as proxy:
        call(apis[0], "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
        call(apis[2], "/v1/peers", "POST", {"url": proxy.url()})
        put(apis[0], "before", 0)
        wait_until(lambda: converged(apis), 10, "one state before the partition")

        proxy.cut()
        wait_until(lambda: call(apis[2], "/v1/state")["active_peers"] == 0, 5, "node2 cut off")
        left = put(apis[0], "left", 1)["claim_ids"][0]
        right = put(apis[2], "right", 2)["claim_ids"][0]
        time.sleep(0.5)
        alone = {
            i["claim_id"] for i in call(apis[2], "/v1/store/items?namespace=test.node")["items"]
        }
        assert left not in alone and right in alone  # the partition holds

        proxy.blackhole()  # connections open, nothing gets through: handshakes time out
        time.sleep(1.5)
        assert not converged(apis)
        proxy.delay(50)  # heal over a slow link
        wait_until(lambda: converged(apis), 15, "one state after the heal")
        for api in apis:
            held = {
                i["claim_id"] for i in call(api, "/v1/store/items?namespace=test.node")["items"]
            }
            assert {left, right} <= held
        proxy.passthrough()
        put(apis[2], "after", 3)
        wait_until(lambda: converged(apis), 10, "writes flow again")


def test_gossip_over_tls(swarm: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """With a certificate configured, gossip is wss:// and a peer is checked against the CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    tls = {"tls_cert_file": str(cert), "tls_key_file": str(key), "tls_ca_file": str(cert)}
    nodes = swarm(2, no_peers=True, extra_config=tls)["nodes"]
    apis = [n["api"] for n in nodes]
    gossip = call(apis[1], "/v1/state")["gossip"]
    assert gossip.startswith("wss://")
    call(apis[0], "/v1/peers", "POST", {"url": gossip})
    put(apis[0], "secret", "over tls")
    wait_until(lambda: converged(apis), 10, "two nodes over TLS")
    assert call(apis[1], "/v1/state")["active_peers"] == 1
    # A plain websocket to the TLS listener gets nowhere.
    plain = gossip.replace("wss://", "ws://")

    async def plain_dial() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(plain):
                return True
        except (aiohttp.ClientError, OSError):
            return False

    assert not asyncio.run(plain_dial())


def test_a_node_told_of_one_peer_finds_the_others_by_their_signed_records(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    """A chain 2 -> 1 -> 0: node2 was given node1's address only, learns node0's from the
    records node1 passes on, dials it, and its write reaches node0 over that session."""
    nodes = swarm(3, no_peers=True, extra_config={"shuffle_interval_ms": 500})["nodes"]
    apis = [n["api"] for n in nodes]
    call(apis[1], "/v1/peers", "POST", {"url": nodes[0]["gossip"]})
    call(apis[2], "/v1/peers", "POST", {"url": nodes[1]["gossip"]})

    def peers_of(api: str) -> set[str]:
        state = call(api, "/v1/state")
        return {p["node"] for p in state["peers"] if p["state"] == "active"}

    wait_until(lambda: nodes[0]["pubkey"] in peers_of(apis[2]), 15, "node2 to dial node0")
    passive = {r["node"]: r for r in call(apis[2], "/v1/state")["passive_view"]}
    assert passive[nodes[0]["pubkey"]]["addresses"] == [nodes[0]["gossip"]]
    put(apis[2], "found", True)
    wait_until(lambda: converged(apis), 10, "one state")


def test_a_member_past_its_push_budget_is_flagged_and_still_converges(
    swarm: Callable[..., dict[str, Any]],
) -> None:
    """A push budget of one envelope a second per author: a burst of separate writes on one
    node is mostly dropped on arrival at the other, which flags the author (state, metric),
    and then fetches all of it by anti-entropy: nothing is lost, only slower."""
    nodes = swarm(2, extra_config={"author_pushes_per_s": 1, "author_push_burst": 2})["nodes"]
    apis = [n["api"] for n in nodes]
    # Writes made before the session is up reach the other node by anti-entropy, not by push.
    wait_until(lambda: all(call(a, "/v1/state")["active_peers"] == 1 for a in apis), 15, "peered")
    for i in range(15):
        put(apis[0], f"burst{i}", i)
    wait_until(lambda: converged(apis), 15, "both nodes on one frontier after the burst")
    writer = call(apis[0], "/v1/state")["node"]
    throttled = call(apis[1], "/v1/state")["throttled"]
    assert list(throttled) == [writer] and throttled[writer] > 0
    with urllib.request.urlopen(apis[1] + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    counted = [line for line in metrics.splitlines() if line.startswith("memmesh_pushes_throttled")]
    assert counted and float(counted[0].split()[-1]) == throttled[writer]
    shown = subprocess.run(
        [sys.executable, "-m", "memmesh", "status", "--api", apis[1]],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert f"flagged  member {writer[:16]} pushed past its budget: {throttled[writer]}" in shown
