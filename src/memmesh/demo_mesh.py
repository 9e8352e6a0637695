"""The second half of ``memmesh demo``: three replicas of one mesh admitting each other's writes.

Every replica runs the real admission pipeline over its own LMDB store. Envelopes are exchanged
by hand here (gossip over websockets comes with the node daemon); what this shows is that honest
replicas end identical, and that validly signed but malicious updates are refused, or isolated
as evidence, the same way everywhere.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .admission import Admission, Status
from .claims import Claim, make_claim
from .crypto import SigningKey
from .envelope import Envelope, seal
from .errors import MemmeshError
from .ids import Head, short_id
from .membership import Genesis, Role, make_genesis
from .merkle import merkle_root
from .store import LmdbStore
from .ydecode import ROOT_NAME, client_id, encode_update, encode_varuint, item_key

__all__ = ["run_mesh_demo"]


class MeshDemoFailed(MemmeshError):
    """A step of the mesh demo did not behave as it says."""


def run_mesh_demo(console: Console, root: Path) -> None:
    console.rule("[bold]Three replicas, one mesh: admission")
    admin, agent = SigningKey.generate(), SigningKey.generate()
    nodes = {name: SigningKey.generate() for name in ("alpha", "beta", "gamma")}
    genesis = make_genesis(
        admin,
        "demo mesh",
        [(k.public_key, Role.NODE) for k in nodes.values()] + [(agent.public_key, Role.WRITER)],
    )
    console.print(
        f"mesh {short_id(genesis.mesh_id)}: genesis signed by admin {short_id(admin.public_key)}"
    )
    stores = {name: LmdbStore(root / f"replica-{name}") for name in nodes}
    try:
        replicas = {name: Admission(stores[name], genesis) for name in nodes}
        _run(console, _Mesh(genesis, agent, nodes, replicas, stores, root))
    finally:
        for store in stores.values():
            store.close()


@dataclass
class _Mesh:
    genesis: Genesis
    agent: SigningKey
    nodes: dict[str, SigningKey]
    replicas: dict[str, Admission]
    stores: dict[str, LmdbStore]
    root: Path


def _run(console: Console, mesh: _Mesh) -> None:
    genesis, agent, nodes = mesh.genesis, mesh.agent, mesh.nodes
    replicas, stores, root = mesh.replicas, mesh.stores, mesh.root
    seqs = itertools.count(1)

    def claim(key: str, value: object) -> Claim:
        return make_claim(
            agent,
            mesh_id=genesis.mesh_id,
            aseq=next(seqs),
            hlc=(time.time_ns() // 10**6, 0),
            namespace=("research", "acme"),
            key=key,
            type="fact",
            value=value,
        )

    written: list[Envelope] = []
    for name, key, value in [
        ("alpha", "ceo", "Ada Park"),
        ("alpha", "hq", "Lisbon"),
        ("beta", "hq", "Porto"),
        ("beta", "founded", 2019),
        ("gamma", "employees", 120),
    ]:
        written.append(
            replicas[name].write_local(nodes[name], [claim(key, value)], hlc=len(written) + 1)
        )
    _exchange(replicas, written)
    console.print(f"[green]✓[/] {len(written)} envelopes written on three replicas and exchanged")

    # Attacks, each validly signed by gamma's node key.
    gamma = nodes["gamma"]
    victim = written[0]
    victim_claim = replicas["alpha"].records[victim.id].claims[0]
    own = claim("note", "looks harmless")
    mine, theirs = client_id(gamma.public_key, 1), client_id(victim.author, 1)
    head = replicas["gamma"].frontier()
    gamma_head = next(h for log, h in head if log.author == gamma.public_key)
    start = replicas["gamma"].records[gamma_head.id].clock_end
    attacks = {
        "re-set alpha's claim key (the map-set erasure)": _update(
            mine, start, item_key(theirs, victim_claim.id), own.raw
        ),
        "delete alpha's items": _update(mine, start, item_key(mine, own.id), own.raw, theirs),
    }
    table = Table("attack (validly signed by a member)", "alpha", "beta", "gamma")
    for label, payload in attacks.items():
        env = seal(
            gamma,
            mesh_id=genesis.mesh_id,
            epoch=1,
            seq=gamma_head.seq + 1,
            prev=gamma_head.id,
            hlc=99,
            claims_root=merkle_root([own.id]),
            payload=payload,
        )
        verdicts = [replicas[name].receive(env.raw) for name in replicas]
        if any(v.status is not Status.REJECTED for v in verdicts):
            raise MeshDemoFailed(f"accepted: {label}")
        table.add_row(label, *(f"[red]{v.reason}[/]" for v in verdicts))
    # Equivocation: two different envelopes for gamma's next seq, one to alpha, one to beta.
    fork_a = _signed(gamma, genesis, gamma_head, start, claim("employees", 120))
    fork_b = _signed(gamma, genesis, gamma_head, start, claim("employees", 12))
    replicas["alpha"].receive(fork_a.raw)
    replicas["beta"].receive(fork_b.raw)
    _exchange(replicas, [fork_a, fork_b])
    evidence = [len(list(stores[name].iter_evidence())) for name in replicas]
    if evidence != [1, 1, 1]:
        raise MeshDemoFailed(f"equivocation evidence held: {evidence}")
    table.add_row(
        "two different seq envelopes (equivocation)", *["[yellow]evidence, log excluded[/]"] * 3
    )
    console.print(table)

    state = Table("replica", "envelopes", "live claims", "claims digest", title="after exchange")
    digests = set()
    for name, replica in replicas.items():
        digest = replica.claims_digest()
        digests.add(digest)
        state.add_row(
            name, str(len(replica.records)), str(len(replica.live_claims())), digest.hex()[:16]
        )
    console.print(state)
    if len(digests) != 1:
        raise MeshDemoFailed("replicas disagree")
    stores["alpha"].close()
    reopened = LmdbStore(root / "replica-alpha")
    stores["alpha"] = reopened
    again = Admission.open(reopened, genesis)
    if again.claims_digest() not in digests:
        raise MeshDemoFailed("restart changed the claims digest")
    console.print(
        "[green]✓[/] one claims digest on every replica; "
        "alpha restarted from disk with the same digest"
    )


def _exchange(replicas: dict[str, Admission], envelopes: list[Envelope]) -> None:
    for replica in replicas.values():
        replica.receive_many([env.raw for env in envelopes])


def _update(
    client: int, clock: int, key: str, value: bytes, delete_client: int | None = None
) -> bytes:
    """A hand-built update with one item (and, optionally, a delete range): for the attacks."""
    struct = b"\x23\x01" + _string(ROOT_NAME) + _string(key) + encode_varuint(len(value)) + value
    deletes = b"\x00"
    if delete_client is not None:
        deletes = b"\x01" + encode_varuint(delete_client) + b"\x01\x00\x01"
    return b"\x01\x01" + encode_varuint(client) + encode_varuint(clock) + struct + deletes


def _string(text: str) -> bytes:
    raw = text.encode()
    return encode_varuint(len(raw)) + raw


def _signed(node: SigningKey, genesis: Genesis, head: Head, start: int, claim: Claim) -> Envelope:
    return seal(
        node,
        mesh_id=genesis.mesh_id,
        epoch=1,
        seq=head.seq + 1,
        prev=head.id,
        hlc=100,
        claims_root=merkle_root([claim.id]),
        payload=encode_update(client_id(node.public_key, 1), start, [(claim.id, claim.raw)]),
    )
