"""Meshes for the attestation tests: several nodes that write, sync, conflict, revoke and
equivocate, each node an ``Admission`` over a ``MemoryStore`` with its view kept up to date."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from memmesh.admission import Admission, Status
from memmesh.claims import Claim
from memmesh.envelope import Envelope
from memmesh.memory.types import POLICY_NAMESPACE
from memmesh.memory.view import View
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

NS = ("crm",)
OPS = ("ops",)


@dataclass
class Node:
    key_index: int
    admission: Admission
    view: View
    hlc: int = 0

    def apply(self, ids: list[bytes] | tuple[bytes, ...]) -> None:
        self.view.apply(ids, 0)


@dataclass
class Net:
    """Nodes of one mesh; node ``i`` writes with ``mesh.nodes[i]``."""

    mesh: MeshFixture
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def make(cls, label: str = "attest", *, nodes: int = 3, writers: int = 3) -> Net:
        mesh = MeshFixture(label, nodes=nodes, writers=writers)
        net = cls(mesh)
        for i in range(nodes):
            admission = Admission(MemoryStore(), mesh.genesis)
            net.nodes.append(Node(i, admission, View(admission)))
        return net

    def write(self, i: int, claims: list[Claim]) -> Envelope:
        node = self.nodes[i]
        node.hlc += 1
        env = node.admission.write_local(self.mesh.nodes[node.key_index], claims, hlc=node.hlc)
        node.apply([env.id])
        return env

    def deliver(self, dst: int, envelopes: list[bytes]) -> None:
        node = self.nodes[dst]
        for raw in envelopes:
            outcome = node.admission.receive(raw)
            assert outcome.status is not Status.REJECTED, outcome
            node.apply(outcome.admitted)

    def pull(self, dst: int, src: int) -> None:
        """``dst`` receives everything ``src`` holds, in ``src``'s causal order."""
        admission = self.nodes[src].admission
        records = admission.records
        order = sorted(records, key=lambda i: (records[i].rank, i))
        self.deliver(dst, [admission.envelope_bytes(i) for i in order])

    def sync(self) -> None:
        for dst in range(len(self.nodes)):
            for src in range(len(self.nodes)):
                if src != dst:
                    self.pull(dst, src)
        for dst in range(len(self.nodes)):
            for src in range(len(self.nodes)):
                if src != dst:
                    self.pull(dst, src)


def policy_claim(mesh: MeshFixture, pattern: str, rule: str) -> Claim:
    value = {"pattern": pattern, "rule": rule, "version": 1, "params": {}}
    return mesh.claim(mesh.admin, pattern, value, type="policy", namespace=POLICY_NAMESPACE)


def rich_net(label: str = "attest") -> Net:
    """Three nodes, three writers: plain facts, supersession, an lww conflict settled by policy,
    a ``manual`` conflict left open, a revoked writer, and node 2 equivocating (node 1 holds the
    other branch and depends on it, so the evidence is needed for causal delivery)."""
    net = Net.make(label)
    mesh = net.mesh
    w0, w1, w2 = mesh.writers
    first = mesh.claim(w0, "acme", {"tier": "gold"}, namespace=NS)
    net.write(
        0,
        [first, mesh.claim(w0, "globex", 1, namespace=NS), policy_claim(mesh, "ops.**", "manual")],
    )
    net.sync()
    net.write(1, [mesh.claim(w1, "acme", {"tier": "silver"}, namespace=NS, supersedes=(first.id,))])
    # Concurrent writes: an lww conflict (resolved by policy) and a manual one (open).
    net.write(
        0,
        [
            mesh.claim(w0, "initech", "a", namespace=NS),
            mesh.claim(w0, "deploy", "blue", namespace=OPS),
        ],
    )
    net.write(
        1,
        [
            mesh.claim(w1, "initech", "b", namespace=NS),
            mesh.claim(w1, "deploy", "green", namespace=OPS),
        ],
    )
    net.write(2, [mesh.claim(w2, "umbrella", 1, namespace=NS)])
    net.sync()
    # Writer 2 is revoked after its first two claims; its third no longer counts.
    net.write(2, [mesh.claim(w2, "umbrella", 2, namespace=NS)])
    net.write(2, [mesh.claim(w2, "umbrella", 3, namespace=NS)])
    net.sync()
    net.write(0, [mesh.revoke_agent(w2.public_key, 2)])
    net.sync()
    # Node 2 equivocates: node 0 and node 1 each get a different seq for node 2's log.
    spare = Admission(MemoryStore(), mesh.genesis)
    for record in sorted(
        net.nodes[2].admission.records.values(), key=lambda r: (r.rank, r.envelope.id)
    ):
        spare.receive(net.nodes[2].admission.envelope_bytes(record.envelope.id))
    a = net.write(2, [mesh.claim(w0, "hooli", "a", namespace=NS)])
    b = spare.write_local(mesh.nodes[2], [mesh.claim(w0, "hooli", "b", namespace=NS)], hlc=99)
    assert a.seq == b.seq and a.id != b.id
    net.pull(0, 2)
    net.deliver(1, [b.raw])
    net.write(1, [mesh.claim(w1, "hooli", "c", namespace=NS)])  # depends on b
    net.sync()
    return net


@dataclass(frozen=True)
class Kit:
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import this
    conftest by name, so tests get them from the ``kit`` fixture)."""

    NS: tuple[str, ...] = NS
    OPS: tuple[str, ...] = OPS
    Net: type[Net] = Net

    @staticmethod
    def policy_claim(mesh: MeshFixture, pattern: str, rule: str) -> Claim:
        return policy_claim(mesh, pattern, rule)

    @staticmethod
    def rich_net(label: str = "attest") -> Net:
        return rich_net(label)


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()


@pytest.fixture(scope="module")
def rich() -> Net:
    return rich_net()
