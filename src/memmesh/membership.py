"""Mesh genesis and membership: who may author envelopes and sign claims (DESIGN §3).

**Genesis** is a document signed by the mesh's first admin key, naming the mesh and its first
members; the mesh id is its tagged hash, so every signed object that carries the mesh id is bound
to this exact founding document. Bytes::

    version u8 (=1) | body_len u32 | body (canonical JSON) | signature 64 (admin, GENESIS domain)

with body ``{"v": 1, "name": str, "admin": hex, "members": [[hex key, role], ...]}``, members
sorted by key, unique, and including the admin itself as ``admin``.

**Operations** are claims of type ``admit`` (value ``{"key": hex, "role": role}``) and ``revoke``
(value ``{"key": hex, "cutoff": {"epoch": e, "seq": s}}`` for a node key: envelopes up to and
including (e, s) stay live; ``{"cutoff": {"aseq": n}}`` for an agent key: claims up to its own
seq n stay live), signed by an admin's agent key and carried in envelopes like any claim.

**Roles**: ``node`` keys author envelopes; ``admin``, ``writer``, ``resolver`` and ``reader`` are
agent keys, and all but ``reader`` may sign claims; only ``admin`` may issue operations.

The membership state is a pure function of the set of operations known: they are applied in one
canonical order, ``(causal rank of the envelope, envelope id, position in the envelope)``, where
the rank is one more than the highest rank among an envelope's prev and deps, so an operation
always comes after everything in its causal past and concurrent ones are ordered by id. An
operation is void when, at its point in that order, its issuer is not an admin, or is revoked
with a cutoff below the operation's own seq, or when the node that carried it is not a member at
that point. So two admins revoking each other concurrently end the same way on every replica.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .canonical import JsonValue, canonical_bytes, parse_canonical
from .claims import Claim, decode_claim
from .crypto import SIGNATURE_BYTES, SigningKey, verify
from .errors import Reason, Rejected
from .ids import LogId, short_id, tagged_hash
from .wire import Reader, Writer

__all__ = [
    "ADMIT",
    "MEMBERSHIP_NAMESPACE",
    "REVOKE",
    "Genesis",
    "Membership",
    "MembershipOp",
    "Role",
    "decode_genesis",
    "make_genesis",
    "parse_op",
    "verify_admit_chain",
]

GENESIS_VERSION = 1
GENESIS_DOMAIN = b"memmesh/genesis/v1\x00"
MESH_ID_TAG = b"mesh-id/v1"
GENESIS_BYTES_MAX = 64 * 1024
GENESIS_MEMBERS_MAX = 256
ADMIT = "admit"
REVOKE = "revoke"
MEMBERSHIP_NAMESPACE = ("_mesh", "members")


class Role(enum.StrEnum):
    NODE = "node"
    ADMIN = "admin"
    WRITER = "writer"
    RESOLVER = "resolver"
    READER = "reader"


CLAIM_SIGNING_ROLES = frozenset({Role.ADMIN, Role.WRITER, Role.RESOLVER})


@dataclass(frozen=True, slots=True)
class Genesis:
    name: str
    admin: bytes
    members: tuple[tuple[bytes, Role], ...]
    raw: bytes
    mesh_id: bytes


def make_genesis(
    admin_key: SigningKey, name: str, members: Sequence[tuple[bytes, Role]] = ()
) -> Genesis:
    """A new mesh founded by ``admin_key``, with ``members`` (node keys, other agents) admitted."""
    roster = {admin_key.public_key: Role.ADMIN}
    for key, role in members:
        roster.setdefault(key, Role(role))
    body = canonical_bytes(
        {
            "v": GENESIS_VERSION,
            "name": name,
            "admin": admin_key.public_key.hex(),
            "members": [[key.hex(), roster[key].value] for key in sorted(roster)],
        }
    )
    w = Writer()
    w.u8(GENESIS_VERSION)
    w.u32(len(body))
    w.raw(body)
    w.raw(admin_key.sign(GENESIS_DOMAIN, body))
    return decode_genesis(w.getvalue())


def decode_genesis(data: bytes) -> Genesis:
    """Decode and verify a genesis document; refuse anything else with a reason code."""
    data = bytes(data)
    if len(data) > GENESIS_BYTES_MAX:
        raise Rejected(Reason.TOO_LARGE, f"genesis of {len(data)} bytes")
    r = Reader(data, "genesis")
    if r.u8("version") != GENESIS_VERSION:
        raise Rejected(Reason.BAD_VERSION, "genesis version")
    body_len = r.u32("body_len")
    if body_len + SIGNATURE_BYTES != r.remaining:
        too_long = body_len + SIGNATURE_BYTES > r.remaining
        raise Rejected(
            Reason.TRUNCATED if too_long else Reason.TRAILING_BYTES,
            "genesis body_len does not match its size",
        )
    body = r.raw(body_len, "body")
    signature = r.raw(SIGNATURE_BYTES, "signature")
    doc = parse_canonical(body, what="genesis", bytes_max=GENESIS_BYTES_MAX)
    if not isinstance(doc, dict) or set(doc) != {"v", "name", "admin", "members"}:
        raise Rejected(
            Reason.BAD_GENESIS, "genesis members must be exactly v, name, admin, members"
        )
    name, admin_hex, members = doc["name"], doc["admin"], doc["members"]
    version = doc["v"]
    if type(version) is not int or version != GENESIS_VERSION:  # `true == 1` in Python
        raise Rejected(Reason.BAD_GENESIS, "genesis body version")
    if not isinstance(name, str) or not 0 < len(name.encode()) <= 256:
        raise Rejected(Reason.BAD_GENESIS, "genesis version or name")
    admin = _key(admin_hex, Reason.BAD_GENESIS)
    if not isinstance(members, list) or not 0 < len(members) <= GENESIS_MEMBERS_MAX:
        raise Rejected(Reason.BAD_GENESIS, "genesis members must be a non-empty list")
    roster: list[tuple[bytes, Role]] = []
    for entry in members:
        if not (isinstance(entry, list) and len(entry) == 2):
            raise Rejected(Reason.BAD_GENESIS, "a genesis member is [key, role]")
        roster.append((_key(entry[0], Reason.BAD_GENESIS), _role(entry[1], Reason.BAD_GENESIS)))
    if [k for k, _ in roster] != sorted({k for k, _ in roster}):
        raise Rejected(Reason.NOT_CANONICAL, "genesis members must be sorted by key, unique")
    if (admin, Role.ADMIN) not in roster:
        raise Rejected(Reason.BAD_GENESIS, "the genesis admin must be a member with role admin")
    if not verify(admin, GENESIS_DOMAIN, body, signature):
        raise Rejected(Reason.BAD_SIGNATURE, "genesis is not signed by its admin")
    return Genesis(
        name=name,
        admin=admin,
        members=tuple(roster),
        raw=data,
        mesh_id=tagged_hash(MESH_ID_TAG, data),
    )


@dataclass(frozen=True, slots=True)
class MembershipOp:
    """An admit or revoke, with where it sits in the canonical order."""

    kind: str
    target: bytes
    role: Role | None
    node_cutoff: tuple[int, int] | None
    agent_cutoff: int | None
    issuer: bytes
    issuer_aseq: int
    claim_id: bytes
    carrier: tuple[bytes, int, int]
    """(author, epoch, seq) of the envelope that carried it."""
    order: tuple[int, bytes, int]
    """(causal rank of that envelope, its id, the claim's position in it)."""


def parse_op(claim: Claim) -> tuple[str, bytes, Role | None, tuple[int, int] | None, int | None]:
    """The operation a membership claim states; ``Rejected(BAD_MEMBERSHIP_OP)`` if malformed."""
    value = claim.value
    if claim.type == ADMIT:
        if not isinstance(value, dict) or set(value) != {"key", "role"}:
            raise Rejected(Reason.BAD_MEMBERSHIP_OP, "admit value is {key, role}")
        return ADMIT, _key(value["key"]), _role(value["role"]), None, None
    if claim.type == REVOKE:
        if not isinstance(value, dict) or set(value) != {"key", "cutoff"}:
            raise Rejected(Reason.BAD_MEMBERSHIP_OP, "revoke value is {key, cutoff}")
        cutoff = value["cutoff"]
        if isinstance(cutoff, dict) and set(cutoff) == {"epoch", "seq"}:
            epoch, seq = cutoff["epoch"], cutoff["seq"]
            if _uint(epoch) and _uint(seq):
                assert isinstance(epoch, int) and isinstance(seq, int)
                return REVOKE, _key(value["key"]), None, (epoch, seq), None
        if isinstance(cutoff, dict) and set(cutoff) == {"aseq"} and _uint(cutoff["aseq"]):
            aseq = cutoff["aseq"]
            assert isinstance(aseq, int)
            return REVOKE, _key(value["key"]), None, None, aseq
        raise Rejected(Reason.BAD_MEMBERSHIP_OP, "revoke cutoff is {epoch, seq} or {aseq}")
    raise Rejected(Reason.BAD_MEMBERSHIP_OP, f"{claim.type} is not a membership operation")


def _uint(value: JsonValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _key(value: JsonValue, reason: Reason = Reason.BAD_MEMBERSHIP_OP) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise Rejected(reason, "a key is 64 lowercase hex digits")
    return bytes.fromhex(value)


def _role(value: JsonValue, reason: Reason = Reason.BAD_MEMBERSHIP_OP) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise Rejected(reason, f"unknown role {str(value)[:20]!r}") from None


@dataclass(slots=True)
class Member:
    role: Role
    node_cutoff: tuple[int, int] | None = None
    agent_cutoff: int | None = None
    admitted_by: bytes | None = None
    """Claim id of the admit that gave the current role (None: genesis)."""

    @property
    def revoked(self) -> bool:
        return self.node_cutoff is not None or self.agent_cutoff is not None


@dataclass(slots=True)
class Membership:
    """The membership state: genesis plus every known operation, folded in canonical order."""

    genesis: Genesis
    _ops: dict[bytes, MembershipOp] = field(default_factory=dict)
    _state: dict[bytes, Member] | None = None
    _void: dict[bytes, str] = field(default_factory=dict)
    _admit_targets: set[bytes] = field(default_factory=set)
    _genesis_keys: frozenset[bytes] = field(init=False)
    _forks: dict[LogId, int] = field(default_factory=dict)
    _failed: frozenset[tuple[bytes, int, int]] = frozenset()

    def add(self, ops: Iterable[MembershipOp]) -> None:
        for op in ops:
            if op.claim_id not in self._ops:
                self._ops[op.claim_id] = op
                if op.kind == ADMIT:
                    self._admit_targets.add(op.target)
                self._state = None

    def set_exclusions(
        self, forks: Mapping[LogId, int], failed: frozenset[tuple[bytes, int, int]]
    ) -> None:
        """Envelopes excluded regardless of membership: a log's seqs from its equivocation fork
        on, and envelopes pycrdt refused. Operations they carry are void."""
        if dict(forks) != self._forks or failed != self._failed:
            self._forks, self._failed = dict(forks), failed
            self._state = None

    def remove(self, claim_ids: Iterable[bytes]) -> None:
        """Forget operations (a batch whose commit failed is rolled back)."""
        removed = False
        for claim_id in claim_ids:
            removed = self._ops.pop(claim_id, None) is not None or removed
        if removed:
            self._admit_targets = {op.target for op in self._ops.values() if op.kind == ADMIT}
            self._state = None

    def ever_admitted(self, key: bytes) -> bool:
        """Whether any admit names ``key`` (genesis included), void or not: decides pending."""
        return key in self._admit_targets or key in self._genesis_keys

    def __post_init__(self) -> None:
        self._genesis_keys = frozenset(key for key, _ in self.genesis.members)

    @property
    def state(self) -> dict[bytes, Member]:
        if self._state is None:
            self._state, self._void = self._fold()
        return self._state

    @property
    def void(self) -> dict[bytes, str]:
        """Claim ids of void operations, with why."""
        _ = self.state
        return self._void

    def _fold(self) -> tuple[dict[bytes, Member], dict[bytes, str]]:
        state = {key: Member(role) for key, role in self.genesis.members}
        void: dict[bytes, str] = {}
        for op in sorted(self._ops.values(), key=lambda o: o.order):
            why = self._carrier_excluded(op) or _why_void(state, op)
            if why is not None:
                void[op.claim_id] = why
                continue
            if op.kind == ADMIT:
                assert op.role is not None
                state[op.target] = Member(op.role, admitted_by=op.claim_id)
                continue
            target = state[op.target]
            if op.node_cutoff is not None:
                old = target.node_cutoff
                target.node_cutoff = op.node_cutoff if old is None else min(old, op.node_cutoff)
            if op.agent_cutoff is not None:
                old_a = target.agent_cutoff
                target.agent_cutoff = (
                    op.agent_cutoff if old_a is None else min(old_a, op.agent_cutoff)
                )
        return state, void

    def _carrier_excluded(self, op: MembershipOp) -> str | None:
        author, epoch, seq = op.carrier
        fork = self._forks.get(LogId(author, epoch))
        if fork is not None and seq >= fork:
            return "carrier envelope is excluded: its log equivocates"
        if op.carrier in self._failed:
            return "carrier envelope is excluded: pycrdt refused it"
        return None

    def node_status(self, author: bytes, epoch: int, seq: int) -> Reason | None:
        """None when an envelope at (author, epoch, seq) is from a live node; else why not."""
        member = self.state.get(author)
        if member is None or member.role != Role.NODE:
            return Reason.NOT_MEMBER
        if member.node_cutoff is not None and (epoch, seq) > member.node_cutoff:
            return Reason.REVOKED
        return None

    def agent_status(self, agent: bytes, aseq: int) -> Reason | None:
        """None when a claim by ``agent`` at its seq ``aseq`` is from a live writer."""
        member = self.state.get(agent)
        if member is None or member.role not in CLAIM_SIGNING_ROLES:
            return Reason.NOT_MEMBER
        if member.agent_cutoff is not None and aseq > member.agent_cutoff:
            return Reason.REVOKED
        return None

    def admit_chain(self, key: bytes) -> list[bytes]:
        """Claim ids of the admits from genesis to ``key``: the key's admit, its issuer's, ...

        Empty for a genesis member. A handshake presents the claims behind these ids so a peer
        that holds only the genesis can check the chain itself.
        """
        chain: list[bytes] = []
        seen: set[bytes] = set()
        current = key
        while True:
            member = self.state.get(current)
            if member is None or member.admitted_by is None or current in seen:
                return chain
            seen.add(current)
            chain.append(member.admitted_by)
            current = self._ops[member.admitted_by].issuer


def _why_void(state: dict[bytes, Member], op: MembershipOp) -> str | None:
    author, epoch, seq = op.carrier
    node = state.get(author)
    if node is None or node.role != Role.NODE:
        return "carrier node is not a member at this point"
    if node.node_cutoff is not None and (epoch, seq) > node.node_cutoff:
        return "carrier node is revoked at this point"
    issuer = state.get(op.issuer)
    if issuer is None or issuer.role != Role.ADMIN:
        return f"issuer {short_id(op.issuer)} is not an admin at this point"
    if issuer.agent_cutoff is not None and op.issuer_aseq > issuer.agent_cutoff:
        return f"issuer {short_id(op.issuer)} is revoked at this point"
    target = state.get(op.target)
    if op.kind == ADMIT and target is not None and target.revoked:
        return "a revoked key is never admitted again"
    if op.kind == REVOKE and target is None:
        return "revokes a key that is not a member"
    if op.kind == REVOKE and target is not None:
        is_node = target.role == Role.NODE
        if (op.node_cutoff is not None) != is_node:
            return "cutoff kind does not match the key's role"
    return None


def verify_admit_chain(genesis: Genesis, chain: Sequence[bytes], key: bytes) -> Role:
    """Check an admit chain offline and return the role it gives ``key``.

    ``chain`` holds admit claims' bytes, the key's own admit first, then its issuer's, and so on
    back to an issuer who is a genesis admin (what :meth:`Membership.admit_chain` names). Each
    claim must be a valid, agent-signed admit of this mesh, naming the previous link's issuer,
    and every issuer must hold the admin role. A peer that has only the genesis can so
    recognise any member. A chain proves admission, not the absence of a later revocation:
    that needs the revocations, which arrive with sync.
    """
    genesis_roles = dict(genesis.members)
    if key in genesis_roles:
        return genesis_roles[key]
    if not chain:
        raise Rejected(Reason.NOT_MEMBER, f"{short_id(key)} is not in the genesis and no chain")
    if len(chain) > GENESIS_MEMBERS_MAX:
        raise Rejected(Reason.COUNT_EXCEEDS_LIMIT, "admit chain too long")
    wanted, role = key, None
    for raw in chain:
        claim = decode_claim(raw, mesh_id=genesis.mesh_id)
        kind, target, target_role, _, _ = parse_op(claim)
        if kind != ADMIT or target != wanted:
            raise Rejected(Reason.NOT_MEMBER, f"chain link does not admit {short_id(wanted)}")
        if role is None:
            role = target_role
        elif target_role != Role.ADMIN:
            raise Rejected(Reason.NOT_MEMBER, f"issuer {short_id(wanted)} is not an admin")
        if genesis_roles.get(claim.agent) == Role.ADMIN:
            assert role is not None
            return role
        wanted = claim.agent
    raise Rejected(Reason.NOT_MEMBER, "admit chain does not reach a genesis admin")
