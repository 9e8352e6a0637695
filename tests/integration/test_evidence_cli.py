"""``memmesh evidence list|show|verify`` on a real node holding an equivocation.

Node1's key signs two different envelopes for its seq 1 (what a cloned disk or a Byzantine
node does); node0, stopped, is handed both, and once started lists the evidence; the evidence
file it shows verifies offline, and a tampered one does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memmesh.admission import Admission, Status
from memmesh.claims import make_claim
from memmesh.crypto import read_key_file
from memmesh.membership import decode_genesis
from memmesh.runtime.swarm import swarm_down, swarm_up
from memmesh.store import LmdbStore, MemoryStore

from .test_memory_api import call
from .test_scrub import _pid_of, _restart, wait_until


def memmesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_evidence_is_listed_shown_and_verified_offline(tmp_path: Path) -> None:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory, no_peers=True)["nodes"]
    try:
        data0, data1 = (Path(n["data_dir"]) for n in nodes)
        genesis = decode_genesis((data0 / "genesis.bin").read_bytes())
        node1 = read_key_file(data1 / "node.key")
        agent1 = read_key_file(data1 / "agent.key")
        forks = []
        for value in ("left", "right"):
            claim = make_claim(agent1, mesh_id=genesis.mesh_id, aseq=1, hlc=(1, 0),
                               namespace=("x",), key="k", type="fact", value=value)  # fmt: skip
            forks.append(Admission(MemoryStore(), genesis).write_local(node1, [claim], hlc=1))
        pid = _pid_of(data0)
        subprocess.run(["kill", str(pid)], check=True)
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 20, "node0 stop")
        with LmdbStore(data0 / "store") as store:
            admission = Admission.open(store, genesis)
            outcomes = admission.receive_many([e.raw for e in forks])
            assert [o.status for o in outcomes] == [Status.INTEGRATED, Status.INTEGRATED]
            assert len(admission.evidence) == 1
        _restart(directory, data0)

        api = nodes[0]["api"]
        listed = call(api, "/v1/evidence")["evidence"]
        assert len(listed) == 1 and listed[0]["author"] == node1.public_key.hex()
        done = memmesh("evidence", "list", "--node", api, "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["evidence"] == listed
        proof = tmp_path / "evidence.json"
        done = memmesh("evidence", "show", listed[0]["id"], "-o", str(proof), "--node", api)
        assert done.returncode == 0, done.stderr
        done = memmesh("evidence", "verify", str(proof))
        assert done.returncode == 0 and done.stdout.startswith("valid: equivocation"), done.stdout

        doc = json.loads(proof.read_text())
        doc["second"] = doc["first"]  # the same envelope twice proves nothing
        (tmp_path / "same.json").write_text(json.dumps(doc))
        done = memmesh("evidence", "verify", str(tmp_path / "same.json"))
        assert done.returncode == 1 and "same_envelope" in done.stdout
        raw = bytearray(bytes.fromhex(json.loads(proof.read_text())["second"]))
        raw[-3] ^= 1  # a signature byte
        doc = dict(json.loads(proof.read_text()), second=bytes(raw).hex())
        (tmp_path / "forged.json").write_text(json.dumps(doc))
        done = memmesh("evidence", "verify", str(tmp_path / "forged.json"))
        assert done.returncode == 1 and "bad_signature" in done.stdout
        (tmp_path / "junk.json").write_text("{}")
        assert memmesh("evidence", "verify", str(tmp_path / "junk.json")).returncode == 2
        # The node's status counts it, and the author's log is excluded from the fork on.
        assert call(api, "/v1/state")["evidence"] == 1
    finally:
        swarm_down(directory, grace_s=10)
        from .test_scrub import _RESTARTED

        for process in _RESTARTED:
            process.wait(timeout=10)
        _RESTARTED.clear()


def _zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"
