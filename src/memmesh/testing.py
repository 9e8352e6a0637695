"""Helpers for tests and benchmarks, public so users can test their own code against Memory Mesh.

Everything here is deterministic: keys come from a label, never from ``os.urandom``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .claims import Claim, make_claim
from .crypto import SigningKey
from .envelope import Envelope, seal
from .ids import ZERO_ID, Head, tagged_hash
from .membership import Role, make_genesis

__all__ = ["LogWriter", "MeshFixture", "fixed_mesh_id", "scaled", "seeded_key"]


def scaled(count: int) -> int:
    """``count`` times ``MEMMESH_TEST_SCALE`` (default 1): how long campaigns grow a test.

    ``make soak`` sets the scale, so one test serves both the quick suite and the soak.
    """
    return count * max(1, int(os.environ.get("MEMMESH_TEST_SCALE", "1")))


def seeded_key(label: str) -> SigningKey:
    """A deterministic signing key named by ``label`` (for tests only: anyone can derive it)."""
    return SigningKey(tagged_hash(b"testing/seed", label.encode()))


def fixed_mesh_id(label: str = "test-mesh") -> bytes:
    """A deterministic mesh id for tests (a real one is the hash of a signed genesis)."""
    return tagged_hash(b"testing/mesh", label.encode())


class LogWriter:
    """Seals a hash-chained log of envelopes for one key and epoch, continuing from ``head``."""

    def __init__(
        self, key: SigningKey, mesh_id: bytes, *, epoch: int = 1, head: Head | None = None
    ) -> None:
        self.key = key
        self.mesh_id = mesh_id
        self.epoch = epoch
        self.seq = head.seq if head is not None else 0
        self.prev = head.id if head is not None else ZERO_ID

    def next(self, payload: bytes = b"", *, deps: tuple[bytes, ...] = (), hlc: int = 0) -> Envelope:
        envelope = seal(
            self.key,
            mesh_id=self.mesh_id,
            epoch=self.epoch,
            seq=self.seq + 1,
            prev=self.prev,
            deps=deps,
            hlc=hlc or self.seq + 1,
            payload=payload or f"payload {self.seq + 1}".encode(),
        )
        self.seq, self.prev = envelope.seq, envelope.id
        return envelope

    def take(self, count: int) -> list[Envelope]:
        return [self.next() for _ in range(count)]

    def __iter__(self) -> Iterator[Envelope]:
        while True:
            yield self.next()


class MeshFixture:
    """A seeded mesh for tests: one admin agent, ``nodes`` node keys and ``writers`` writer agents
    in the genesis, and claim builders that count each agent's seq."""

    def __init__(self, label: str = "mesh", *, nodes: int = 3, writers: int = 2) -> None:
        self.admin = seeded_key(f"{label}/admin")
        self.nodes = [seeded_key(f"{label}/node{i}") for i in range(nodes)]
        self.writers = [seeded_key(f"{label}/writer{i}") for i in range(writers)]
        roster = [(k.public_key, Role.NODE) for k in self.nodes]
        roster += [(k.public_key, Role.WRITER) for k in self.writers]
        self.genesis = make_genesis(self.admin, label, roster)
        self.mesh_id = self.genesis.mesh_id
        self._aseq: dict[bytes, int] = {}
        self._hlc = 0

    def claim(
        self,
        agent: SigningKey,
        key: str = "k",
        value: object = "v",
        *,
        type: str = "fact",
        namespace: tuple[str, ...] = ("test",),
        supersedes: tuple[bytes, ...] = (),
    ) -> Claim:
        aseq = self._aseq.get(agent.public_key, 0) + 1
        self._aseq[agent.public_key] = aseq
        self._hlc += 1
        return make_claim(
            agent,
            mesh_id=self.mesh_id,
            aseq=aseq,
            hlc=(1_700_000_000_000 + self._hlc, 0),
            namespace=namespace,
            key=key,
            type=type,
            value=value,
            supersedes=supersedes,
        )

    def admit(self, key: bytes, role: str, *, by: SigningKey | None = None) -> Claim:
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "role": role},
            type="admit",
            namespace=("_mesh", "members"),
        )

    def revoke_node(
        self, key: bytes, epoch: int, seq: int, *, by: SigningKey | None = None
    ) -> Claim:
        cutoff = {"epoch": epoch, "seq": seq}
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "cutoff": cutoff},
            type="revoke",
            namespace=("_mesh", "members"),
        )

    def revoke_agent(self, key: bytes, aseq: int, *, by: SigningKey | None = None) -> Claim:
        return self.claim(
            by or self.admin,
            key.hex(),
            {"key": key.hex(), "cutoff": {"aseq": aseq}},
            type="revoke",
            namespace=("_mesh", "members"),
        )
