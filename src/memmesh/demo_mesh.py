"""The second half of ``memmesh demo``: three replicas syncing over fake links.

Three real sans-IO cores (``MeshCore``), each over its own LMDB store, are joined in a line
(alpha - beta - gamma) by in-memory links that lose, duplicate and reorder frames. They write,
push and run anti-entropy until every round is answered "nothing to send". A forged envelope and
a validly signed erasing one, pushed by gamma, are refused with their reasons and go no further;
an equivocation becomes evidence everywhere. The sockets come with the node daemon; the protocol
is the same code.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .claims import Claim, make_claim
from .core import MeshCore, RejectedEnvelope, WriteAcked
from .core.messages import Envelopes, encode_message
from .crypto import SigningKey
from .envelope import Envelope, seal
from .errors import MemmeshError
from .ids import Head, LogId, short_id
from .membership import Genesis, Role, make_genesis
from .merkle import merkle_root
from .store import LmdbStore
from .testing import FakeNetwork, LinkFaults
from .ydecode import ROOT_NAME, client_id, encode_update, encode_varuint, item_key

__all__ = ["run_mesh_demo"]

_NAMES = ("alpha", "beta", "gamma")


class MeshDemoFailed(MemmeshError):
    """A step of the mesh demo did not behave as it says."""


def run_mesh_demo(console: Console, root: Path) -> None:
    console.rule("[bold]Three replicas, one mesh: sync over lossy links")
    admin, agent = SigningKey.generate(), SigningKey.generate()
    nodes = {name: SigningKey.generate() for name in _NAMES}
    genesis = make_genesis(
        admin,
        "demo mesh",
        [(k.public_key, Role.NODE) for k in nodes.values()] + [(agent.public_key, Role.WRITER)],
    )
    console.print(
        f"mesh {short_id(genesis.mesh_id)}: genesis signed by admin {short_id(admin.public_key)}"
    )
    seed = random.SystemRandom().randrange(1 << 32)
    net = FakeNetwork(random.Random(seed))
    stores = {name: LmdbStore(root / f"replica-{name}") for name in _NAMES}
    try:
        for i, name in enumerate(_NAMES):
            net.add(name, MeshCore(nodes[name], genesis, stores[name], random.Random(seed + i)))
        net.connect("alpha", "beta")
        net.connect("beta", "gamma")
        net.settle()
        demo = _Demo(console, net, genesis, agent, nodes)
        demo.write(seed)
        demo.attack()
        demo.converge()
        stores["alpha"].close()
        stores["alpha"] = LmdbStore(root / "replica-alpha")
        again = MeshCore(nodes["alpha"], genesis, stores["alpha"], random.Random(seed))
        if again.claims_digest() != net.cores["beta"].claims_digest():
            raise MeshDemoFailed("restart changed the claims digest")
        console.print("[green]✓[/] alpha restarted from its LMDB store with the same digest")
    finally:
        for store in stores.values():
            store.close()


@dataclass
class _Demo:
    console: Console
    net: FakeNetwork
    genesis: Genesis
    agent: SigningKey
    nodes: dict[str, SigningKey]
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def claim(self, key: str, value: object) -> Claim:
        return make_claim(
            self.agent,
            mesh_id=self.genesis.mesh_id,
            aseq=next(self.seqs),
            hlc=(time.time_ns() // 10**6, 0),
            namespace=("research", "acme"),
            key=key,
            type="fact",
            value=value,
        )

    def write(self, seed: int) -> None:
        net = self.net
        faults = LinkFaults(loss=0.3, duplicate=0.2, reorder=True)
        net.set_faults(faults)
        writes = [
            ("alpha", "ceo", "Ada Park"),
            ("alpha", "hq", "Lisbon"),
            ("beta", "hq", "Porto"),
            ("beta", "founded", 2019),
            ("gamma", "employees", 120),
        ]
        writes += [(_NAMES[i % 3], f"visit-{i}", f"site {i}") for i in range(15)]
        for token, (name, key, value) in enumerate(writes, start=1):
            net.write(name, token, [self.claim(key, value)])
            net.flush(name)
            net.deliver(2)
        acked = sum(isinstance(n, WriteAcked) for notices in net.notices.values() for n in notices)
        if acked != len(writes):
            raise MeshDemoFailed(f"{acked} of {len(writes)} writes acknowledged")
        self.console.print(
            f"[green]✓[/] {acked} writes acknowledged (durable, then integrated) on three "
            f"replicas; links lose {faults.loss:.0%}, duplicate {faults.duplicate:.0%} and "
            f"reorder frames (seed {seed})"
        )

    def attack(self) -> None:
        """gamma turns hostile: each attack is pushed to beta, its only peer."""
        net, gamma, key = self.net, self.net.cores["gamma"], self.nodes["gamma"]
        victim = _first_claim(net.cores["alpha"], self.nodes["alpha"].public_key)
        own = self.claim("note", "looks harmless")
        head = _own_head(gamma)
        start = gamma.admission.records[head.id].clock_end
        mine, theirs = client_id(gamma.node, 1), client_id(self.nodes["alpha"].public_key, 1)
        erasing = _update(mine, start, item_key(theirs, victim), own.raw)
        own_key = item_key(mine, own.id)
        honest = _envelope(key, self.genesis, head, own, _payload(mine, start, own))
        forged = bytearray(honest.raw)
        forged[-80] ^= 0x01  # one payload byte changed after signing
        attacks = {
            "forged: one byte changed after signing": bytes(forged),
            "erasing: validly signed, re-sets alpha's claim key": _envelope(
                key, self.genesis, head, own, erasing
            ).raw,
            "deleting: validly signed, deletes alpha's items": _envelope(
                key, self.genesis, head, own, _update(mine, start, own_key, own.raw, theirs)
            ).raw,
        }
        net.faults.clear()
        net.settle()
        table = Table("attack pushed by gamma", "beta refused it with", "stored anywhere")
        for label, raw in attacks.items():
            before = len(net.notices["beta"])
            net.inject("gamma", "beta", encode_message(Envelopes(0, [raw], False)))
            net.settle()
            refusals = [n for n in net.notices["beta"][before:] if isinstance(n, RejectedEnvelope)]
            stored = [name for name, core in net.cores.items() if _holds(core, raw)]
            if len(refusals) != 1 or stored:
                raise MeshDemoFailed(f"{label}: refusals {refusals}, stored on {stored}")
            table.add_row(label, f"[red]{refusals[0].reason}[/]", "no")
        # Equivocation: two different envelopes for gamma's next seq, one to each neighbour.
        other = self.claim("employees", 12)
        fork_a = _envelope(key, self.genesis, head, own, _payload(mine, start, own))
        fork_b = _envelope(key, self.genesis, head, other, _payload(mine, start, other))
        net.inject("gamma", "beta", encode_message(Envelopes(0, [fork_a.raw], False)))
        net.connect("alpha", "gamma")
        net.settle()
        net.inject("gamma", "alpha", encode_message(Envelopes(0, [fork_b.raw], False)))
        net.settle()
        table.add_row(
            "equivocation: two envelopes for one seq", "[yellow]kept as evidence[/]", "as evidence"
        )
        self.console.print(table)

    def converge(self) -> None:
        net = self.net
        sweeps = net.quiesce()
        cores = [net.cores[name] for name in _NAMES]
        if any(not core.admission.evidence for core in cores):
            raise MeshDemoFailed("a replica lacks the equivocation evidence")
        self.console.print(
            f"[green]✓[/] quiet after {sweeps} anti-entropy sweep(s): every round answered "
            f"'nothing to send'; {net.frames_sent} frames sent, {net.frames_dropped} lost"
        )
        _print_state(self.console, cores)
        digests = {core.claims_digest() for core in cores}
        held = {frozenset(core.admission.records) for core in cores}
        if len(digests) != 1 or len(held) != 1:
            raise MeshDemoFailed("replicas disagree")


def _payload(client: int, start: int, claim: Claim) -> bytes:
    return encode_update(client, start, [(claim.id, claim.raw)])


def _print_state(console: Console, cores: list[MeshCore]) -> None:
    logs = sorted({log for core in cores for log, _ in core.frontier()})
    frontier = Table("log (author@epoch)", *_NAMES, title="frontier: seq and head id per log")
    for log in logs:
        cells = []
        for core in cores:
            head = dict(core.frontier()).get(log)
            fork = core.admission.forks.get(log)
            cell = f"{head.seq} {short_id(head.id, 8)}" if head else "-"
            cells.append(cell + (f" [yellow](forked at {fork})[/]" if fork else ""))
        frontier.add_row(f"{short_id(log.author, 8)}@{log.epoch}", *cells)
    console.print(frontier)
    state = Table("replica", "envelopes", "live claims", "claims digest")
    for name, core in zip(_NAMES, cores, strict=True):
        state.add_row(
            name,
            str(len(core.admission.records)),
            str(len(core.admission.live_claims())),
            core.claims_digest().hex(),
        )
    console.print(state)
    console.print(
        "[green]✓[/] one claims digest and the same envelopes on every replica "
        "(a forked log's head may differ: each keeps the branch it saw first; both are held "
        "and the log is excluded from the fork on)"
    )


def _first_claim(core: MeshCore, author: bytes) -> bytes:
    ids = core.admission.logs[LogId(author, 1)]
    return core.admission.records[ids[0]].claims[0].id


def _own_head(core: MeshCore) -> Head:
    return next(h for log, h in core.frontier() if log.author == core.node)


def _holds(core: MeshCore, raw: bytes) -> bool:
    return any(r.envelope.raw == raw for r in core.admission.records.values())


def _envelope(
    node: SigningKey, genesis: Genesis, head: Head, claim: Claim, payload: bytes
) -> Envelope:
    return seal(
        node,
        mesh_id=genesis.mesh_id,
        epoch=1,
        seq=head.seq + 1,
        prev=head.id,
        hlc=99,
        claims_root=merkle_root([claim.id]),
        payload=payload,
    )


def _update(
    client: int, clock: int, key: str, value: bytes, delete_client: int | None = None
) -> bytes:
    """A hand-built update with one item under any key and, optionally, a delete range: how
    the attacks are made (our own encoder builds neither)."""
    struct = b"\x23\x01" + _string(ROOT_NAME) + _string(key) + encode_varuint(len(value)) + value
    deletes = b"\x00"
    if delete_client is not None:
        deletes = b"\x01" + encode_varuint(delete_client) + b"\x01\x00\x01"
    return b"\x01\x01" + encode_varuint(client) + encode_varuint(clock) + struct + deletes


def _string(text: str) -> bytes:
    raw = text.encode()
    return encode_varuint(len(raw)) + raw
