"""Convergence under any delivery: a Hypothesis state machine drives 3-6 cores over fake links.

Rules write claims, deliver frames in order or out of it, lose and duplicate them, cut and heal
links, crash and restart cores from their stores, admit a new node and revoke members. Whatever
happened, once the faults stop and anti-entropy runs until every round answers "nothing to
send", every replica holds the same frontier and the same claims digest, and no acknowledged
write is lost. Replicas are compared by frontier and digest, never by ``get_update()`` bytes.
"""

from __future__ import annotations

import itertools
import os
import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from memmesh.core import MeshCore, WriteAcked
from memmesh.membership import Role
from memmesh.store import MemoryStore
from memmesh.store.memory import MemoryDisk
from memmesh.testing import FakeNetwork, LinkFaults, MeshFixture, scaled, seeded_key

NODES_MAX = 6
EXAMPLES = 20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else scaled(300)


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mesh = MeshFixture("stateful", nodes=5, writers=2)
        self.late_keys = [seeded_key(f"stateful/late{i}") for i in range(NODES_MAX)]
        self.keys: dict[str, object] = {}
        self.disks: dict[str, MemoryDisk] = {}
        self.topology: set[tuple[str, str]] = set()
        self.token = 0
        self.restarts = 0
        self.revoked_writer = False
        self.revoked_node = False
        self.joined = 0
        self.chains: dict[str, list[bytes]] = {}
        self.revoked: str | None = None

    # -- set-up -------------------------------------------------------------------------------

    @initialize(count=st.integers(3, 5), seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 3))
    def start(self, count: int, seed: int, extra: int) -> None:
        self.rng = random.Random(seed)
        self.net = FakeNetwork(random.Random(seed + 1))
        for i in range(count):
            self._add(f"n{i}", self.mesh.nodes[i])
        names = sorted(self.net.cores)
        for i in range(1, count):  # a random spanning tree, then a few more links
            self._link(names[self.rng.randrange(i)], names[i])
        for _ in range(extra):
            a, b = self.rng.sample(names, 2)
            self._link(a, b)
        self.net.settle()

    def _add(self, name: str, key: object) -> None:
        self.keys[name] = key
        self.disks[name] = MemoryDisk()
        self.net.add(name, self._core(name))

    def _core(self, name: str) -> MeshCore:
        return MeshCore(
            self.keys[name],  # type: ignore[arg-type]
            self.mesh.genesis,
            MemoryStore(self.disks[name]),
            random.Random(f"{name}/{self.restarts}"),
            admit_chain=self.chains.get(name, []),
        )

    def _link(self, a: str, b: str) -> None:
        a, b = sorted((a, b))
        self.topology.add((a, b))
        self.net.connect(a, b)

    def _pick(self, index: int) -> str:
        names = sorted(self.net.cores)
        return names[index % len(names)]

    # -- rules --------------------------------------------------------------------------------

    @rule(node=st.integers(0, NODES_MAX - 1), writer=st.integers(0, 1), count=st.integers(1, 3))
    def write(self, node: int, writer: int, count: int) -> None:
        claims = [
            self.mesh.claim(self.mesh.writers[writer], f"k{self.rng.randrange(8)}", self.token)
            for _ in range(count)
        ]
        self.token += 1
        self.net.write(self._pick(node), self.token, claims)

    @rule(count=st.integers(1, 20))
    def deliver(self, count: int) -> None:
        self.net.deliver(count)

    @rule(node=st.integers(0, NODES_MAX - 1))
    def flush(self, node: int) -> None:
        self.net.flush(self._pick(node))

    @rule(
        loss=st.sampled_from([0.0, 0.1, 0.5]),
        duplicate=st.sampled_from([0.0, 0.2]),
        reorder=st.booleans(),
    )
    def faults(self, loss: float, duplicate: float, reorder: bool) -> None:
        self.net.set_faults(LinkFaults(loss, duplicate, reorder))

    @rule(ms=st.integers(1, 3_000))
    def tick(self, ms: int) -> None:
        self.net.tick(ms)

    @rule(node=st.integers(0, NODES_MAX - 1))
    def restart(self, node: int) -> None:
        name = self._pick(node)
        before = self.net.cores[name]
        frontier, digest = before.frontier(), before.claims_digest()
        self.restarts += 1
        after = self.net.restart(name, lambda: self._core(name))
        # Only what was staged and not flushed is lost, and it was never acknowledged.
        assert after.frontier() == frontier
        assert after.claims_digest() == digest

    @rule(link=st.integers(0, 100))
    def cut(self, link: int) -> None:
        """Drop a connection; its dialler redials after a backoff."""
        a, b = sorted(self.topology)[link % len(self.topology)]
        self.net.cut(a, b)

    @rule(link=st.integers(0, 100))
    def partition(self, link: int) -> None:
        a, b = sorted(self.topology)[link % len(self.topology)]
        self.net.partition(a, b)

    @rule(link=st.integers(0, 100))
    def heal(self, link: int) -> None:
        a, b = sorted(self.topology)[link % len(self.topology)]
        self.net.heal(a, b)

    @precondition(lambda self: len(self.net.cores) < NODES_MAX)
    @rule(via=st.integers(0, NODES_MAX - 1), peer=st.integers(0, NODES_MAX - 1))
    def join(self, via: int, peer: int) -> None:
        """An admin admits a node key that is not in the genesis; it joins and syncs."""
        key = self.late_keys[self.joined]
        self.joined += 1
        self.token += 1
        admit = self.mesh.admit(key.public_key, Role.NODE)
        self.net.write(self._pick(via), self.token, [admit])
        members = [n for n in sorted(self.net.cores) if n != self.revoked]
        target = members[peer % len(members)]  # the revoked node would refuse... or be refused
        name = f"late{self.joined}"
        self.chains[name] = [admit.raw]  # given to the joining node with its key
        self._add(name, key)
        self._link(target, name)

    @precondition(lambda self: not self.revoked_writer)
    @rule(via=st.integers(0, NODES_MAX - 1))
    def revoke_writer(self, via: int) -> None:
        """Writer 1 loses its right to write after the claims it has signed so far."""
        self.revoked_writer = True
        writer = self.mesh.writers[1]
        aseq = self.mesh._aseq.get(writer.public_key, 0)
        self.token += 1
        self.net.write(
            self._pick(via), self.token, [self.mesh.revoke_agent(writer.public_key, aseq)]
        )

    @precondition(lambda self: not self.revoked_node)
    @rule(via=st.integers(0, NODES_MAX - 1), node=st.integers(0, NODES_MAX - 1))
    def revoke_node(self, via: int, node: int) -> None:
        """A node's envelopes past its current head are excluded (it keeps writing them), and
        members refuse its sessions once they know: it drops out of the mesh, so the others
        are linked up to stay connected without it."""
        self.revoked_node = True
        target = self._pick(node)
        self.revoked = target
        rest = [n for n in sorted(self.net.cores) if n != target]
        for a, b in itertools.pairwise(rest):
            self._link(a, b)
        core = self.net.cores[target]
        # The admin revokes at the head it has seen, as `memmesh members revoke --node-seq`
        # does: what only the revoked node holds can never reach anyone (no member talks to it).
        issuer = self.net.cores[self._pick(via)]
        seen = [h.seq for log, h in issuer.frontier() if log.author == core.node]
        seq = seen[0] if seen else 0
        self.token += 1
        claim = self.mesh.revoke_node(core.node, 1, seq)
        self.net.write(self._pick(via), self.token, [claim])

    @rule()
    def converge(self) -> None:
        self._converge()

    def teardown(self) -> None:
        if hasattr(self, "net"):
            self._converge()

    # -- the property -------------------------------------------------------------------------

    def _converge(self) -> None:
        self.net.heal()
        # A revoked node is cut off: it may wait for ever for what only members hold.
        self.net.quiesce(ignore=[self.revoked] if self.revoked else [])
        names = [n for n in sorted(self.net.cores) if n != self.revoked]
        cores = [self.net.cores[n] for n in names]
        frontiers = {n: c.frontier() for n, c in zip(names, cores, strict=True)}
        digests = {n: c.claims_digest() for n, c in zip(names, cores, strict=True)}
        assert len({repr(f) for f in frontiers.values()}) == 1, frontiers
        assert len(set(digests.values())) == 1, digests
        held = {claim.id for r in cores[0].admission.records.values() for claim in r.claims}
        acked = {
            claim_id
            for name in names
            for notice in self.net.notices[name]
            if isinstance(notice, WriteAcked)
            for claim_id in notice.claim_ids
        }
        assert acked <= held, "an acknowledged write was lost"

    @invariant()
    def nothing_invalid_integrated(self) -> None:
        if not hasattr(self, "net"):
            return
        for core in self.net.cores.values():
            assert not core.stats.rejected, core.stats.rejected


TestSync = SyncMachine.TestCase
TestSync.settings = settings(max_examples=EXAMPLES, stateful_step_count=50)
