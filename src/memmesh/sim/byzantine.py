"""Byzantine simulator nodes: members of the mesh that attack the honest cores.

A Byzantine node is a :class:`~memmesh.sim.cluster.SimNode` whose key the genesis admits and
whose ``MeshCore`` only speaks the wire protocol for it: it completes real handshakes, answers
requests and gossips like any member, but never writes through the core. Beside it runs an
:class:`Attacker` that builds raw envelope bytes itself (signed with the node's key where the
attack needs authentication to pass) and sends them as ``Envelopes`` pushes on the Byzantine
core's active connections, through the same simulated network, so the honest nodes that
receive them are the real ``MeshCore`` objects and their admission pipelines.

Every envelope an attacker builds is entered in the checker's ledger with what an honest node
must do with it: ``reject`` it (never stored), ``exclude`` it (stored, out of the live set), or
nothing in particular (``valid``: a valid envelope, live or a duplicate). The kinds:

- ``forger``: bad signatures, envelopes naming another node as author, claims with forged agent
  signatures (validly signed envelopes carrying them);
- ``replayer``: re-sends old valid envelopes it holds (its own and others') and validly signed
  envelopes of another mesh;
- ``equivocator``: signs two envelopes for one seq of its own log and sends them to different
  peers, then keeps extending one branch;
- ``spoofer``: payloads that write under another node's Yjs client id;
- ``eraser``: payloads that set another author's map key, or delete items;
- ``poisoner``: validly signed envelopes carrying malformed payloads: the known pycrdt crashers,
  nested types, a second root, trailing bytes, clock gaps, bad varints;
- ``revoked``: cut off with one honest node by a partition while an admin revokes it (cutoff:
  its seq then) through a node on the other side; it keeps writing, and the partition heals;
- ``flooder``: valid signed envelopes at a high rate (kept by its own core too, so anyone can
  fetch one lost on the way).

Each attacker draws from its own generator (``byzantine/<node>``) and acts at times fixed by
the seed, so a run stays one trace per seed.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..claims import CLAIM_ID_TAG, CLAIM_SIGNATURE_DOMAIN, Claim, make_claim
from ..core import SessionState, WriteAcked, WriteFailed
from ..core.messages import Envelopes, encode_message
from ..crypto import SigningKey
from ..envelope import (
    SIGNATURE_DOMAIN,
    Envelope,
    EnvelopeKind,
    encode_body,
    envelope_id,
    seal,
)
from ..errors import StorageError
from ..ids import ZERO_ID, tagged_hash
from ..membership import make_genesis
from ..merkle import merkle_root
from ..testing import seeded_key
from ..ydecode import ROOT_NAME, client_id, encode_update, encode_varuint
from .cluster import Cluster, SimNode
from .options import KINDS, parse_kinds
from .seed import rng_for

__all__ = [
    "ATTACKS",
    "CRASHERS",
    "KINDS",
    "Attacker",
    "ByzLog",
    "Expect",
    "forge_claim",
    "parse_kinds",
]

CRASHERS = (
    bytes.fromhex(
        "01240000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000100000000000000000000000000000000000000000000000000"
    ),
    bytes.fromhex(
        "0a010101010101010101010101010101010101010101010101010101010101010101010101010101"
        "010101010101000101010101010101ffffff01010181010101010101010101010101010101010101"
        "010101010101010101010101010101010101010101010101"
    ),
)
"""The known pycrdt 0.14.13 crashers (``fixtures/pycrdt-crashers``: ``yrs_div0_poison.bin`` and
``yrs_unwrap_partial.bin``), kept here so a run reads no file."""

ATTACKS = 24
"""Attack rounds spread over the fault phase (the flooder sends far more often)."""
FLOOD_INTERVAL_US = 10_000
"""The flooder sends a valid envelope every 10 ms (100 a second) to every peer."""
_REVOKE_RETRY_US = 500_000


class Expect(enum.StrEnum):
    """What an honest node must do with a Byzantine envelope."""

    REJECT = "reject"
    """Never store it (a rejection with a reason code)."""
    EXCLUDE = "exclude"
    """If stored, keep it out of the live set (an exclusion with a reason)."""
    VALID = "valid"
    """A valid envelope: live (or a duplicate); nothing to assert beyond convergence."""


@dataclass(slots=True)
class ByzLog:
    """A node's own log as its attacker keeps it: where the next valid envelope goes."""

    key: SigningKey
    mesh_id: bytes
    epoch: int = 1
    seq: int = 0
    prev: bytes = ZERO_ID
    clock: int = 0

    @property
    def client(self) -> int:
        return client_id(self.key.public_key, self.epoch)

    def build(
        self,
        claims: Sequence[Claim],
        *,
        hlc: int,
        payload: bytes | None = None,
        claims_root: bytes | None = None,
    ) -> Envelope:
        """A validly signed envelope at the next seq; the log does not move."""
        if payload is None:
            payload = encode_update(self.client, self.clock, [(c.id, c.raw) for c in claims])
        return seal(
            self.key,
            mesh_id=self.mesh_id,
            epoch=self.epoch,
            seq=self.seq + 1,
            prev=self.prev,
            hlc=hlc,
            claims_root=merkle_root([c.id for c in claims]) if claims_root is None else claims_root,
            payload=payload,
        )

    def append(self, env: Envelope, items: int) -> None:
        self.seq, self.prev, self.clock = env.seq, env.id, self.clock + items


def struct(key: str, value: bytes, *, info: int = 0x23, root: str = ROOT_NAME) -> bytes:
    """One Yjs struct as the grammar lays it out, with any info byte, root and key."""
    name, raw_key = root.encode(), key.encode()
    return b"".join(
        (
            bytes([info, 0x01]),
            encode_varuint(len(name)),
            name,
            encode_varuint(len(raw_key)),
            raw_key,
            encode_varuint(len(value)),
            value,
        )
    )


def update(client: int, clock: int, structs: Sequence[bytes], tail: bytes = b"\x00") -> bytes:
    """One client section holding ``structs``, then ``tail`` (the delete set)."""
    head = b"\x01" + encode_varuint(len(structs)) + encode_varuint(client)
    return head + encode_varuint(clock) + b"".join(structs) + tail


def forge_claim(signer: SigningKey, victim: bytes, claim: Claim) -> bytes:
    """``claim`` (signed by ``signer``) rewritten to name ``victim`` as its agent, still signed
    by ``signer``: a forged agent signature. The body stays canonical (both keys are 64 hex
    digits)."""
    body = claim.raw[5:-64].replace(signer.public_key.hex().encode(), victim.hex().encode())
    return claim.raw[:5] + body + signer.sign(CLAIM_SIGNATURE_DOMAIN, body)


@dataclass(slots=True)
class Sent:
    """What one attacker sent, by variant (envelope copies) and in frames."""

    variants: dict[str, int] = field(default_factory=dict)
    frames: int = 0

    def count(self, variant: str, copies: int) -> None:
        self.variants[variant] = self.variants.get(variant, 0) + copies


class Attacker:
    """One Byzantine node's attack: builds raw envelopes and pushes them to its peers."""

    def __init__(
        self,
        kind: str,
        number: int,
        node: SimNode,
        cluster: Cluster,
        healed: Callable[[], bool],
    ) -> None:
        self.kind, self.number, self.node = kind, number, node
        self.cluster, self.healed = cluster, healed
        self.loop, self.checker, self.mesh = cluster.loop, cluster.checker, cluster.mesh
        self.options = cluster.options
        self.rng = rng_for(self.options.seed, f"byzantine/{node.index}")
        self.agent = self.mesh.byzantine_agents[number]
        self.aseq = 0
        self.log = ByzLog(node.key, self.mesh.mesh_id)
        other = make_genesis(seeded_key(f"sim-{self.options.seed}/other-admin"), "other", [])
        self.other_log = ByzLog(node.key, other.mesh_id)
        self.own: list[bytes] = []
        """Its valid envelopes, for the replayer to send again."""
        self.own_claims: list[Claim] = []
        self.sent = Sent()
        self.rounds = 0
        self.forks = 0
        self.branches: list[tuple[bytes, bytes]] = []
        """The equivocator's two envelopes of each seq it forked."""
        self.cutoff: int | None = None
        """The revoked node's cutoff seq, once the admin decided it."""
        self.revoked_at_us: int | None = None

    # -- scheduling ---------------------------------------------------------------------------

    def schedule(self) -> None:
        duration = self.options.duration_ms * 1000
        if self.kind == "flooder":
            for at in range(FLOOD_INTERVAL_US, duration, FLOOD_INTERVAL_US):
                self.loop.at(at, self._tick)
            return
        step = max(1, duration // (ATTACKS + 1))
        for round_ in range(1, ATTACKS + 1):
            self.loop.at(round_ * step, self._tick)
        if self.kind == "revoked":
            self.loop.at(duration * 25 // 100, self._partition)
            self.loop.at(duration * 35 // 100, self._revoke)
            self.loop.at(duration * 65 // 100, self._heal)

    def _tick(self, _: object) -> None:
        if self.node.core is None or self.healed():
            return
        sessions = self._sessions()
        if not sessions:
            return
        self.rounds += 1
        getattr(self, f"_{self.kind}")(sessions)

    def _sessions(self) -> list[str]:
        core = self.node.core
        assert core is not None
        return sorted(p for p, s in core.sessions.items() if s.state is SessionState.ACTIVE)

    # -- building blocks ----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self.cluster.local_ms(self.node.index)

    def _claim(self, *, mesh_id: bytes | None = None) -> Claim:
        self.aseq += 1
        return make_claim(
            self.agent,
            mesh_id=mesh_id or self.mesh.mesh_id,
            aseq=self.aseq,
            hlc=(self._now_ms(), 0),
            namespace=("sim", "byzantine"),
            key=f"{self.kind}{self.number}/{self.aseq}",
            type="fact",
            value={"round": self.rounds, "node": self.node.index},
        )

    def _note(self, raw: bytes, expect: Expect) -> bytes:
        self.checker.byz_expect.setdefault(envelope_id(raw), (self.kind, expect.value))
        return raw

    def _send(self, handles: Sequence[str], raws: Sequence[bytes], variant: str) -> None:
        if not raws or not handles:
            return
        data = encode_message(Envelopes(0, list(raws), False))
        items = tuple((envelope_id(raw), 1) for raw in raws)
        self.cluster.trace.add("byz", self.node.index, self.kind, variant, len(raws))
        for handle in handles:
            self.cluster.network.send(
                self.node.index, handle, data, "Envelopes", items, pushed=True
            )
        self.sent.frames += len(handles)
        self.sent.count(variant, len(raws) * len(handles))

    def _valid(self, expect: Expect = Expect.VALID) -> bytes:
        """The next valid envelope of its own log, appended to it."""
        claims = [self._claim()]
        env = self.log.build(claims, hlc=self._now_ms() << 16)
        self.log.append(env, len(claims))
        self.own.append(env.raw)
        self.own_claims.extend(claims)
        return self._note(env.raw, expect)

    def _signed(self, payload: bytes, claims: Sequence[Claim] = ()) -> bytes:
        """Validly signed at the next seq around ``payload`` (the log does not move); one to
        reject."""
        env = self.log.build(claims, hlc=self._now_ms() << 16, payload=payload)
        return self._note(env.raw, Expect.REJECT)

    def _victim(self) -> bytes:
        """An honest node's key."""
        honest = [n for n in self.cluster.nodes if n.byzantine is None]
        return honest[self.rng.randrange(len(honest))].key.public_key

    def _cover(self, sessions: list[str]) -> None:
        """Every fourth round a valid envelope of its own log, as a member would write."""
        if self.rounds % 4 == 1:
            self._send(sessions, [self._valid()], "valid")

    # -- the kinds ----------------------------------------------------------------------------

    def _forger(self, sessions: list[str]) -> None:
        self._cover(sessions)
        claim = self._claim()
        variant = self.rounds % 4
        if variant == 3:  # validly signed, naming a causal past that exists nowhere
            env = seal(
                self.node.key,
                mesh_id=self.mesh.mesh_id,
                epoch=self.log.epoch,
                seq=self.log.seq + 1,
                prev=self.log.prev,
                deps=[tagged_hash(b"byzantine/dangling", claim.id)],
                hlc=self._now_ms() << 16,
                claims_root=merkle_root([claim.id]),
                payload=encode_update(self.log.client, self.log.clock, [(claim.id, claim.raw)]),
            )
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "dangling_dep")
        elif variant == 0:  # a bad signature on an otherwise valid envelope
            env = self.log.build([claim], hlc=self._now_ms() << 16)
            bad = bytearray(env.raw)
            bad[-1 - self.rng.randrange(64)] ^= 1 << self.rng.randrange(8)
            self._send(sessions, [self._note(bytes(bad), Expect.REJECT)], "bad_signature")
        elif variant == 1:  # another node named as author, signed with its own key
            victim = self._victim()
            body = encode_body(
                kind=EnvelopeKind.UPDATE,
                mesh_id=self.mesh.mesh_id,
                author=victim,
                epoch=1,
                seq=1,
                prev=ZERO_ID,
                deps=[],
                hlc=self._now_ms() << 16,
                claims_root=merkle_root([claim.id]),
                payload=encode_update(client_id(victim, 1), 0, [(claim.id, claim.raw)]),
            )
            raw = body + self.node.key.sign(SIGNATURE_DOMAIN, body)
            self._send(sessions, [self._note(raw, Expect.REJECT)], "foreign_author")
        else:  # a validly signed envelope carrying a claim whose agent signature is forged
            victim = self.mesh.agents[self.rng.randrange(len(self.mesh.agents))].public_key
            forged = forge_claim(self.agent, victim, claim)
            forged_id = tagged_hash(CLAIM_ID_TAG, forged)
            env = self.log.build(
                [],
                hlc=self._now_ms() << 16,
                payload=encode_update(self.log.client, self.log.clock, [(forged_id, forged)]),
                claims_root=merkle_root([forged_id]),
            )
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "forged_agent_signature")

    def _replayer(self, sessions: list[str]) -> None:
        self._cover(sessions)
        core = self.node.core
        assert core is not None
        held = sorted(core.admission.records)
        old = self.rng.sample(held, min(4, len(held)))
        raws = [core.admission.envelope_bytes(i) for i in old]
        if self.own:
            raws.append(self.own[self.rng.randrange(len(self.own))])
        self._send(sessions, raws, "replay")
        if self.own_claims and self.rounds % 3 == 1:  # one of its own claims, in a new envelope
            old_claim = self.own_claims[self.rng.randrange(len(self.own_claims))]
            env = self.log.build([old_claim], hlc=self._now_ms() << 16)
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "replayed_claim")
        if self.rounds % 3 == 0:  # validly signed, in another mesh this key belongs to
            claims = [self._claim(mesh_id=self.other_log.mesh_id)]
            env = self.other_log.build(claims, hlc=self._now_ms() << 16)
            self.other_log.append(env, 1)
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "other_mesh")

    def _equivocator(self, sessions: list[str]) -> None:
        for mine, theirs in self.branches:  # each branch again to its side: it wants both kept
            self._split(sessions, mine, theirs, "fork_again")
        fork_now = self.forks == 0 and self.rounds >= 3 and (len(sessions) > 1 or self.rounds >= 8)
        fork_now = fork_now or (self.forks == 1 and self.rounds >= 16)
        if not fork_now:
            expect = Expect.EXCLUDE if self.forks else Expect.VALID
            self._send(sessions, [self._valid(expect)], "valid" if not self.forks else "after_fork")
            return
        hlc = self._now_ms() << 16
        first = self.log.build([self._claim()], hlc=hlc)
        second = self.log.build([self._claim()], hlc=hlc + 1)
        self._note(first.raw, Expect.EXCLUDE)
        self._note(second.raw, Expect.EXCLUDE)
        self.log.append(first, 1)
        self.own.append(first.raw)
        self.forks += 1
        self.branches.append((first.raw, second.raw))
        self._split(sessions, first.raw, second.raw, "fork")

    def _split(self, sessions: list[str], first: bytes, second: bytes, variant: str) -> None:
        """One branch to every other peer, the other branch to the rest (both to a lone one)."""
        if len(sessions) > 1:
            self._send(sessions[::2], [first], variant)
            self._send(sessions[1::2], [second], variant)
        else:
            self._send(sessions, [first, second], variant)

    def _spoofer(self, sessions: list[str]) -> None:
        self._cover(sessions)
        victim = client_id(self._victim(), 1)
        claim = self._claim()
        items = [(claim.id, claim.raw)]
        if self.rounds % 2:  # its items under another node's client id
            payload = encode_update(victim, self.rng.randrange(50), items)
            self._send(sessions, [self._signed(payload, [claim])], "foreign_client")
        else:  # a second client section, in another node's name
            own = encode_update(self.log.client, self.log.clock, items)
            theirs = encode_update(victim, 0, items)
            payload = b"\x02" + own[1:-1] + theirs[1:]
            self._send(sessions, [self._signed(payload, [claim])], "second_client")

    def _eraser(self, sessions: list[str]) -> None:
        self._cover(sessions)
        core = self.node.core
        assert core is not None
        honest = {n.key.public_key for n in self.cluster.nodes if n.byzantine is None}
        victims = sorted(
            (i, r) for i, r in core.admission.records.items() if r.envelope.author in honest
        )
        if victims and self.rounds % 2:  # re-set another author's map key (the erasure)
            _, record = victims[self.rng.randrange(len(victims))]
            claim = record.claims[0]
            key = f"{client_id(record.envelope.author, record.envelope.epoch)}/{claim.id.hex()}"
            payload = update(self.log.client, self.log.clock, [struct(key, claim.raw)])
            self._send(sessions, [self._signed(payload, [claim])], "foreign_key")
            return
        victim = client_id(self._victim(), 1)
        claim = self._claim()
        # A valid item of its own, and a delete set naming another author's first items.
        deletes = b"\x01" + encode_varuint(victim) + b"\x01\x00" + encode_varuint(4)
        payload = update(
            self.log.client,
            self.log.clock,
            [struct(f"{self.log.client}/{claim.id.hex()}", claim.raw)],
            deletes,
        )
        self._send(sessions, [self._signed(payload, [claim])], "delete")

    def _poisoner(self, sessions: list[str]) -> None:
        self._cover(sessions)
        claim = self._claim()
        own_key = f"{self.log.client}/{claim.id.hex()}"
        good = encode_update(self.log.client, self.log.clock, [(claim.id, claim.raw)])
        variant = self.rounds % 9
        if variant < 2:
            name, payload = f"crasher{variant}", CRASHERS[variant]
        elif variant == 2:
            name = "nested_type"
            payload = update(self.log.client, self.log.clock, [struct(own_key, b"", info=0x27)])
        elif variant == 3:
            name = "second_root"
            payload = update(
                self.log.client, self.log.clock, [struct(own_key, claim.raw, root="x")]
            )
        elif variant == 4:
            name, payload = "trailing_bytes", good + b"\x00"
        elif variant == 5:
            name = "clock_gap"
            payload = encode_update(self.log.client, self.log.clock + 7, [(claim.id, claim.raw)])
        elif variant == 6:
            name, payload = "bad_varint", b"\x01" + b"\xff" * 9 + b"\x01"
        elif variant == 7:  # a grammatical item whose bytes are no claim
            junk = b"\x01\x00\x00\x00\x02{}" + bytes(64)
            junk_id = tagged_hash(CLAIM_ID_TAG, junk)
            payload = encode_update(self.log.client, self.log.clock, [(junk_id, junk)])
            env = self.log.build([], hlc=self._now_ms() << 16, payload=payload,
                                 claims_root=merkle_root([junk_id]))  # fmt: skip
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "bad_claim")
            return
        else:  # a valid payload under a claims root that is not its claims'
            env = self.log.build([claim], hlc=self._now_ms() << 16, claims_root=b"\x07" * 32)
            self._send(sessions, [self._note(env.raw, Expect.REJECT)], "bad_claims_root")
            return
        self._send(sessions, [self._signed(payload, [claim])], name)

    def _revoked(self, sessions: list[str]) -> None:
        expect = Expect.VALID if self.cutoff is None else Expect.EXCLUDE
        self._send(sessions, [self._valid(expect)], "valid" if self.cutoff is None else "revoked")

    def _flooder(self, sessions: list[str]) -> None:
        raw = self._valid()
        # Its own core keeps the log too, as a member that wants its spam taken would: else an
        # envelope lost on every link it went out on could be fetched from nobody, and the rest
        # of the log would wait behind it for good.
        core = self.node.core
        assert core is not None
        with contextlib.suppress(StorageError):
            core.admission.receive_many([raw])
        self._send(sessions, [raw], "flood")

    # -- the revoked node's partition and revocation ------------------------------------------

    def _partition(self, _: object) -> None:
        """Cut the revoked node off with one honest node it syncs with (or any honest one)."""
        if self.healed() or self.node.core is None:
            return
        network = self.cluster.network
        peers = [network.peer_of.get((self.node.index, h)) for h in self._sessions()]
        honest = [n.index for n in self.cluster.nodes if n.byzantine is None and not n.left]
        mates = [p for p in peers if p in honest] or honest
        mate = mates[0]
        group = [0] * len(network.group)
        group[self.node.index] = group[mate] = 1
        self.cluster.trace.add("byz-partition", self.node.index, mate)
        network.partition(group)

    def _heal(self, _: object) -> None:
        if not self.healed():
            self.cluster.trace.add("byz-heal", self.node.index)
            self.cluster.network.heal()

    def _revoke(self, _: object) -> None:
        """The admin revokes the node through an honest node on the other side of the
        partition; its cutoff is the seq it had reached, decided once."""
        if self.cutoff is None:
            self.cutoff = self.log.seq
            self.revoked_at_us = self.loop.now_us
        network = self.cluster.network
        side = network.group[self.node.index]
        candidates = [
            n
            for n in self.cluster.nodes
            if n.byzantine is None and n.core is not None and not n.leaving and not n.left
        ]
        across = [n for n in candidates if network.group[n.index] != side] or candidates
        if not across:
            self.loop.after(_REVOKE_RETRY_US, self._revoke)
            return
        via = across[self.rng.randrange(len(across))]
        target = self.node.key.public_key.hex()
        claim = self.mesh.claim(
            self.mesh.admin,
            key=target,
            value={"key": target, "cutoff": {"epoch": 1, "seq": self.cutoff}},
            hlc_ms=self.cluster.local_ms(via.index),
            namespace=("_mesh", "members"),
            type="revoke",
        )
        self.cluster.trace.add("byz-revoke", self.node.index, via.index, self.cutoff)

        def done(token: int, outcome: WriteAcked | WriteFailed | None) -> None:
            if not isinstance(outcome, WriteAcked):
                self.loop.after(_REVOKE_RETRY_US, self._revoke)

        self.cluster.write(via, [claim], done)
