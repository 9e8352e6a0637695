"""The simulated mesh's keys, genesis and membership, all derived from the seed.

A genesis names at most 255 members besides its admin, so a swarm larger than that admits its
remaining nodes with admin-signed ``admit`` claims. Those go in envelopes of node 0 that every
node's disk holds when the run starts, as if all were provisioned from one snapshot: replaying
them costs a restart's work per node (no signature checks), where gossiping them would make
every node verify every admit first. Nodes that join during the run are admitted by a claim
written through a live node, as an operator would.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..admission import Admission
from ..claims import Claim, make_claim
from ..crypto import SigningKey
from ..envelope import Envelope
from ..membership import GENESIS_MEMBERS_MAX, Role, make_genesis
from ..store import MemoryDisk, MemoryStore
from ..testing import seeded_key

__all__ = ["SimMesh"]

ADMITS_PER_ENVELOPE = 1000
"""About 580 bytes each: an envelope of them stays well under the 1 MiB envelope limit."""


class SimMesh:
    def __init__(self, seed: int, nodes: int, agents: int, byzantine: int = 0) -> None:
        """``nodes`` counts the Byzantine nodes too (the last ``byzantine`` of them), each of
        which has an agent key of its own in the genesis as well."""
        self.label = f"sim-{seed}"
        self.admin = seeded_key(f"{self.label}/admin")
        self.agents = [seeded_key(f"{self.label}/agent{j}") for j in range(agents)]
        self.byzantine_agents = [seeded_key(f"{self.label}/byzagent{j}") for j in range(byzantine)]
        self.in_genesis = min(nodes, GENESIS_MEMBERS_MAX - 1 - agents - byzantine)
        roster = [(a.public_key, Role.WRITER) for a in self.agents + self.byzantine_agents]
        roster += [(self.node_key(i).public_key, Role.NODE) for i in range(self.in_genesis)]
        self.genesis = make_genesis(self.admin, self.label, roster)
        self.mesh_id = self.genesis.mesh_id
        self._aseq: dict[bytes, int] = {}

    def node_key(self, index: int) -> SigningKey:
        return seeded_key(f"{self.label}/node{index}")

    def claim(
        self,
        agent: SigningKey,
        *,
        key: str,
        value: object,
        hlc_ms: int,
        namespace: tuple[str, ...] = ("sim",),
        type: str = "fact",
        supersedes: Sequence[bytes] = (),
    ) -> Claim:
        """A claim with the agent's next seq (a failed write leaves a gap, as in a real agent)."""
        aseq = self._aseq.get(agent.public_key, 0) + 1
        self._aseq[agent.public_key] = aseq
        return make_claim(
            agent,
            mesh_id=self.mesh_id,
            aseq=aseq,
            hlc=(hlc_ms, 0),
            namespace=namespace,
            key=key,
            type=type,
            value=value,
            supersedes=supersedes,
        )

    def admit(self, node: SigningKey, hlc_ms: int) -> Claim:
        public = node.public_key.hex()
        return self.claim(
            self.admin,
            key=public,
            value={"key": public, "role": Role.NODE.value},
            hlc_ms=hlc_ms,
            namespace=("_mesh", "members"),
            type="admit",
        )

    def bootstrap(self, nodes: int, hlc_ms: int) -> tuple[MemoryDisk, list[Envelope]]:
        """Node 0's disk holding the admits of nodes ``in_genesis..nodes-1`` (empty when the
        genesis names them all), and those envelopes."""
        disk = MemoryDisk()
        admits = [self.admit(self.node_key(i), hlc_ms) for i in range(self.in_genesis, nodes)]
        admission = Admission(MemoryStore(disk), self.genesis)
        envelopes = [
            admission.write_local(
                self.node_key(0), admits[start : start + ADMITS_PER_ENVELOPE], hlc=hlc_ms << 16
            )
            for start in range(0, len(admits), ADMITS_PER_ENVELOPE)
        ]
        return disk, envelopes
