"""Fuzzing every decoder fed from the network or from disk (``docs/operations.md``, "Fuzzing").

A **target** checks one input: it returns (the input was accepted) or raises
:class:`~memmesh.errors.Rejected` (refused, with a reason code). Anything else is a **finding**:
any other exception (``BaseException`` included: pycrdt panics derive from it), an input that
takes longer than the per-input time limit, or, in :func:`run_isolated`, the death of the process
(a signal, an allocation that hit the memory limit inside native code, a hang).

Inputs come from a seed corpus (valid samples built here, deterministically, from a
:class:`~memmesh.testing.MeshFixture`, plus every file under ``tests/fuzz_corpus/<target>/``) and
from a mutation engine driven by one ``random.Random(seed)``: byte-level mutations, and
*structured* ones that re-sign what they mutate (the fixture's keys are deterministic), so
inputs get past the signature checks and reach the decoders behind them.

Decoders that raise their own typed errors (the attestation formats' ``AttestationError`` codes,
``KeyFileError``, ``ConfigError``) are wrapped: their target maps each refusal to the closest
:class:`~memmesh.errors.Reason` and counts the decoder's own code in ``notes`` (``code:<code>``).
Key files, the config file and the admit chain are read from a path: each input is written to one
temporary file first.

Run one target in this process with :func:`run`, or in a child process under an address-space
limit with :func:`run_isolated`, which also reports the input a dying child was executing::

    python -m memmesh.fuzz --target envelope --runs 100000 --seed 1
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime
import hashlib
import importlib
import importlib.util
import json
import mmap
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pycrdt

from .admission import Admission, Outcome, Status
from .attest import (
    AttestationBuilder,
    AttestationError,
    BundleError,
    ConsistencyError,
    DsseError,
    ProofError,
    Report,
    Statement,
    StatementError,
    check_consistency,
    cosign,
    decode_bundle,
    decode_consistency,
    decode_dsse,
    decode_proof,
    decode_statement,
    make_bundle,
    prove_claim,
    prove_consistency,
    verify_attestation,
    verify_proof,
)
from .attest.bundle import Bundle, encode_bundle
from .attest.dsse import DsseEnvelope, DsseSignature, sign_payload
from .attest.proof import PATH_MAX, ClaimProof, LogConsistency, StatementConsistency
from .canonical import JsonValue, canonical_bytes, parse_canonical
from .claims import CLAIM_ID_TAG, CLAIM_SIGNATURE_DOMAIN, Claim, decode_claim, make_claim
from .core.handshake import Transcript
from .core.messages import (
    PROTOCOL_VERSION,
    Auth,
    Bye,
    Envelopes,
    ForkEntry,
    Frontier,
    GetIds,
    GetRange,
    HeadEntry,
    Hello,
    IHave,
    Message,
    NothingToSend,
    Shuffle,
    decode_message,
    encode_message,
)
from .core.peers import sign_record
from .crypto import SEED_BYTES, SIGNATURE_BYTES, SigningKey, read_key_file
from .envelope import (
    SIGNATURE_DOMAIN,
    Envelope,
    decode_envelope,
    encode_body,
    open_envelope,
    seal,
)
from .errors import KeyFileError, Reason, Rejected
from .ids import ZERO_ID, tagged_hash
from .membership import (
    GENESIS_DOMAIN,
    MEMBERSHIP_NAMESPACE,
    Role,
    decode_genesis,
    make_genesis,
    parse_op,
)
from .memory.view import View
from .merkle import MerkleTree, merkle_root
from .store import MemoryStore
from .testing import MeshFixture, seeded_key
from .wire import Reader, pack_u32, pack_u64, unpack_u32, unpack_u64
from .ydecode import ROOT_NAME, client_id, decode_update, encode_update, item_key

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "INPUT_BYTES_MAX",
    "TARGETS",
    "FuzzTarget",
    "Mailbox",
    "Mutator",
    "build_target",
    "corpus_files",
    "limit_memory",
    "main",
    "register_target",
    "replay",
    "replay_corpus",
    "run",
    "run_isolated",
]

INPUT_BYTES_MAX = (1 << 20) + (1 << 16)
"""Largest input generated: just above the envelope size limit, so TOO_LARGE is reachable."""
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parents[2] / "tests" / "fuzz_corpus"
"""``tests/fuzz_corpus`` of a source checkout. The command line also takes ``--corpus-dir`` or
``MEMMESH_FUZZ_CORPUS``."""
FINDINGS_KEPT = 20
"""Findings reported in full per run (all are counted)."""
RANDOM_INPUT_BYTES_MAX = 4096
_POOL_GROWTH_MAX = 512
_SHARE_RANDOM = 0.02
_SHARE_OVERSIZE = 0.01  # 100 per 10,000 runs: each size limit is met, on both sides, every campaign
_SHARE_STRUCTURED = 0.4
_TAIL_CHARS = 4000

Check = Callable[[bytes], None]
Structured = Callable[[bytes, random.Random, "Mutator"], bytes | None]
"""A structure-aware mutation of one corpus input; None when it does not apply to that input."""


# -- targets ----------------------------------------------------------------------------------


@dataclass(slots=True)
class FuzzTarget:
    """One decoder under test, set up for a run.

    ``check`` must return or raise ``Rejected``; ``seeds`` are the valid (or known-bad) samples
    every run starts from; ``structured`` mutates a seed knowing its format (and re-signs it);
    ``finish`` runs once after the last input and returns what to report (it may raise: that
    is a finding); ``notes`` are counters the target keeps (e.g. admission statuses).
    """

    check: Check
    seeds: list[bytes]
    structured: Structured | None = None
    finish: Callable[[], dict[str, Any]] | None = None
    notes: Counter[str] = field(default_factory=Counter)


TargetFactory = Callable[[Path | None], FuzzTarget]
"""Builds a target with its seed corpus; the argument is the corpus directory (or None)."""

TARGETS: dict[str, TargetFactory] = {}
"""Every registered target, by name. A factory, not a bare function: some targets hold state
(``admission`` reuses one pipeline across inputs) and all of them build a seed corpus."""


def register_target(name: str, factory: TargetFactory) -> None:
    """Add a target (tests register deliberately broken ones to prove the harness fails)."""
    if name in TARGETS:
        raise ValueError(f"fuzz target {name!r} is already registered")
    TARGETS[name] = factory


def build_target(name: str, corpus_dir: Path | None = DEFAULT_CORPUS_DIR) -> FuzzTarget:
    try:
        factory = TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown fuzz target {name!r}; known: {sorted(TARGETS)}") from None
    return factory(corpus_dir)


def corpus_files(target: str, corpus_dir: Path | None = DEFAULT_CORPUS_DIR) -> list[Path]:
    """The committed regression inputs of ``target``, sorted by name."""
    if corpus_dir is None:
        return []
    folder = corpus_dir / target
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _corpus_inputs(target: str, corpus_dir: Path | None) -> list[bytes]:
    return [p.read_bytes()[:INPUT_BYTES_MAX] for p in corpus_files(target, corpus_dir)]


# -- deterministic material: a small mesh, valid claims and envelopes ---------------------------


@dataclass(frozen=True, slots=True)
class _Material:
    fixture: MeshFixture
    keys: dict[bytes, SigningKey]
    """Every key the harness can sign with, by public key (members and one outsider)."""
    outsider: SigningKey
    claims: list[Claim]
    envelopes: list[Envelope]
    """Valid, in an order a fresh pipeline admits them all."""
    author: SigningKey
    """The node whose first log is the grammar target's client."""
    poison_node: SigningKey
    """A member node with no log in the seed corpus: signed poison is its first envelope."""

    @property
    def client(self) -> int:
        return client_id(self.author.public_key, 1)

    def wrap(self, payload: bytes) -> bytes:
        """``payload`` as the first envelope of the poison node: validly signed, seq 1, epoch 1."""
        return seal(
            self.poison_node,
            mesh_id=self.fixture.mesh_id,
            epoch=1,
            seq=1,
            prev=ZERO_ID,
            hlc=1,
            payload=payload,
        ).raw


@cache
def _material() -> _Material:
    fx = MeshFixture("fuzz", nodes=3, writers=2)
    node0, node1, poison_node = fx.nodes
    writer0, writer1 = fx.writers
    rich_agent = seeded_key("fuzz/rich-agent")
    new_node = seeded_key("fuzz/new-node")
    outsider = seeded_key("fuzz/outsider")
    simple = fx.claim(writer0, "colour", "blue")
    several = [
        fx.claim(writer0, "size", 42),
        fx.claim(writer1, "tags", ["a", "b", {"nested": [True, False, None]}]),
        fx.claim(writer1, "ünïcode", "\u00e9 \u65e5\u672c \U0001f600 \u2028", type="note"),
    ]
    ops = [fx.admit(rich_agent.public_key, "writer"), fx.admit(new_node.public_key, "node")]
    rich = make_claim(
        rich_agent,
        mesh_id=fx.mesh_id,
        aseq=1,
        hlc=(1_700_000_001_000, 3),
        namespace=("proj", "facts"),
        key="answer",
        type="fact",
        value={"n": -(2**53), "s": '\x00\n"\\', "l": []},
        valid_at=10,
        invalid_at=20,
        source="https://example.org/x",
        derived_from=[simple.id],
        based_on=[several[0].id, several[1].id],
        confidence=9_000,
        supersedes=[simple.id],
    )
    later = [fx.revoke_agent(writer1.public_key, 5), fx.revoke_node(node1.public_key, 1, 9)]
    adm = Admission(MemoryStore(), fx.genesis)
    envelopes = [
        adm.write_local(node0, [simple], hlc=1_000),
        adm.write_local(node0, several, hlc=2_000),
        adm.write_local(node1, ops, hlc=3_000),
        adm.write_local(node0, [rich], hlc=4_000),
        adm.write_local(new_node, [fx.claim(writer0, "from-new-node", None)], hlc=5_000),
        adm.write_local(node1, later, hlc=6_000),
    ]
    signers = [fx.admin, *fx.nodes, *fx.writers, rich_agent, new_node, outsider]
    return _Material(
        fixture=fx,
        keys={k.public_key: k for k in signers},
        outsider=outsider,
        claims=[simple, *several, *ops, rich, *later],
        envelopes=envelopes,
        author=node0,
        poison_node=poison_node,
    )


def _claim_id(raw: bytes) -> bytes:
    return tagged_hash(CLAIM_ID_TAG, raw)


# -- the byte-level mutation engine --------------------------------------------------------------

_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_INTERESTING_U32 = (0, 1, 1 << 31, (1 << 32) - 1)
_INTERESTING_U64 = (0, 1, 1 << 31, (1 << 32) - 1, 1 << 63, (1 << 64) - 1)
_OVERSIZE_LENGTHS = (1 << 16, (1 << 16) + 1, 1 << 20, (1 << 20) + 1)


class Mutator:
    """Havoc-style byte mutations, every choice drawn from one ``random.Random``.

    ``pool`` is shared with the run (it grows as new behaviour is found), for splicing.
    """

    def __init__(self, rng: random.Random, pool: list[bytes]) -> None:
        self.rng = rng
        self.pool = pool
        self._ops: tuple[Callable[[bytearray], None], ...] = (
            self._flip_bit,
            self._flip_bit,
            self._set_interesting_byte,
            self._set_interesting_byte,
            self._set_random_byte,
            self._insert_run,
            self._delete_run,
            self._duplicate_run,
            self._splice,
            self._truncate,
            self._append,
            self._leb128,
            self._leb128,
            self._interesting_int,
            self._interesting_int,
        )

    def mutate(self, data: bytes) -> bytes:
        """1 to 8 stacked mutations of ``data``, capped at :data:`INPUT_BYTES_MAX`."""
        buf = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            self.rng.choice(self._ops)(buf)
        return bytes(buf[:INPUT_BYTES_MAX])

    def random_input(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(RANDOM_INPUT_BYTES_MAX + 1))

    def oversize(self, data: bytes) -> bytes:
        """``data`` padded (or cut) to just around a size limit."""
        size = self.rng.choice(_OVERSIZE_LENGTHS)
        return (data + bytes(max(0, size - len(data))))[:size]

    def _pos(self, buf: bytearray, *, end: bool = False) -> int:
        return self.rng.randrange(len(buf) + (1 if end else 0))

    def _run_length(self) -> int:
        return self.rng.choice((1, 1, 2, 3, 4, 8, 16, 32, 64, 256))

    def _flip_bit(self, buf: bytearray) -> None:
        if buf:
            buf[self._pos(buf)] ^= 1 << self.rng.randrange(8)

    def _set_interesting_byte(self, buf: bytearray) -> None:
        if buf:
            buf[self._pos(buf)] = self.rng.choice(_INTERESTING_BYTES)

    def _set_random_byte(self, buf: bytearray) -> None:
        if buf:
            buf[self._pos(buf)] = self.rng.randrange(256)

    def _insert_run(self, buf: bytearray) -> None:
        n = self._run_length()
        fill = (
            self.rng.randbytes(n)
            if self.rng.random() < 0.5
            else bytes([self.rng.choice(_INTERESTING_BYTES)]) * n
        )
        at = self._pos(buf, end=True)
        buf[at:at] = fill

    def _delete_run(self, buf: bytearray) -> None:
        if buf:
            at = self._pos(buf)
            del buf[at : at + self._run_length()]

    def _duplicate_run(self, buf: bytearray) -> None:
        if buf:
            at = self._pos(buf)
            chunk = bytes(buf[at : at + self._run_length()])
            to = self._pos(buf, end=True)
            buf[to:to] = chunk

    def _splice(self, buf: bytearray) -> None:
        """Keep a head of this input and continue with the tail of another corpus input."""
        other = self.rng.choice(self.pool)
        cut = self._pos(buf, end=True)
        buf[cut:] = other[self.rng.randrange(len(other) + 1) :]

    def _truncate(self, buf: bytearray) -> None:
        if buf:
            del buf[self._pos(buf) :]

    def _append(self, buf: bytearray) -> None:
        if self.rng.random() < 0.5:
            buf += self.rng.randbytes(self._run_length())
        else:
            other = self.rng.choice(self.pool)
            at = self.rng.randrange(len(other) + 1)
            buf += other[at : at + self._run_length()]

    def _leb128(self, buf: bytearray) -> None:
        """Replace a byte with a run of varint continuation bytes (and maybe a final byte)."""
        at = self._pos(buf, end=True)
        run = bytes(self.rng.choice((0x80, 0x81, 0xFF)) for _ in range(self.rng.randrange(1, 11)))
        if self.rng.random() < 0.7:
            run += bytes([self.rng.choice((0x00, 0x01, 0x0F, 0x7F))])
        buf[at : at + 1] = run

    def _interesting_int(self, buf: bytearray) -> None:
        """Overwrite a 4- or 8-byte window with a big-endian boundary integer."""
        if self.rng.random() < 0.5:
            raw = pack_u32(self.rng.choice(_INTERESTING_U32))
        else:
            raw = pack_u64(self.rng.choice(_INTERESTING_U64))
        at = self._pos(buf, end=True)
        buf[at : at + len(raw)] = raw


# -- structure-aware mutations: canonical JSON ----------------------------------------------------

_JSON_SCALARS: tuple[JsonValue, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    2**16,
    2**48,
    2**53 - 1,
    2**53,
    -(2**53),
    10_000,
    10_001,
    "",
    "a",
    "x" * 129,
    "x" * 513,
    "x" * 1025,
    "\u00e9",
    '\x00\x1f"\\',
    "\U0001f600",
    "0" * 64,
    "f" * 64,
    "F" * 64,
    "0" * 63,
    "admit",
    "revoke",
    "fact",
    "Not-A-Type",
    "node",
    "admin",
    "writer",
    "resolver",
    "reader",
    "epoch",
    "seq",
    "aseq",
    "key",
    "role",
    "cutoff",
)
_JSON_MEMBER_NAMES = ("", "v", "key", "role", "cutoff", "epoch", "seq", "aseq", "value", "zz", "é")


@cache
def _json_pool() -> list[JsonValue]:
    mat = _material()
    hexes: list[JsonValue] = [k.hex() for k in sorted(mat.keys)]
    hexes += [mat.fixture.mesh_id.hex(), mat.claims[0].id.hex()]
    deep: JsonValue = []
    for _ in range(32):
        deep = [deep]
    many_ids: list[JsonValue] = [f"{i:064x}" for i in range(65)]
    return [
        *_JSON_SCALARS,
        *hexes,
        [],
        {},
        deep,
        many_ids,
        ["b" * 64, "a" * 64],
        ["a" * 64, "a" * 64],
        {"epoch": 1, "seq": 1},
        {"aseq": 1},
        {"key": hexes[1], "role": "node"},
        {"key": hexes[1], "cutoff": {"epoch": 1, "seq": 2}},
        [1_700_000_000_000, 0],
        [2**48, 2**16],
    ]


def _mutate_json(value: JsonValue, rng: random.Random, pool: Sequence[JsonValue]) -> JsonValue:
    """One random edit somewhere inside ``value``: replace, delete, insert, rename or reorder."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        out = dict(value)
        name = rng.choice(sorted(out))
        op = rng.randrange(5)
        if op == 0:
            del out[name]
        elif op == 1:
            out[rng.choice(_JSON_MEMBER_NAMES)] = rng.choice(pool)
        elif op == 2:
            out[name + rng.choice(("x", "_", "\u00e9"))] = out.pop(name)
        else:
            out[name] = _mutate_json(out[name], rng, pool)
        return out
    if isinstance(value, list) and value and rng.random() < 0.8:
        items = list(value)
        i = rng.randrange(len(items))
        op = rng.randrange(5)
        if op == 0:
            del items[i]
        elif op == 1:
            items.insert(i, rng.choice(pool))
        elif op == 2:
            items.insert(i, items[i])
        elif op == 3:
            items.reverse()
        else:
            items[i] = _mutate_json(items[i], rng, pool)
        return items
    return rng.choice(pool)


def _json_structured(data: bytes, rng: random.Random, _mutator: Mutator) -> bytes | None:
    """Parse a canonical JSON input, edit the value, and encode it canonically again."""
    try:
        doc = parse_canonical(data, what="fuzz seed", bytes_max=INPUT_BYTES_MAX)
    except Rejected:
        return None
    try:
        return canonical_bytes(_mutate_json(doc, rng, _json_pool()))
    except ValueError:
        return None


# -- structure-aware mutations: signed frames (claims, genesis) ---------------------------------


def _frame(version: int, body: bytes, signature: bytes, body_len: int | None = None) -> bytes:
    return (
        bytes([version]) + pack_u32(len(body) if body_len is None else body_len) + body + signature
    )


def _unframe(data: bytes) -> bytes | None:
    """The body of a ``version u8 | body_len u32 | body | signature 64`` frame, if it is one."""
    if len(data) < 5 + SIGNATURE_BYTES:
        return None
    body_len = unpack_u32(data[1:5])
    if 5 + body_len + SIGNATURE_BYTES != len(data):
        return None
    return data[5 : 5 + body_len]


def _signer_for(body: bytes, member: str, fallback: SigningKey) -> SigningKey:
    """The key named by ``member`` (a hex key) in a JSON body, if the harness holds it."""
    keys = _material().keys
    try:
        doc = parse_canonical(body, what="fuzz body", bytes_max=INPUT_BYTES_MAX)
    except Rejected:
        return fallback
    if isinstance(doc, dict):
        named = doc.get(member)
        if isinstance(named, str) and len(named) == 64:
            with contextlib.suppress(ValueError):
                return keys.get(bytes.fromhex(named), fallback)
    return fallback


def _resigned_frame(
    data: bytes,
    rng: random.Random,
    mutator: Mutator,
    *,
    domain: bytes,
    signer_member: str,
    fallback: SigningKey,
) -> bytes | None:
    """Mutate the body of a signed frame (bytes or JSON), then sign it again with its key."""
    body = _unframe(data)
    if body is None:
        return None
    signer = _signer_for(body, signer_member, fallback)
    edited = _json_structured(body, rng, mutator) if rng.random() < 0.6 else None
    body = mutator.mutate(body) if edited is None else edited
    signer = _signer_for(body, signer_member, signer)
    if rng.random() < 0.05:  # a valid signature by the wrong key
        signer = _material().outsider
    signature = signer.sign(domain, body)
    roll = rng.random()
    if roll < 0.03:
        return _frame(rng.choice((0, 2, 255)), body, signature)
    if roll < 0.06:
        return _frame(1, body, signature, body_len=max(0, len(body) + rng.choice((-1, 1))))
    return _frame(1, body, signature)


def _claim_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    return _resigned_frame(
        data,
        rng,
        mutator,
        domain=CLAIM_SIGNATURE_DOMAIN,
        signer_member="agent",
        fallback=_material().fixture.writers[0],
    )


def _genesis_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    return _resigned_frame(
        data,
        rng,
        mutator,
        domain=GENESIS_DOMAIN,
        signer_member="admin",
        fallback=_material().fixture.admin,
    )


# -- structure-aware mutations: the document grammar ---------------------------------------------


def _leb(value: int) -> bytes:
    """Unsigned LEB128 of any size (the decoder's bound is 2^53 - 1: larger ones are a test)."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _varstring(raw: bytes) -> bytes:
    return _leb(len(raw)) + raw


@dataclass(slots=True)
class _UpdateDraft:
    """An update in the grammar's shape, built by hand so that any one field can be wrong."""

    values: list[bytes]
    clock: int
    client_delta: int = 0
    """Added to the log's client id: nonzero writes the items under another client."""
    keys: dict[int, bytes] = field(default_factory=dict)
    """Map keys given by hand, by item index; the others are ``<client>/<claim id>``."""
    info: int = 0x23
    parent: bytes = b"\x01"
    root: bytes = ROOT_NAME.encode()
    client_count: int = 1
    count: int | None = None
    deletes: bytes = b"\x00"
    trailing: bytes = b""

    @classmethod
    def decode(cls, payload: bytes, client: int) -> _UpdateDraft | None:
        try:
            items = decode_update(payload, client=client, start_clock=None)
        except Rejected:
            return None
        return cls(values=[item.value for item in items], clock=items[0].clock)

    def claims_root(self) -> bytes:
        return merkle_root([_claim_id(v) for v in self.values])

    def build(self, client: int) -> bytes:
        client += self.client_delta
        count = len(self.values) if self.count is None else self.count
        out = bytearray(_leb(self.client_count) + _leb(count) + _leb(client) + _leb(self.clock))
        for i, value in enumerate(self.values):
            key = self.keys.get(i) or item_key(client, _claim_id(value)).encode()
            out += bytes([self.info]) + self.parent + _varstring(self.root)
            out += _varstring(key) + _varstring(value)
        return bytes(out + self.deletes + self.trailing)


UpdateEdit = Callable[[_UpdateDraft, random.Random, "Mutator", int], None]


def _edit_claim_set(u: _UpdateDraft, rng: random.Random, _m: Mutator, _client: int) -> None:
    """Drop, duplicate, add a claim from elsewhere, reorder, or empty the set."""
    choice = rng.randrange(5)
    if choice == 0 and len(u.values) > 1:
        del u.values[rng.randrange(len(u.values))]
    elif choice == 1:
        u.values.append(rng.choice(u.values))
    elif choice == 2:
        u.values.append(rng.choice(_material().claims).raw)
    elif choice == 3:
        rng.shuffle(u.values)
    else:
        u.values.clear()


def _edit_one_claim(u: _UpdateDraft, rng: random.Random, m: Mutator, _client: int) -> None:
    """A mutated (often re-signed) claim under its true id: the claim decoder is next."""
    i = rng.randrange(len(u.values))
    mutated = _claim_structured(u.values[i], rng, m) if rng.random() < 0.7 else None
    u.values[i] = (m.mutate(u.values[i]) if mutated is None else mutated)[: 1 << 17]


def _edit_claim_id(u: _UpdateDraft, rng: random.Random, m: Mutator, client: int) -> None:
    """A value that no longer hashes to its key."""
    i = rng.randrange(len(u.values))
    u.keys[i] = item_key(client, _claim_id(u.values[i])).encode()
    u.values[i] = m.mutate(u.values[i])[: 1 << 17]


def _edit_clock(u: _UpdateDraft, rng: random.Random, _m: Mutator, _client: int) -> None:
    u.clock = rng.choice((0, 1, u.clock + 1, max(0, u.clock - 1), 2**53 - 4097, 2**53 - 1, 2**53))


def _edit_info(u: _UpdateDraft, rng: random.Random, _m: Mutator, _client: int) -> None:
    u.info = rng.choice((0x03, 0x04, 0x24, 0x27, 0x28, 0x63, 0xA3, 0xE3, 0x21, 0x00))


def _edit_parent(u: _UpdateDraft, rng: random.Random, _m: Mutator, client: int) -> None:
    if rng.random() < 0.5:
        u.parent = rng.choice((b"\x00", b"\x02", b"\x00" + _leb(client) + b"\x00", b"\x81\x00"))
    else:
        u.root = rng.choice((b"", b"claim", b"claims\x00", b"other", b"\xff\xfe", b"x" * 256))


def _edit_key(u: _UpdateDraft, rng: random.Random, _m: Mutator, client: int) -> None:
    i = rng.randrange(len(u.values))
    hex_id = _claim_id(u.values[i]).hex()
    u.keys[i] = rng.choice(
        (
            f"{client + 1}/{hex_id}".encode(),
            f"{client}/{hex_id.upper()}".encode(),
            f"{client}/{hex_id[:63]}".encode(),
            f"{client}/{hex_id}0".encode(),
            f"{client}:{hex_id}".encode(),
            f"0{client}/{hex_id}".encode(),
            b"\xc3\x28/" + hex_id.encode(),
            b"",
        )
    )


def _edit_framing(u: _UpdateDraft, rng: random.Random, _m: Mutator, _client: int) -> None:
    """Client sections, struct count, items of another client, a delete set, trailing bytes."""
    choice = rng.randrange(5)
    if choice == 0:
        u.client_count = rng.choice((0, 2, 2**53))
    elif choice == 1:
        u.count = rng.choice((0, len(u.values) + 1, max(0, len(u.values) - 1), 4096, 4097))
    elif choice == 2:
        u.client_delta = rng.choice((1, -1))
    elif choice == 3:
        u.deletes = rng.choice((b"\x01", b"\x01\x01\x01\x00\x01", b"\x80\x00"))
    else:
        u.trailing = rng.choice((b"\x00", b"\x01", b"\xff", b"\x00" * 9))


_UPDATE_EDITS: tuple[UpdateEdit, ...] = (
    _edit_claim_set,
    _edit_one_claim,
    _edit_one_claim,
    _edit_claim_id,
    _edit_clock,
    _edit_info,
    _edit_parent,
    _edit_key,
    _edit_framing,
    _edit_framing,
)


def _edit_update(u: _UpdateDraft, rng: random.Random, m: Mutator, client: int) -> None:
    if not u.values:  # every edit needs a claim to work on
        u.values.append(rng.choice(_material().claims).raw)
    rng.choice(_UPDATE_EDITS)(u, rng, m, client)


def _grammar_structured_for(
    client: int, data: bytes, rng: random.Random, mutator: Mutator
) -> bytes | None:
    """A grammar-valid update with one or two fields edited, everything else kept consistent,
    so the decoder is exercised past its cheap checks (duplicates, clocks, deletes, keys of
    other authors, claim ids...)."""
    draft = _UpdateDraft.decode(data, client)
    if draft is None:
        return None
    for _ in range(rng.choice((1, 1, 1, 2))):
        _edit_update(draft, rng, mutator, client)
    return draft.build(client)


def _grammar_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    return _grammar_structured_for(_material().client, data, rng, mutator)


# -- structure-aware mutations: envelopes ---------------------------------------------------------


@dataclass(slots=True)
class _EnvelopeDraft:
    """A decoded envelope whose fields can be edited freely, then encoded and signed again."""

    key: SigningKey
    version: int
    kind: int
    mesh_id: bytes
    epoch: int
    seq: int
    prev: bytes
    deps: list[bytes]
    hlc: int
    update: _UpdateDraft | None
    """The payload, when it follows the grammar; None keeps ``payload`` as raw bytes."""
    payload: bytes
    claims_root: bytes | None
    """None: the root of the update's claims (kept right through any edit)."""
    deps_count: int | None = None
    payload_len: int | None = None

    @classmethod
    def of(cls, env: Envelope, key: SigningKey) -> _EnvelopeDraft:
        update = _UpdateDraft.decode(env.payload, client_id(env.author, env.epoch))
        return cls(
            key=key,
            version=1,
            kind=int(env.kind),
            mesh_id=env.mesh_id,
            epoch=env.epoch,
            seq=env.seq,
            prev=env.prev,
            deps=list(env.deps),
            hlc=env.hlc,
            update=update,
            payload=env.payload,
            claims_root=None if update is not None else env.claims_root,
        )

    @property
    def client(self) -> int:
        return client_id(self.key.public_key, self.epoch)

    def build(self) -> bytes:
        payload, root = self.payload, self.claims_root
        if self.update is not None:
            payload = self.update.build(self.client)
            root = self.update.claims_root() if root is None else root
        body = encode_body(
            version=self.version,
            kind=self.kind,
            mesh_id=self.mesh_id,
            author=self.key.public_key,
            epoch=_clamp(self.epoch, 32),
            seq=_clamp(self.seq, 64),
            prev=self.prev,
            deps=self.deps,
            hlc=_clamp(self.hlc, 64),
            claims_root=ZERO_ID if root is None else root,
            payload=payload,
            deps_count=self.deps_count,
            payload_len=self.payload_len,
        )
        return body + self.key.sign(SIGNATURE_DOMAIN, body)


def _clamp(value: int, bits: int) -> int:
    """Edits stack (a seq of 2^64 - 1, then one more): keep every field encodable."""
    return min(max(value, 0), (1 << bits) - 1)


EnvelopeEdit = Callable[[_EnvelopeDraft, random.Random, "Mutator", Envelope], None]


def _known_ids() -> list[bytes]:
    return [e.id for e in _material().envelopes]


def _successor(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, base: Envelope) -> None:
    """The next envelope of the base's log, with a new claim: often valid, so it goes deep."""
    d.seq, d.prev, d.hlc = base.seq + 1, base.id, base.hlc + 1
    d.deps = sorted({rng.choice(_known_ids()) for _ in range(rng.randrange(3))} - {base.id})
    clock = 0 if d.update is None else d.update.clock + len(d.update.values)
    d.update = _UpdateDraft(values=[_fresh_claim(rng)], clock=clock)
    d.claims_root = None


def _edit_epoch(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.epoch = rng.choice((0, 1, 2, 3, 1 << 31, (1 << 32) - 1))


def _edit_seq(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.seq = rng.choice(
        (0, 1, 2, 3, d.seq + 1, d.seq + 2, max(0, d.seq - 1), 2**63 - 1, 2**63, 2**64 - 1)
    )


def _edit_prev(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, base: Envelope) -> None:
    d.prev = rng.choice((ZERO_ID, rng.randbytes(32), base.id, *_known_ids()))


def _edit_deps(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    known = _known_ids()
    choice = rng.randrange(6)
    if choice == 0:
        d.deps = []
    elif choice == 1:
        d.deps = sorted({*d.deps, rng.choice(known)})
    elif choice == 2:
        d.deps = sorted({*d.deps, rng.randbytes(32)})
    elif choice == 3:
        d.deps = [ZERO_ID, *d.deps]
    elif choice == 4:
        d.deps = [*d.deps, *d.deps] if d.deps else [max(known), min(known)]
    else:
        d.deps = sorted(rng.randbytes(32) for _ in range(rng.choice((64, 65))))


def _edit_hlc(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.hlc = rng.choice((*_INTERESTING_U64, d.hlc + 1))


def _edit_mesh(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.mesh_id = rng.choice((rng.randbytes(32), ZERO_ID, tagged_hash(b"fuzz", b"other mesh")))


def _edit_header(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.version, d.kind = rng.choice(((0, 1), (2, 1), (255, 1), (1, 0), (1, 2), (1, 255)))


def _edit_author(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    """Another signer (member or not); a grammar payload follows its client id."""
    keys = _material().keys
    d.key = keys[rng.choice(sorted(keys))]


def _edit_lengths(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    """Length fields that lie, validly signed."""
    if rng.random() < 0.5:
        d.deps_count = rng.choice((len(d.deps) + 1, max(0, len(d.deps) - 1), 65, 0xFFFF))
    else:
        size = len(d.payload if d.update is None else d.update.build(d.client))
        d.payload_len = rng.choice((size + 1, max(0, size - 1), 0, 2**32 - 1))


def _edit_payload(d: _EnvelopeDraft, rng: random.Random, m: Mutator, _base: Envelope) -> None:
    """A grammar-level edit of the payload (claims root kept right), or raw byte edits."""
    if d.update is not None and rng.random() < 0.8:
        _edit_update(d.update, rng, m, d.client)
    else:
        d.payload = m.mutate(d.payload if d.update is None else d.update.build(d.client))
        d.update = None
        d.claims_root = _root_of(d.payload, d.client)


def _replace_claims(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    claims = _material().claims
    values = [rng.choice(claims).raw for _ in range(rng.randrange(1, 4))]
    clock = 0 if d.update is None else d.update.clock
    d.update = _UpdateDraft(values=values, clock=rng.choice((0, clock, clock + 1)))
    d.claims_root = None


def _membership_ops(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    """An admit or revoke of some key (valid, or with an edited value), usually by the admin."""
    mat = _material()
    fx = mat.fixture
    target = mat.keys[rng.choice(sorted(mat.keys))].public_key.hex()
    kind = rng.choice(("admit", "revoke"))
    cutoffs: tuple[JsonValue, ...] = ({"epoch": 1, "seq": 2}, {"aseq": 2})
    value: JsonValue = (
        {"key": target, "role": rng.choice(list(Role)).value}
        if kind == "admit"
        else {"key": target, "cutoff": rng.choice(cutoffs)}
    )
    if rng.random() < 0.5:
        value = _mutate_json(value, rng, _json_pool())
    issuer = fx.admin if rng.random() < 0.8 else rng.choice(fx.writers)
    try:
        claim = make_claim(
            issuer,
            mesh_id=fx.mesh_id,
            aseq=rng.randrange(1, 1 << 20),
            hlc=(1_700_000_000_000 + rng.randrange(1 << 20), 0),
            namespace=MEMBERSHIP_NAMESPACE,
            key=target,
            type=kind,
            value=value,
        )
    except (ValueError, Rejected):  # a value no claim can carry
        return
    clock = 0 if d.update is None else d.update.clock
    d.update = _UpdateDraft(values=[claim.raw], clock=clock)
    d.claims_root = None


def _edit_root(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    d.claims_root = rng.choice((ZERO_ID, rng.randbytes(32), _material().envelopes[0].claims_root))


def _poison_payload(d: _EnvelopeDraft, rng: random.Random, _m: Mutator, _base: Envelope) -> None:
    """The payload of a known crasher (or a prefix of it), validly signed."""
    crashers = _pycrdt_crashers(DEFAULT_CORPUS_DIR)
    if crashers:
        crasher = rng.choice(crashers)
        d.payload, d.update = crasher[: rng.randrange(1, len(crasher) + 1)], None


_ENVELOPE_EDITS: tuple[EnvelopeEdit, ...] = (
    _successor,
    _successor,
    _edit_epoch,
    _edit_seq,
    _edit_prev,
    _edit_deps,
    _edit_hlc,
    _edit_mesh,
    _edit_header,
    _edit_author,
    _edit_lengths,
    _edit_payload,
    _edit_payload,
    _edit_payload,
    _replace_claims,
    _membership_ops,
    _edit_root,
    _poison_payload,
)


def _root_of(payload: bytes, client: int) -> bytes:
    """The claims root a payload needs, if it follows the grammar (else any root will do)."""
    draft = _UpdateDraft.decode(payload, client)
    return ZERO_ID if draft is None else draft.claims_root()


def _fresh_claim(rng: random.Random) -> bytes:
    """A new valid claim by a member writer (unique key, so never already held)."""
    mat = _material()
    return make_claim(
        rng.choice(mat.fixture.writers),
        mesh_id=mat.fixture.mesh_id,
        aseq=rng.randrange(1, 1 << 20),
        hlc=(1_700_000_000_000 + rng.randrange(1 << 20), 0),
        namespace=("fuzz",),
        key=f"k{rng.getrandbits(64):x}",
        type="fact",
        value=rng.randrange(1000),
    ).raw


def _envelope_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Mutate an envelope below its signature and sign it again with its author's key."""
    try:
        env = decode_envelope(data)
    except Rejected:
        return None
    keys = _material().keys
    key = keys.get(env.author)
    if key is None:
        return None
    if rng.random() < 0.2:  # byte-level edits of the body, signed by whoever it now names
        body = mutator.mutate(env.body)
        signer = keys.get(body[34:66], key)
        return body + signer.sign(SIGNATURE_DOMAIN, body)
    draft = _EnvelopeDraft.of(env, key)
    for _ in range(rng.choice((1, 1, 2, 3))):
        rng.choice(_ENVELOPE_EDITS)(draft, rng, mutator, env)
    return draft.build()


# -- structure-aware mutations: sync messages ----------------------------------------------------

MESSAGE_FRAME_BYTES_MAX = 1 << 20
"""The frame limit of the ``messages`` target: :meth:`Mutator.oversize` reaches both sides of it."""

_U32_MAX = (1 << 32) - 1
_MESSAGE_VALUES: tuple[object, ...] = (
    *_INTERESTING_U64,
    -1,
    -(1 << 63),
    (1 << 63) - 1,
    _U32_MAX + 1,
    2,
    True,
    False,
    None,
    1.0,
    "",
    "bad_message",
    "x" * 65,
    "\U0001f600" * 17,
    b"",
    b"\x01",
    bytes(31),
    bytes(32),
    b"\xff" * 32,
    bytes(33),
    bytes(63),  # a signature is exactly 64 bytes
    bytes(64),
    bytes(65),
    (),  # arrays as tuples: edits only ever change lists, so these shared values stay intact
    ((),),
    {},
    msgspec.msgpack.Ext(1, bytes(32)),
)
_MESSAGE_LIST_SIZES = (0, 1, 8, 9, 16, 17, 256, 257, 4096, 4097)


def _message_containers(value: list[Any]) -> list[list[Any]]:
    """``value`` and every array nested in it (a message is at most three levels deep)."""
    out = [value]
    for item in value:
        if isinstance(item, list):
            out += _message_containers(item)
    return out


def _same_kind(old: object, rng: random.Random) -> object:
    """Another value of the same MessagePack type as ``old`` (often still within its bounds)."""
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):  # kept within what MessagePack can carry
        new = rng.choice((old + 1, old - 1, old // 2, rng.randrange(1, 1 << 32)))
        return min(max(new, -(1 << 63)), (1 << 64) - 1)
    if isinstance(old, bytes):
        return rng.randbytes(len(old))
    if isinstance(old, str):
        return rng.choice(("too_large", "", "\u00e9" * 40, old + "!"))
    if isinstance(old, list) and old and rng.random() < 0.5:
        return [rng.choice(old) for _ in range(rng.choice(_MESSAGE_LIST_SIZES))]
    if isinstance(old, list):
        return sorted(old, key=repr)
    return old


def _edit_message(raw: list[Any], rng: random.Random) -> None:
    """One edit of a message's plain MessagePack value, anywhere in it.

    Some edits keep every type (a new value of the same kind, a shuffled, sorted or resized list,
    a flipped bool), so mutated messages are often still accepted and the cross-field checks
    (sorted heads, ordered forks, ranges) are reached; the rest break a type, a length or a bound.
    """
    container = rng.choice(_message_containers(raw))
    if not container:
        container.append(rng.choice(_MESSAGE_VALUES))
        return
    i = rng.randrange(len(container))
    op = rng.randrange(8)
    if op == 0:
        container[i] = rng.choice(_MESSAGE_VALUES)
    elif op == 1:
        del container[i]
    elif op == 2:
        container.insert(i, rng.choice((container[i], rng.choice(_MESSAGE_VALUES))))
    elif op == 3:
        j = rng.randrange(len(container))
        container[i], container[j] = container[j], container[i]
    elif op == 4 and i == 0 and container is raw:  # another kind's tag, or no kind at all
        container[0] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 255, -1))
    else:
        container[i] = _same_kind(container[i], rng)


_MUTATED_ELEMENTS_MAX = 100_000
"""A mutated message with more elements than this is dropped before encoding: nested resizes
can reach hundreds of megabytes, and msgspec's encoder crashes (SIGSEGV) instead of raising
``MemoryError`` when it cannot grow its buffer under the campaign's ``RLIMIT_AS`` (found by
this target at seed 280064844). The limit is still over 4 times what a 1 MiB frame can hold
at one byte per element, so ``too_large`` stays reachable."""


def _elements(value: object, limit: int) -> int:
    """How many values ``value`` holds, counting stops past ``limit`` (shared lists count once
    per place they appear, as the encoder writes them)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, list | tuple):
            stack.extend(item)
    return count


def _messages_structured(data: bytes, rng: random.Random, _mutator: Mutator) -> bytes | None:
    """Decode a valid message to plain values, edit them, and encode them again."""
    try:
        message = decode_message(data, frame_bytes_max=MESSAGE_FRAME_BYTES_MAX)
    except Rejected:
        return None
    raw = msgspec.msgpack.decode(encode_message(message))
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        _edit_message(raw, rng)
    if _elements(raw, _MUTATED_ELEMENTS_MAX) > _MUTATED_ELEMENTS_MAX:
        return None  # resized lists of resized lists: far past any frame limit already
    out = msgspec.msgpack.encode(raw)
    roll = rng.random()
    if roll < 0.03:
        return out + rng.choice((b"\x00", b"\xc0", b"\x90", encode_message(NothingToSend(1))))
    if roll < 0.05:
        return out[: rng.randrange(len(out))]
    return out


# -- the built-in targets -------------------------------------------------------------------------


def _discarding(decode: Callable[[bytes], object]) -> Check:
    """A decoder as a check: its result is dropped, only returning or raising matters."""

    def check(data: bytes) -> None:
        decode(data)

    return check


def _envelope_target(corpus_dir: Path | None) -> FuzzTarget:
    mat = _material()
    seeds = [e.raw for e in mat.envelopes]
    seeds += [mat.wrap(p) for p in _pycrdt_crashers(corpus_dir)]
    seeds += _corpus_inputs("envelope", corpus_dir)
    return FuzzTarget(
        check=_discarding(open_envelope),
        seeds=seeds,
        structured=_envelope_structured,
    )


def _grammar_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_update`` with and without a start clock; what it accepts from clock 0 must also
    apply cleanly in pycrdt and hold exactly its claims: the grammar is the first line of defence
    and must never let through what pycrdt chokes on."""
    mat = _material()
    client = mat.client
    notes: Counter[str] = Counter()
    own = [e for e in mat.envelopes if e.author == mat.author.public_key]
    seeds = [e.payload for e in own]
    seeds += [
        encode_update(client, 0, [(c.id, c.raw) for c in mat.claims[:n]])
        for n in (1, 2, len(mat.claims))
    ]
    seeds += _corpus_inputs("grammar", corpus_dir)

    def check(data: bytes) -> None:
        refused: Rejected | None = None
        try:
            items = decode_update(data, client=client, start_clock=0)
        except Rejected as exc:
            refused, items = exc, []
        try:
            decode_update(data, client=client, start_clock=None)
        except Rejected as exc:
            refused = refused or exc
        if refused is not None:
            raise refused
        doc: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc()
        claims: pycrdt.Map[bytes] = doc.get(ROOT_NAME, type=pycrdt.Map)
        doc.apply_update(data)
        held = {key: bytes(claims[key]) for key in list(claims.keys())}
        if held != {item.key: item.value for item in items}:
            raise AssertionError("pycrdt holds other claims than the grammar decoded")
        notes["pycrdt_applied"] += 1

    return FuzzTarget(check=check, seeds=seeds, structured=_grammar_structured, notes=notes)


def _claim_target(corpus_dir: Path | None) -> FuzzTarget:
    mat = _material()
    seeds = [c.raw for c in mat.claims] + _corpus_inputs("claim", corpus_dir)
    return FuzzTarget(check=_discarding(decode_claim), seeds=seeds, structured=_claim_structured)


def _canonical_json_target(corpus_dir: Path | None) -> FuzzTarget:
    mat = _material()
    docs: list[JsonValue] = [
        None,
        True,
        0,
        -(2**53),
        2**53,
        "",
        '\x00\x1f\x7f"\\/\u00e9\u2028\U0001f600',
        [],
        {},
        {"a": 1, "b": [True, False, None], "c": {"d": "e"}},
        {"\uffff": 1, "\U0001f600": 2, "a": 3, "": 4},  # UTF-16 order differs from code points
        [[[[[]]]]],
    ]
    seeds = [canonical_bytes(d) for d in docs]
    seeds += [_unframe(c.raw) or b"" for c in mat.claims]
    seeds.append(_unframe(mat.fixture.genesis.raw) or b"")
    seeds += _corpus_inputs("canonical_json", corpus_dir)

    def check(data: bytes) -> None:
        parse_canonical(data, what="fuzz", bytes_max=65536)

    return FuzzTarget(check=check, seeds=seeds, structured=_json_structured)


def _genesis_target(corpus_dir: Path | None) -> FuzzTarget:
    mat = _material()
    fx = mat.fixture
    roles = list(Role)
    others = [
        make_genesis(fx.admin, "solo"),
        make_genesis(
            fx.admin,
            "every role \u00e9",
            [
                (k.public_key, roles[i % len(roles)])
                for i, k in enumerate(sorted(mat.keys.values(), key=lambda k: k.public_key))
            ],
        ),
    ]
    seeds = [fx.genesis.raw, *(g.raw for g in others)]
    seeds += _corpus_inputs("genesis", corpus_dir)
    return FuzzTarget(
        check=_discarding(decode_genesis), seeds=seeds, structured=_genesis_structured
    )


def _membership_op_target(corpus_dir: Path | None) -> FuzzTarget:
    """Data is a claim value: signed into an ``admit`` and a ``revoke`` claim, each parsed as an
    operation. Accepted when either parses; a value ``make_claim`` cannot express is noted."""
    mat = _material()
    fx = mat.fixture
    notes: Counter[str] = Counter()
    key_hex = fx.nodes[1].public_key.hex()
    values: list[JsonValue] = [{"key": key_hex, "role": role.value} for role in Role]
    values += [
        {"key": key_hex, "cutoff": {"epoch": 1, "seq": 2}},
        {"key": key_hex, "cutoff": {"aseq": 3}},
        {"key": key_hex, "cutoff": {"epoch": 0, "seq": 0}},
    ]
    seeds = [canonical_bytes(v) for v in values]
    seeds += _corpus_inputs("membership_op", corpus_dir)

    def check(data: bytes) -> None:
        value = parse_canonical(data, what="fuzz", bytes_max=65536)
        refused: Rejected | None = None
        parsed = 0
        for kind in ("admit", "revoke"):
            try:
                claim = make_claim(
                    fx.admin,
                    mesh_id=fx.mesh_id,
                    aseq=1,
                    hlc=(1_700_000_000_000, 0),
                    namespace=MEMBERSHIP_NAMESPACE,
                    key=key_hex,
                    type=kind,
                    value=value,
                )
            except ValueError:
                notes["value_not_representable"] += 1
                continue
            try:
                parse_op(claim)
                parsed += 1
            except Rejected as exc:
                refused = refused or exc
        if not parsed and refused is not None:
            raise refused

    return FuzzTarget(check=check, seeds=seeds, structured=_json_structured, notes=notes)


def _admission_target(corpus_dir: Path | None) -> FuzzTarget:
    """One pipeline for the whole run, holding the seed envelopes: ``receive`` must return an
    ``Outcome`` and never raise; an envelope the grammar let through must integrate in pycrdt;
    at the end the live document must still encode and hold exactly the admitted claims."""
    mat = _material()
    admission = Admission(MemoryStore(), mat.fixture.genesis)
    for env in mat.envelopes:
        outcome = admission.receive(env.raw)
        assert outcome.status is Status.INTEGRATED, outcome
    notes: Counter[str] = Counter()
    seeds = [e.raw for e in mat.envelopes]
    # Committed admission inputs (the pycrdt crashers among them) are tried as given and as the
    # payload of a validly signed envelope from a member node: signed poison.
    seeds += [x for raw in _corpus_inputs("admission", corpus_dir) for x in (raw, mat.wrap(raw))]

    def check(data: bytes) -> None:
        outcome = admission.receive(data)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"receive returned {type(outcome).__name__}, not an Outcome")
        notes[f"status:{outcome.status.value}"] += 1
        for env_id in outcome.admitted:
            if admission.records[env_id].failed:
                raise AssertionError(
                    f"pycrdt failed on envelope {env_id.hex()} that the grammar accepted"
                )
        if outcome.status is Status.REJECTED:
            if outcome.reason is None:
                raise AssertionError(f"a rejection without a reason: {outcome}")
            raise Rejected(outcome.reason, outcome.detail)

    def finish() -> dict[str, Any]:
        state = admission.replica.encode_state()
        if admission.replica.poisoned:
            raise AssertionError("the live document is poisoned")
        held = set(admission.replica.keys())
        must, may = _document_keys(admission)
        if not must <= held or not held <= must | may:
            raise AssertionError("the live document does not hold exactly the admitted claims")
        return {
            "replica_encode_ok": True,
            "replica_state_bytes": len(state),
            "replica_claims": len(admission.replica),
            "records": len(admission.records),
            "logs": len(admission.logs),
            "equivocating_logs": len(admission.forks),
            "buffered": admission.buffered,
        }

    return FuzzTarget(
        check=check,
        seeds=seeds,
        structured=_envelope_structured,
        finish=finish,
        notes=notes,
    )


def _document_keys(admission: Admission) -> tuple[set[str], set[str]]:
    """The map keys the live document must hold (every claim of every envelope on its log's
    main branch that pycrdt integrated; failed envelopes never reach it) and those it may hold
    besides: the claims of an equivocating log from its fork on, integrated while they were on
    the log, before the fork was known (decision 27). Nothing else: no other side envelope, no
    rejected input."""
    must: set[str] = set()
    may: set[str] = set()
    for record in admission.records.values():
        if record.failed:
            continue
        env = record.envelope
        client = client_id(env.author, env.epoch)
        keys = {item_key(client, claim.id) for claim in record.claims}
        fork = admission.forks.get(env.log)
        if not record.side:
            must |= keys
        elif fork is not None and env.seq >= fork:
            may |= keys
    return must, may


@cache
def _pycrdt_crashers(corpus_dir: Path | None) -> tuple[bytes, ...]:
    """Known-bad payloads: the ``grammar`` corpus, which starts with the pycrdt crashers."""
    return tuple(_corpus_inputs("grammar", corpus_dir))


def _message_seeds() -> list[Message]:
    """One or more valid messages of every kind, made of the material's real ids and envelopes."""
    mat = _material()
    envelopes = mat.envelopes
    last: dict[tuple[bytes, int], Envelope] = {}
    for env in envelopes:
        last[(env.author, env.epoch)] = env
    heads = [HeadEntry(a, e, env.seq, env.id) for (a, e), env in sorted(last.items())]
    low, high = sorted((envelopes[0].id, envelopes[1].id))
    author = envelopes[0].author
    mesh_id = mat.fixture.mesh_id
    # A node admitted by a genesis admin: its chain is that one admit claim.
    admit = next(
        c
        for c in mat.claims
        if c.type == "admit" and isinstance(c.value, dict) and c.value.get("role") == "node"
    )
    admitted = bytes.fromhex(admit.key)
    nonce, peer_nonce = tagged_hash(b"fuzz", b"nonce"), b"\xff" * 32
    # A real proof: the author's, in a handshake with the admitted node.
    transcript = Transcript(
        PROTOCOL_VERSION, mesh_id, mat.author.public_key, nonce, admitted, peer_nonce
    )
    signature = transcript.sign(mat.author)
    return [
        Hello([1], mesh_id, mat.author.public_key, nonce, []),  # a genesis member
        Hello([0, 1, 2, _U32_MAX], mesh_id, admitted, peer_nonce, [admit.raw]),
        Auth(signature),
        Frontier(1, heads, [ForkEntry(low, high)], last=True, reply=True, tips=[high]),
        Frontier(0, [], [], last=False, reply=False, tips=[]),
        NothingToSend(1),
        GetRange(1, author, 1, 1, 3),
        GetRange(_U32_MAX, author, _U32_MAX, (1 << 63) - 1, (1 << 63) - 1),
        GetIds(2, [e.id for e in envelopes]),
        Envelopes(2, [e.raw for e in envelopes], more=False),
        Envelopes(0, [envelopes[0].raw], more=True),
        Envelopes(0, [envelopes[0].raw], False, (author[:8], mesh_id[:8])),
        Envelopes(0, [envelopes[0].raw], False, (), tuple(e.id for e in envelopes)),
        Bye("bad_message", "frame 3: \u00e9"),
        Bye("x", ""),
        Shuffle([sign_record(mat.author, mesh_id, 7, ["ws://127.0.0.1:7400/v1/sync"])], True),
        Shuffle([], False),
        IHave([e.id for e in envelopes]),
    ]


def _messages_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_message`` under a 1 MiB frame limit; what it accepts must encode and decode to
    the same message again."""
    seeds = [encode_message(m) for m in _message_seeds()]
    seeds += _corpus_inputs("messages", corpus_dir)

    def check(data: bytes) -> None:
        message = decode_message(data, frame_bytes_max=MESSAGE_FRAME_BYTES_MAX)
        again = encode_message(message)
        if decode_message(again, frame_bytes_max=len(again)) != message:
            raise AssertionError("an accepted message does not survive encoding")

    return FuzzTarget(check=check, seeds=seeds, structured=_messages_structured)


# -- attestations: a small attested mesh ---------------------------------------------------------

_ATTEST_REASONS: dict[str, Reason] = {
    # framing, shared with the other decoders
    "too_large": Reason.TOO_LARGE,
    "truncated": Reason.TRUNCATED,
    "trailing_bytes": Reason.TRAILING_BYTES,
    "count_exceeds_limit": Reason.COUNT_EXCEEDS_LIMIT,
    "length_exceeds_limit": Reason.LENGTH_EXCEEDS_LIMIT,
    "bad_version": Reason.BAD_VERSION,
    "bad_magic": Reason.BAD_VERSION,
    # JSON documents of the wrong shape
    "bad_json": Reason.BAD_JSON,
    "wrong_type": Reason.BAD_JSON,
    "missing_field": Reason.BAD_JSON,
    "unknown_field": Reason.BAD_JSON,
    "bad_value": Reason.BAD_JSON,
    "not_canonical": Reason.NOT_CANONICAL,
    "not_sorted": Reason.NOT_CANONICAL,
    "bad_base64": Reason.NOT_CANONICAL,
    "duplicate_keyid": Reason.BAD_SIGNATURE,
    # claim proofs: what the proof does not establish
    "wrong_mesh": Reason.WRONG_MESH,
    "bad_index": Reason.COUNT_EXCEEDS_LIMIT,
    "claims_root": Reason.BAD_CLAIMS_ROOT,
    "unknown_log": Reason.WRONG_CLIENT,
    "beyond_frontier": Reason.BAD_SEQ,
    "log_root": Reason.BAD_SIGNATURE,
    "top_root": Reason.BAD_SIGNATURE,
    "other_claim": Reason.CLAIM_ID_MISMATCH,
}
"""An attestation decoder's code -> the closest :class:`Reason` (``docs/operations.md``,
"Fuzzing"). A code that is a Reason value maps to it; any other is ``BAD_MESSAGE``, noted as
``unmapped:<code>``."""
_REASON_VALUES = frozenset(r.value for r in Reason)
_WRAPPED_CODES = frozenset({"bad_envelope", "bad_payload"})
"""Proof codes whose detail starts with the inner decoder's reason (``truncated: ...``)."""


def _attest_rejection(exc: AttestationError, notes: Counter[str], stage: str = "code") -> Rejected:
    """``exc`` as a :class:`Rejected`, its own code counted in ``notes`` (``<stage>:<code>``)."""
    notes[f"{stage}:{exc.code}"] += 1
    reason = _ATTEST_REASONS.get(exc.code)
    if reason is None and exc.code in _WRAPPED_CODES:
        inner = exc.detail.split(":", 1)[0]
        reason = Reason(inner) if inner in _REASON_VALUES else Reason.TRUNCATED
        notes[f"{exc.code}:{reason.value}"] += 1
    if reason is None and exc.code in _REASON_VALUES:
        reason = Reason(exc.code)
    if reason is None:  # a code this table does not know yet: still a refusal
        notes[f"unmapped:{exc.code}"] += 1
        reason = Reason.BAD_MESSAGE
    return Rejected(reason, f"{exc.code}: {exc.detail}"[:500])


@dataclass(frozen=True, slots=True)
class _AttestMaterial:
    builder: AttestationBuilder
    statements: list[Statement]
    """Three statements of one signer, each extending the last; the targets check against the
    last two (``older`` and ``newer``)."""
    dsse: list[bytes]
    bundles: list[bytes]
    proofs: list[bytes]
    """A proof of every attested claim against ``newer``, then a few against ``older``."""
    consistency: list[bytes]

    @property
    def older(self) -> Statement:
        return self.statements[1]

    @property
    def newer(self) -> Statement:
        return self.statements[2]


@cache
def _attest_material() -> _AttestMaterial:
    """The material's envelopes admitted in three steps, a signed statement after each."""
    mat = _material()
    fx = mat.fixture
    admission = Admission(MemoryStore(), fx.genesis)
    view = View(admission)
    builder = AttestationBuilder(admission, view)
    signer = fx.nodes[0]
    statements: list[Statement] = []
    dsse: list[bytes] = []
    bundles: list[bytes] = []
    for envelopes in (mat.envelopes[:1], mat.envelopes[1:3], mat.envelopes[3:]):
        for env in envelopes:
            outcome = admission.receive(env.raw)
            assert outcome.status is Status.INTEGRATED, outcome
            view.apply(outcome.admitted, 0)
        previous = statements[-1] if statements else None
        statement, signed = builder.attest(
            signer, hlc=(len(statements) + 1) << 16, previous=previous
        )
        statements.append(statement)
        dsse.append(signed)
        bundles.append(make_bundle(admission, signed))
    newer, older = statements[2], statements[1]
    dsse.append(cosign(dsse[-1], fx.nodes[1]))
    dsse.append(cosign(dsse[-1], fx.admin))
    pretty = json.loads(dsse[1])
    dsse.append(json.dumps(pretty, indent=2).encode())  # whitespace is tolerated
    dsse.append(sign_payload(newer.to_bytes(), fx.nodes[1]).to_json())  # not the signer's
    bundles.append(make_bundle(admission, dsse[3]))  # co-signed
    proofs = [prove_claim(builder, newer, c.id).to_bytes() for c in mat.claims]
    attested_before = {c.id for r in _records_upto(admission, older) for c in r}
    proofs += [
        prove_claim(builder, older, c.id).to_bytes() for c in mat.claims if c.id in attested_before
    ][:3]
    consistency = [
        prove_consistency(builder, older, newer).to_bytes(),
        prove_consistency(builder, statements[0], newer).to_bytes(),
        prove_consistency(builder, statements[0], older).to_bytes(),
    ]
    return _AttestMaterial(builder, statements, dsse, bundles, proofs, consistency)


def _records_upto(admission: Admission, statement: Statement) -> list[list[Claim]]:
    """The claims of each envelope on the statement's logs, up to its heads."""
    out: list[list[Claim]] = []
    for entry in statement.logs:
        for env_id in admission.logs[entry.log][: entry.size]:
            out.append(list(admission.records[env_id].claims))
    return out


_HEX_DIGITS = frozenset("0123456789abcdef")


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX_DIGITS


def _same_type(value: JsonValue, rng: random.Random) -> JsonValue:
    """Another value of ``value``'s JSON type, often still within the format's ranges."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice(
            (
                value + 1,
                max(0, value - 1),
                0,
                1,
                2,
                2**16 - 1,
                2**16,
                2**32,
                2**48 - 1,
                2**48,
                2**53,
            )
        )
    if _is_hex64(value):
        keys = sorted(_material().keys)
        return rng.choice((rng.randbytes(32).hex(), ZERO_ID.hex(), rng.choice(keys).hex()))
    if isinstance(value, str):
        return rng.choice(("", "a", "lww", "z.rule-1", "Upper", "x" * 65, value + "_"))
    if isinstance(value, list) and value:
        items = list(value)
        i = rng.randrange(len(items))
        op = rng.randrange(4)
        if op == 0:
            del items[i]
        elif op == 1:
            items.insert(i, items[i])
        elif op == 2:
            items.reverse()
        else:
            items[i] = _same_type_edit(items[i], rng)
        return items
    return value


def _same_type_edit(value: JsonValue, rng: random.Random) -> JsonValue:
    """``value`` with one leaf (or one list) somewhere inside it replaced by a value of the
    same type: the document keeps its shape, so edits often still decode, and reach the checks
    between fields (sorted logs, ranges) when they do not."""
    if isinstance(value, dict) and value:
        out = dict(value)
        name = rng.choice(sorted(out))
        out[name] = _same_type_edit(out[name], rng)
        return out
    if isinstance(value, list) and value and rng.random() < 0.6:
        items = list(value)
        i = rng.randrange(len(items))
        items[i] = _same_type_edit(items[i], rng)
        return items
    return _same_type(value, rng)


@cache
def _statement_pool() -> list[JsonValue]:
    newer = _attest_material().newer.to_json()
    logs = newer["logs"]
    assert isinstance(logs, list)
    return [
        *_json_pool(),
        *logs,
        [1, 0],
        [2**48 - 1, 2**16 - 1],
        [2**48, 0],
        [0, 2**16],
        {"name": "lww", "version": 1},
        {"name": "Bad Name", "version": 0},
        {"name": "a", "version": -1},
        [{"name": "a", "version": 1}, {"name": "a", "version": 1}],
        {"envelopes": 1, "claims": 1, "live_claims": 1, "subjects": 1, "conflicts_open": 0},
    ]


def _edit_statement_json(doc: JsonValue, rng: random.Random) -> JsonValue:
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if rng.random() < 0.6:
            doc = _same_type_edit(doc, rng)
        else:
            doc = _mutate_json(doc, rng, _statement_pool())
    return doc


def _statement_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Edit a statement's canonical JSON (mostly keeping each value's type) and encode it again."""
    try:
        doc = parse_canonical(data, what="fuzz statement", bytes_max=INPUT_BYTES_MAX)
    except Rejected:
        return None
    try:
        return canonical_bytes(_edit_statement_json(doc, rng))
    except ValueError:
        return None


def _statement_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_statement``; what it accepts must encode to exactly the same bytes."""
    am = _attest_material()
    notes: Counter[str] = Counter()
    seeds = [s.to_bytes() for s in am.statements]
    seeds += _corpus_inputs("statement", corpus_dir)

    def check(data: bytes) -> None:
        try:
            statement = decode_statement(data)
        except StatementError as exc:
            raise _attest_rejection(exc, notes) from None
        if statement.to_bytes() != data:
            raise AssertionError("an accepted statement does not encode to the same bytes")

    return FuzzTarget(check=check, seeds=seeds, structured=_statement_structured, notes=notes)


def _statement_signer(payload: bytes) -> SigningKey:
    """The key of the statement's signer, if the harness holds it (else node 0's)."""
    return _signer_for(payload, "signer", _material().fixture.nodes[0])


def _dsse_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Edit the signed statement and sign it again, edit the signature list, or edit the
    envelope's own JSON."""
    try:
        env = decode_dsse(data)
    except DsseError:
        return None
    mat = _material()
    roll = rng.random()
    if roll < 0.55:  # the statement, re-signed by the key it names
        edited = _statement_structured(env.payload, rng, mutator) if rng.random() < 0.9 else None
        payload = mutator.mutate(env.payload) if edited is None else edited
        signer = _statement_signer(payload) if rng.random() < 0.95 else mat.outsider
        payload_type = env.payload_type if rng.random() < 0.95 else rng.choice(("x", "é" * 200))
        out = sign_payload(payload, signer, payload_type)
        if rng.random() < 0.2:
            with contextlib.suppress(ValueError):
                return cosign(out, mat.keys[rng.choice(sorted(mat.keys))])
        return out.to_json()
    if roll < 0.8:  # the signature list
        sigs = list(env.signatures)
        op = rng.randrange(7)
        if op == 0:
            with contextlib.suppress(ValueError):
                return cosign(env, mat.keys[rng.choice(sorted(mat.keys))])
        elif op == 1 and len(sigs) > 1:
            del sigs[rng.randrange(len(sigs))]
        elif op == 2:
            sigs.insert(0, rng.choice(sigs))
        elif op == 3:
            sigs.reverse()
        elif op == 4:
            i = rng.randrange(len(sigs))
            sigs[i] = DsseSignature(sigs[i].keyid, rng.randbytes(SIGNATURE_BYTES))
        elif op == 5:
            sigs = [
                DsseSignature(rng.randbytes(32), rng.randbytes(SIGNATURE_BYTES))
                for _ in range(rng.choice((0, 64, 65)))
            ]
        else:
            sigs = []
        return DsseEnvelope(env.payload, env.payload_type, tuple(sigs)).to_json()
    doc = json.loads(data)  # the envelope's JSON, edited anywhere
    edited_doc = _mutate_json(doc, rng, _json_pool())
    try:
        return (
            canonical_bytes(edited_doc) if rng.random() < 0.7 else json.dumps(edited_doc).encode()
        )
    except ValueError:
        return None


def _dsse_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_dsse``, then ``decode_statement`` of its payload, then the signature of the
    statement's signer (``BAD_SIGNATURE`` when it is missing or invalid). Every signature is
    checked (``valid`` must answer, never raise), and ``verify_attestation`` (no bundle) must
    return a report for any input."""
    am = _attest_material()
    notes: Counter[str] = Counter()
    seeds = list(am.dsse) + _corpus_inputs("dsse", corpus_dir)

    def check(data: bytes) -> None:
        report = verify_attestation(data, bundle=None, pubkey=None)
        if not isinstance(report, Report):
            raise TypeError(f"verify_attestation returned {type(report).__name__}")
        notes[f"verdict:{report.verdict.value}"] += 1
        try:
            env = decode_dsse(data)
        except DsseError as exc:
            raise _attest_rejection(exc, notes) from None
        valid = [env.valid(s) for s in env.signatures]
        try:
            statement = decode_statement(env.payload)
        except StatementError as exc:
            raise _attest_rejection(exc, notes, "statement") from None
        mine = env.signature_by(statement.signer)
        if mine is None or not valid[env.signatures.index(mine)]:
            notes["code:signer_signature"] += 1
            raise Rejected(Reason.BAD_SIGNATURE, "no valid signature by the statement's signer")
        for code in report.codes[:3]:  # what the verifier checks beyond the decoders
            notes["accepted_but:" + code.split(":", 1)[0]] += 1

    return FuzzTarget(check=check, seeds=seeds, structured=_dsse_structured, notes=notes)


def _patch_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + pack_u32(_clamp(value, 32)) + data[at + 4 :]


def _bundle_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Edit a bundle's envelope list, its DSSE or its genesis and frame it again; sometimes
    with a lying length, count, version or magic."""
    try:
        bundle = decode_bundle(data)
    except BundleError:
        return None
    mat = _material()
    dsse, genesis, envs = bundle.dsse, bundle.genesis, list(bundle.envelopes)
    op = rng.randrange(10)
    if op == 0 and envs:
        del envs[rng.randrange(len(envs))]
    elif op == 1 and envs:
        envs.insert(rng.randrange(len(envs) + 1), rng.choice(envs))
    elif op == 2:
        rng.shuffle(envs)
    elif op == 3:
        envs.insert(rng.randrange(len(envs) + 1), rng.choice(mat.envelopes).raw)
    elif op == 4 and envs:
        i = rng.randrange(len(envs))
        mutated = _envelope_structured(envs[i], rng, mutator)
        envs[i] = mutator.mutate(envs[i]) if mutated is None else mutated
    elif op == 5:
        mutated = _dsse_structured(dsse, rng, mutator) if rng.random() < 0.8 else None
        dsse = rng.choice(_attest_material().dsse) if mutated is None else mutated
    elif op == 6:
        mutated = _genesis_structured(genesis, rng, mutator)
        genesis = mutator.mutate(genesis) if mutated is None else mutated
    elif op == 7:
        envs = envs[: rng.randrange(len(envs) + 1)]
    out = encode_bundle(Bundle(dsse, genesis, tuple(envs)))
    if op == 8:  # a lying frame
        count_at = 9 + 4 + len(dsse) + 4 + len(genesis)
        fields = (9, 9 + 4 + len(dsse), count_at, count_at + 4)
        at = rng.choice((8, *(f for f in fields if f + 4 <= len(out))))
        if at == 8:
            return out[:8] + bytes([rng.choice((0, 2, 255))]) + out[9:]
        value = unpack_u32(out[at : at + 4])
        lie = rng.choice((value + 1, max(0, value - 1), 0, 1 << 22, (1 << 22) + 1, _U32_MAX))
        return _patch_u32(out, at, lie)
    if op == 9:
        return rng.choice((b"MMBUNDLF", b"mmbundle", b"")) + out[8:]
    return out


def _bundle_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_bundle``; a bundle it accepts goes to ``verify_attestation`` with its own DSSE,
    which must answer with a report (its verdict is counted in ``notes``), never raise."""
    am = _attest_material()
    notes: Counter[str] = Counter()
    seeds = list(am.bundles) + _corpus_inputs("bundle", corpus_dir)

    def check(data: bytes) -> None:
        try:
            bundle = decode_bundle(data)
        except BundleError as exc:
            raise _attest_rejection(exc, notes) from None
        report = verify_attestation(bundle.dsse, bundle=data, pubkey=None)
        if not isinstance(report, Report):
            raise TypeError(f"verify_attestation returned {type(report).__name__}")
        notes[f"verdict:{report.verdict.value}"] += 1
        for code in report.codes[:3]:
            notes["verify:" + code.split(":", 1)[0]] += 1

    return FuzzTarget(check=check, seeds=seeds, structured=_bundle_structured, notes=notes)


def _edit_path(path: list[bytes], rng: random.Random) -> None:
    """Drop, add, replace or reorder the hashes of a Merkle path, or empty it."""
    choice = rng.randrange(5)
    if choice == 0 and path:
        path.pop()
    elif choice == 1 and len(path) < PATH_MAX:
        path.append(rng.randbytes(32))
    elif choice == 2 and path:
        path[rng.randrange(len(path))] = rng.randbytes(32)
    elif choice == 3:
        path.reverse()
    else:
        path.clear()


def _reindexed(body: bytes, rng: random.Random) -> tuple[int, list[bytes]] | None:
    """Another claim of the envelope ``body``, with its claims path (or an index past the end)."""
    try:
        env = decode_envelope(body + bytes(SIGNATURE_BYTES))
        items = decode_update(
            env.payload, client=client_id(env.author, env.epoch), start_clock=None
        )
    except Rejected:
        return None
    if not items:
        return None
    index = rng.randrange(len(items) + (1 if rng.random() < 0.1 else 0))
    if index == len(items):
        return index, []
    return index, MerkleTree(item.claim_id for item in items).inclusion_proof(index)


def _edited_body(body: bytes, rng: random.Random, mutator: Mutator) -> bytes:
    """The envelope body edited by the envelope mutations (its signature is not carried)."""
    key = _material().keys.get(body[34:66])
    mutated = None
    if key is not None:
        mutated = _envelope_structured(body + key.sign(SIGNATURE_DOMAIN, body), rng, mutator)
    return mutator.mutate(body) if mutated is None else mutated[:-SIGNATURE_BYTES]


def _lying_proof(out: bytes, body_len: int, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return out[:4] + bytes([rng.choice((0, 2, 255))]) + out[5:]
    if choice == 1:
        lie = rng.choice((body_len + 1, max(0, body_len - 1), (1 << 20) + 1, _U32_MAX))
        return _patch_u32(out, 9, lie)
    if choice == 2:  # a claims path of 65 hashes
        return out[: 13 + body_len] + bytes([PATH_MAX + 1]) + rng.randbytes(32) * 65
    return out + rng.choice((b"\x00", rng.randbytes(32)))


def _proof_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Point the proof at another claim of its envelope (claims path recomputed: often valid),
    take a fresh proof, edit a path or the index, re-seal an edited envelope body, or lie in
    the framing."""
    try:
        proof = decode_proof(data)
    except ProofError:
        return None
    am = _attest_material()
    index, body = proof.claim_index, proof.body
    paths = [list(proof.claims_path), list(proof.log_path), list(proof.top_path)]
    op = rng.randrange(9)
    if op in (0, 1):
        moved = _reindexed(body, rng)
        if moved is not None:
            index, paths[0] = moved
    elif op == 2:
        return rng.choice(am.proofs)
    elif op == 3:
        index = _clamp(rng.choice((index + 1, index - 1, 0, _U32_MAX)), 32)
    elif op == 4:
        _edit_path(paths[rng.randrange(3)], rng)
    elif op == 5:
        i, j = rng.randrange(3), rng.randrange(3)
        paths[i], paths[j] = paths[j], paths[i]
    elif op == 6:
        body = _edited_body(body, rng, mutator)
    elif op == 7:
        body = decode_proof(rng.choice(am.proofs)).body
    out = ClaimProof(index, body, *(tuple(p[:PATH_MAX]) for p in paths)).to_bytes()
    return _lying_proof(out, len(body), rng) if op == 8 else out


def _zero_dep_proof(am: _AttestMaterial) -> list[bytes]:
    """A proof whose envelope names the zero id as its first dep (``bad_deps``): the mutations
    reach that refusal only by luck (seed 4232403108 missed it in 10,000 runs)."""
    admission = am.builder.admission
    for raw in am.proofs:
        proof = decode_proof(raw)
        env = next(
            (
                admission.envelope(i)
                for i in admission.records
                if admission.envelope_bytes(i).startswith(proof.body)
            ),
            None,
        )
        if env is not None and env.deps:
            at = proof.body.find(env.deps[0])
            body = proof.body[:at] + ZERO_ID + proof.body[at + len(ZERO_ID) :]
            return [replace(proof, body=body).to_bytes()]
    return []


def _proof_target(corpus_dir: Path | None) -> FuzzTarget:
    """``verify_proof(newer, data)`` (``decode_proof`` first); an accepted proof must name the
    claim whose bytes it returns."""
    am = _attest_material()
    newer = am.newer
    notes: Counter[str] = Counter()
    seeds = list(am.proofs) + _zero_dep_proof(am) + _corpus_inputs("proof", corpus_dir)

    def check(data: bytes) -> None:
        try:
            proven = verify_proof(newer, data)
        except ProofError as exc:
            raise _attest_rejection(exc, notes) from None
        if _claim_id(proven.claim) != proven.claim_id:
            raise AssertionError("a verified proof returned a claim under another id")

    return FuzzTarget(check=check, seeds=seeds, structured=_proof_structured, notes=notes)


def _lying_consistency(out: bytes, logs: int, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return out[:4] + bytes([rng.choice((0, 2, 255))]) + out[5:]
    if choice == 1:
        return _patch_u32(out, 5, rng.choice((logs + 1, max(0, logs - 1), 10_001, _U32_MAX)))
    if choice == 2:  # one more log, last in order, with a path of 65 hashes
        extra = b"\xff" * 32 + pack_u32(_U32_MAX) + bytes([PATH_MAX + 1]) + bytes(32 * 65)
        return _patch_u32(out, 5, logs + 1) + extra
    return out + rng.choice((b"\x00", rng.randbytes(37)))


def _consistency_structured(data: bytes, rng: random.Random, _mutator: Mutator) -> bytes | None:
    """Edit the per-log proofs: add a log (ignored when sorted in: accepted), drop, duplicate
    or reorder logs, edit a path or an epoch, or lie in the framing."""
    try:
        parsed = decode_consistency(data)
    except ConsistencyError:
        return None
    logs = list(parsed.logs)
    op = rng.randrange(8)
    if op == 0:
        author = rng.choice((rng.randbytes(32), *(lc.author for lc in logs)))
        logs.append(LogConsistency(author, rng.choice((0, 1, 2, _U32_MAX)), ()))
        if rng.random() < 0.8:
            logs.sort(key=lambda lc: lc.log)
    elif op == 1 and logs:
        del logs[rng.randrange(len(logs))]
    elif op == 2 and logs:
        i = rng.randrange(len(logs))
        logs.insert(i, logs[i])
    elif op == 3:
        logs.reverse()
    elif op in (4, 5) and logs:
        i = rng.randrange(len(logs))
        path = list(logs[i].path)
        if rng.random() < 0.2:
            path = [*path, *path][:PATH_MAX]
        else:
            _edit_path(path, rng)
        logs[i] = LogConsistency(logs[i].author, logs[i].epoch, tuple(path))
    elif op == 6 and logs:
        i = rng.randrange(len(logs))
        logs[i] = LogConsistency(logs[i].author, rng.choice((0, 2, _U32_MAX)), logs[i].path)
    out = StatementConsistency(tuple(logs)).to_bytes()
    return _lying_consistency(out, len(logs), rng) if op == 7 else out


def _consistency_target(corpus_dir: Path | None) -> FuzzTarget:
    """``decode_consistency``; what it accepts must encode to the same bytes and go through
    ``check_consistency`` for each pair of the three statements (older first). Accepted when it
    proves some pair consistent; else a rejection (``BAD_PREV``: no older log is shown to be a
    prefix of the newer one) noted with the first failure of the last pair."""
    am = _attest_material()
    s0, s1, s2 = am.statements
    pairs = ((s1, s2), (s0, s2), (s0, s1))
    notes: Counter[str] = Counter()
    seeds = list(am.consistency) + _corpus_inputs("consistency", corpus_dir)

    def check(data: bytes) -> None:
        try:
            parsed = decode_consistency(data)
        except ConsistencyError as exc:
            raise _attest_rejection(exc, notes) from None
        if parsed.to_bytes() != data:
            raise AssertionError("an accepted consistency proof does not encode to the same bytes")
        failures = [check_consistency(older, newer, parsed) for older, newer in pairs]
        if all(failures):
            first = failures[0][0]
            notes["check:" + first.code.split(":", 1)[0]] += 1
            raise Rejected(Reason.BAD_PREV, f"{first.code}: {first.detail}"[:500])

    return FuzzTarget(check=check, seeds=seeds, structured=_consistency_structured, notes=notes)


# -- files read from a path: key files, the config file, the admit chain ------------------------


class _InputFile:
    """One file in a private temporary directory, rewritten (mode 0600) for each input."""

    def __init__(self, name: str) -> None:
        folder = tempfile.mkdtemp(prefix="memmesh-fuzz-")
        # Removed with the target (or at exit); not a TemporaryDirectory, whose implicit
        # cleanup warns (ResourceWarning, an error under ``-W error``).
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        self.path = Path(folder) / name

    def write(self, data: bytes) -> Path:
        # Written over, then cut to length: O_TRUNC of a file that holds data costs about a
        # millisecond on ext4 (it waits for the old blocks), ftruncate after the write does not.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        return self.path


def _key_file_code(message: str) -> tuple[str, Reason]:
    """``read_key_file``'s refusal, by its message (``KeyFileError`` carries no code)."""
    if "too large to be a key file" in message:
        return "too_large", Reason.TOO_LARGE
    if "exactly one line" in message:
        return "not_one_line", Reason.TRAILING_BYTES
    if "not valid base64" in message:
        return "bad_base64", Reason.NOT_CANONICAL
    if "an Ed25519 seed is" in message:
        held = int(message.rsplit(" holds ", 1)[1].split(" ", 1)[0])
        if held < SEED_BYTES:
            return "short_seed", Reason.TRUNCATED
        return "long_seed", Reason.LENGTH_EXCEEDS_LIMIT
    return "other", Reason.BAD_MESSAGE


def _key_line(seed: bytes) -> bytes:
    return base64.b64encode(seed) + b"\n"


def _key_file_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """A new seed, or the line with its end, padding, alphabet or length changed."""
    body = data[:-1] if data.endswith(b"\n") else data
    try:
        seed = binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        return None
    op = rng.randrange(10)
    if op == 0:
        return _key_line(rng.randbytes(SEED_BYTES))
    if op == 1:
        return body
    if op == 2:
        return body + rng.choice((b"\r\n", b"\n\n", b" \n", b"\n ", b"\r", b"\x00"))
    if op == 3:
        return rng.choice((b" ", b"\t", b"\n", b"\xef\xbb\xbf")) + body + b"\n"
    if op == 4:
        return _key_line(seed[: rng.randrange(len(seed))] if seed else b"")
    if op == 5:
        return _key_line(seed + rng.randbytes(rng.choice((1, 2, 3, 150, 160))))
    if op == 6:
        return base64.urlsafe_b64encode(seed) + b"\n"
    if op == 7:
        return body.rstrip(b"=") + b"\n"
    if op == 8:
        return body + b"=\n"
    at = rng.randrange(len(body) + 1)
    return body[:at] + rng.choice((b"\n", b"=", b"*", b"-", b"_", b" ")) + body[at:] + b"\n"


def _key_file_target(corpus_dir: Path | None) -> FuzzTarget:
    """``read_key_file`` of a 0600 file holding the input; a key it reads must have the seed the
    file's base64 holds."""
    notes: Counter[str] = Counter()
    file = _InputFile("node.key")
    seeds = [_key_line(k.seed) for k in _material().keys.values()][:4]
    seeds += [_key_line(bytes(32)), _key_line(b"\xff" * 32)[:-1]]
    seeds += _corpus_inputs("key_file", corpus_dir)

    def check(data: bytes) -> None:
        try:
            key = read_key_file(file.write(data))
        except KeyFileError as exc:
            code, reason = _key_file_code(str(exc))
            notes[f"code:{code}"] += 1
            raise Rejected(reason, code) from None
        if _key_line(key.seed) != data and _key_line(key.seed)[:-1] != data:
            notes["accepted_not_canonical"] += 1  # e.g. nonzero bits after the last digit

    return FuzzTarget(check=check, seeds=seeds, structured=_key_file_structured, notes=notes)


_CONFIG_NUMERIC_BOUNDS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
)
_CONFIG_LENGTH_BOUNDS = frozenset({"string_too_short", "string_too_long", "too_short", "too_long"})
_CONFIG_FILE_PROBLEMS = (
    ("too large to be a config file", "too_large", Reason.TOO_LARGE),
    ("not UTF-8 text", "not_utf8", Reason.BAD_JSON),
    ("not valid TOML", "not_toml", Reason.BAD_JSON),
    ("cannot name another one", "config_file", Reason.BAD_JSON),
    ("is not a memmesh setting", "unknown_setting", Reason.BAD_JSON),
    ("home directory", "no_home", Reason.BAD_JSON),
)


def _config_codes(exc: Exception) -> list[tuple[str, Reason]]:
    """Codes and reasons of a ``ConfigError``: pydantic's error types when it came from
    validation (its context), else the file-level problem its message names."""
    from pydantic import ValidationError  # noqa: PLC0415 - only the config target needs it

    context = exc.__context__
    if isinstance(context, ValidationError):
        out: list[tuple[str, Reason]] = []
        for error in context.errors():
            kind = str(error["type"])
            if kind in _CONFIG_NUMERIC_BOUNDS or kind == "cross_field":
                out.append((kind, Reason.COUNT_EXCEEDS_LIMIT))
            elif kind in _CONFIG_LENGTH_BOUNDS:
                out.append((kind, Reason.LENGTH_EXCEEDS_LIMIT))
            else:
                out.append((kind, Reason.BAD_JSON))
        if out:
            return out
    message = str(exc)
    found = [(code, reason) for text, code, reason in _CONFIG_FILE_PROBLEMS if text in message]
    return found or [("other", Reason.BAD_JSON)]


_TOML_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value else "nan"  # noqa: PLR0124 - NaN
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04X}")
            else:
                out.append(ch)
        return "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    raise ValueError(f"no TOML for {type(value).__name__}")


def _toml_key(key: str) -> str:
    return key if key and set(key) <= _TOML_BARE_KEY else _toml_value(key)


def _render_toml(table: dict[str, object]) -> bytes:
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items()).encode()


_TOML_INTS = (
    0,
    1,
    -1,
    2,
    100,
    65535,
    65536,
    (1 << 20) + 1023,
    (1 << 20) + 1024,
    2**31,
    2**63 - 1,
    -(2**63),
)
_TOML_STRS = (
    "",
    " ",
    "127.0.0.1",
    "::1",
    "DEBUG",
    "json",
    "console",
    "trace",
    "ws://127.0.0.1:7400/v1/sync",
    "wss://peer.example:443/v1/sync",
    "ws://[::1",
    "ws://host:99999/v1/sync",
    "http://host/v1/sync",
    "ws://a,ws://b:1",
    "~/memmesh",
    "x\x00y",
    "é\U0001f600",
    "x" * 300,
)
_TOML_OTHER: tuple[object, ...] = (
    1.5,
    float("inf"),
    float("nan"),
    True,
    [],
    [1],
    {"a": 1},
    datetime.date(2024, 1, 1),
)


def _toml_same_type(value: object, rng: random.Random) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice((*_TOML_INTS, value + 1, value - 1, value * 2, value // 2))
    if isinstance(value, str):
        return rng.choice((*_TOML_STRS, value + "x", value.upper()))
    if isinstance(value, list):
        items = list(value)
        if items and rng.random() < 0.5:
            del items[rng.randrange(len(items))]
        else:
            items.append(rng.choice(_TOML_STRS[8:14]))
        return items
    return rng.choice(_TOML_OTHER)


def _config_structured(data: bytes, rng: random.Random, _mutator: Mutator) -> bytes | None:
    """Edit the TOML table: values within their type (often still valid), a setting added,
    dropped or misspelt, or a value of another type; then render it again."""
    try:
        table: dict[str, object] = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    fields = _config_fields()
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(10)
        if op < 5 and table:
            name = rng.choice(sorted(table))
            table[name] = _toml_same_type(table[name], rng)
        elif op < 7:
            name, default = rng.choice(fields)
            table[name] = _toml_same_type(default, rng) if rng.random() < 0.7 else default
        elif op == 7 and table:
            del table[rng.choice(sorted(table))]
        elif op == 8:
            name, default = rng.choice(fields)
            typo = rng.choice((name + "s", name[:-1], name.upper(), "config_file", "zz"))
            table[typo] = default
        else:
            name, _default = rng.choice(fields)
            table[name] = rng.choice((*_TOML_OTHER, *_TOML_STRS[:3], *_TOML_INTS[:3]))
    try:
        return _render_toml(table)
    except ValueError:
        return None


@cache
def _config_fields() -> list[tuple[str, object]]:
    """Every setting a TOML file may hold, with a valid value of its type."""
    from .config import NodeSettings  # noqa: PLC0415 - pydantic is slow to import

    out: list[tuple[str, object]] = []
    for name, info in NodeSettings.model_fields.items():
        if name == "config_file":
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = str(default)
        if default is None:
            default = {"api_token": "secret", "advertise_url": "ws://127.0.0.1:7400/v1/sync"}.get(
                name, f"{name}.pem"
            )
        if isinstance(default, bool | int | str | list):
            out.append((name, default))
    return out


def _config_target(corpus_dir: Path | None) -> FuzzTarget:
    """``load_settings(config_file=...)`` of a TOML file holding the input (environment
    variables apply as usual: run it without ``MEMMESH_*`` settings). Refusals are
    ``ConfigError``; the codes in ``notes`` are pydantic's error types or the file's problem."""
    from .config import ConfigError, load_settings  # noqa: PLC0415 - pydantic is slow to import

    notes: Counter[str] = Counter()
    file = _InputFile("memmesh.toml")
    fields = _config_fields()
    seeds = [
        b"",
        _render_toml(dict(fields)),
        _render_toml({"gossip_port": 7500, "api_port": 7501, "log_level": "debug"}),
        _render_toml({"peers": ["ws://127.0.0.1:7400/v1/sync", "wss://[::1]:7443/v1/sync"]}),
        # The only length bounds are the two hosts' (at least one character): a seed that
        # breaks one, so a campaign reaches that refusal whatever the number of settings the
        # mutator picks among.
        _render_toml({"api_host": ""}),
        b'# a comment\ndata_dir = "node-a"\nlog_format = "JSON"\n\n',
        b"[table]\nx = 1\n",
    ]
    seeds += _corpus_inputs("config", corpus_dir)

    def check(data: bytes) -> None:
        try:
            load_settings(config_file=file.write(data))
        except ConfigError as exc:
            codes = _config_codes(exc)
            for code, _reason in codes:
                notes[f"code:{code}"] += 1
            raise Rejected(codes[0][1], str(exc)[:500]) from None

    return FuzzTarget(check=check, seeds=seeds, structured=_config_structured, notes=notes)


def _admit_chain_bytes(chain: Sequence[bytes]) -> bytes:
    return pack_u32(len(chain)) + b"".join(pack_u32(len(raw)) + raw for raw in chain)


def _admit_chain_structured(data: bytes, rng: random.Random, mutator: Mutator) -> bytes | None:
    """Drop, add, reorder or re-sign the chain's claims, or lie about a count or a length."""
    r = Reader(data, "fuzz admit chain")
    try:
        chain = [r.raw(r.u32("length"), "claim") for _ in range(r.u32("count"))]
        r.expect_end()
    except Rejected:
        return None
    claims = _material().claims
    op = rng.randrange(7)
    if op == 0 and chain:
        del chain[rng.randrange(len(chain))]
    elif op == 1:
        chain.insert(rng.randrange(len(chain) + 1), rng.choice(claims).raw)
    elif op == 2:
        chain.reverse()
    elif op == 3 and chain:
        i = rng.randrange(len(chain))
        mutated = _claim_structured(chain[i], rng, mutator)
        chain[i] = mutator.mutate(chain[i]) if mutated is None else mutated
    out = _admit_chain_bytes(chain)
    if op == 4:
        return _patch_u32(out, 0, rng.choice((len(chain) + 1, max(0, len(chain) - 1), _U32_MAX)))
    if op == 5 and chain:
        first = len(chain[0])
        return _patch_u32(out, 4, rng.choice((first + 1, max(0, first - 1), _U32_MAX)))
    return out


def _admit_chain_target(corpus_dir: Path | None) -> FuzzTarget:
    """``read_admit_chain`` of a file holding the input, then ``decode_claim`` of each claim
    in it (its reasons pass through; ``notes`` tell which stage refused)."""
    from .runtime.node import read_admit_chain  # noqa: PLC0415 - the runtime is slow to import

    notes: Counter[str] = Counter()
    file = _InputFile("admit-chain.bin")
    mat = _material()
    admits = [c.raw for c in mat.claims if c.type == "admit"]
    seeds = [_admit_chain_bytes(c) for c in ([], admits[:1], admits, [c.raw for c in mat.claims])]
    seeds += _corpus_inputs("admit_chain", corpus_dir)

    def check(data: bytes) -> None:
        try:
            chain = read_admit_chain(file.write(data))
        except Rejected as exc:
            notes[f"code:{exc.reason.value}"] += 1
            raise
        for raw in chain:
            try:
                decode_claim(raw)
            except Rejected as exc:
                notes[f"claim:{exc.reason.value}"] += 1
                raise

    return FuzzTarget(check=check, seeds=seeds, structured=_admit_chain_structured, notes=notes)


for _name, _factory in (
    ("envelope", _envelope_target),
    ("grammar", _grammar_target),
    ("claim", _claim_target),
    ("canonical_json", _canonical_json_target),
    ("genesis", _genesis_target),
    ("membership_op", _membership_op_target),
    ("admission", _admission_target),
    ("messages", _messages_target),
    ("dsse", _dsse_target),
    ("statement", _statement_target),
    ("bundle", _bundle_target),
    ("proof", _proof_target),
    ("consistency", _consistency_target),
    ("key_file", _key_file_target),
    ("config", _config_target),
    ("admit_chain", _admit_chain_target),
):
    register_target(_name, _factory)


# -- running --------------------------------------------------------------------------------------


class Mailbox:
    """The input being executed, in a shared file mapping, so the parent can name the input
    that killed a child. Layout: ``count u64 | length u32 | bytes``; ``count`` is the number of
    inputs started so far (0: none), so it also shows progress."""

    HEADER = 12
    SIZE = HEADER + INPUT_BYTES_MAX

    def __init__(self, path: Path) -> None:
        with path.open("r+b") as f:
            self._map = mmap.mmap(f.fileno(), self.SIZE)

    @classmethod
    def create(cls, path: Path) -> None:
        with path.open("wb") as f:
            f.truncate(cls.SIZE)

    def put(self, count: int, data: bytes) -> None:
        n = min(len(data), INPUT_BYTES_MAX)
        self._map[self.HEADER : self.HEADER + n] = data[:n]
        self._map[8:12] = pack_u32(n)
        self._map[0:8] = pack_u64(count)

    def close(self) -> None:
        self._map.close()

    @classmethod
    def read(cls, path: Path) -> tuple[int, bytes]:
        raw = path.read_bytes()
        count, n = unpack_u64(raw[0:8]), unpack_u32(raw[8:12])
        return count, raw[cls.HEADER : cls.HEADER + n]

    @classmethod
    def count(cls, path: Path) -> int:
        with path.open("rb") as f:
            return unpack_u64(f.read(8))


def _describe(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}: {exc}"[:_TAIL_CHARS]


def _execute(check: Check, data: bytes) -> Reason | BaseException | None:
    """Run one input: None if accepted, the Reason if rejected, else the exception (a finding)."""
    try:
        check(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Rejected as exc:
        if isinstance(exc.reason, Reason):
            return exc.reason
        return exc
    except BaseException as exc:  # noqa: BLE001 - pycrdt panics derive from BaseException
        return exc
    return None


@dataclass(slots=True)
class _Stats:
    target: str
    seed: int
    runs: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    findings: list[dict[str, str]] = field(default_factory=list)
    findings_total: int = 0
    slowest_s: float = 0.0
    slowest_input_hex: str = ""
    by_method: dict[str, Counter[str]] = field(default_factory=dict)

    def finding(self, data: bytes, error: str, tb: str = "") -> None:
        self.findings_total += 1
        if len(self.findings) < FINDINGS_KEPT:
            self.findings.append({"input_hex": data.hex(), "error": error, "traceback": tb})


def _inputs(
    target: FuzzTarget, runs: int, rng: random.Random, pool: list[bytes], mutator: Mutator
) -> Iterator[tuple[str, bytes]]:
    """The corpus first, as it is, then mutations of it: ``(method, input)`` pairs."""
    for i in range(runs):
        if i < len(target.seeds):
            yield "corpus", target.seeds[i][:INPUT_BYTES_MAX]
            continue
        roll = rng.random()
        base = rng.choice(pool)
        if roll < _SHARE_RANDOM:
            yield "random", mutator.random_input()
        elif roll < _SHARE_RANDOM + _SHARE_OVERSIZE:
            yield "oversize", mutator.oversize(base)
        elif target.structured is not None and roll < _SHARE_RANDOM + _SHARE_STRUCTURED:
            out = target.structured(base, rng, mutator)
            if out is None:
                yield "bytes", mutator.mutate(base)
            else:
                yield "structured", out[:INPUT_BYTES_MAX]
        else:
            yield "bytes", mutator.mutate(base)


def run(
    target: str,
    runs: int,
    seed: int,
    *,
    time_limit_s_per_input: float = 1.0,
    corpus_dir: Path | None = DEFAULT_CORPUS_DIR,
    mailbox: Mailbox | None = None,
) -> dict[str, Any]:
    """Fuzz ``target`` with ``runs`` inputs (the corpus first) in this process; return stats.

    Stats: ``runs``, ``accepted``, ``rejected`` (count per Reason value), ``reasons_hit``,
    ``findings`` (the first few: ``input_hex``, ``error``, ``traceback``), ``findings_total``,
    ``slowest_s``, ``max_rss_kib``, ``inputs_per_s``, ``by_method`` (how inputs were made and
    what became of them), ``notes`` (the target's counters) and ``finish`` (its final report).
    """
    started = time.perf_counter()
    fuzz_target = build_target(target, corpus_dir)
    rng = random.Random(seed)
    pool = list(fuzz_target.seeds) or [b""]
    mutator = Mutator(rng, pool)
    stats = _Stats(target=target, seed=seed)
    seen: set[str] = set()
    loop_started = time.perf_counter()
    for method, data in _inputs(fuzz_target, runs, rng, pool, mutator):
        stats.runs += 1
        if mailbox is not None:
            mailbox.put(stats.runs, data)
        # CPU time of this thread, not wall time: an input's cost is what it burns, and a busy
        # machine (two campaigns beside other tests on two cores) must not make a finding.
        t0 = time.thread_time()
        result = _execute(fuzz_target.check, data)
        elapsed = time.thread_time() - t0
        if elapsed > stats.slowest_s:
            stats.slowest_s, stats.slowest_input_hex = elapsed, data[:256].hex()
        if elapsed > time_limit_s_per_input:
            stats.finding(data, f"slow input: {elapsed:.3f} s > {time_limit_s_per_input} s")
        counts = stats.by_method.setdefault(method, Counter())
        counts["runs"] += 1
        if isinstance(result, BaseException):
            tb = "".join(traceback.format_exception(result))[-_TAIL_CHARS:]
            stats.finding(data, _describe(result), tb)
            counts["findings"] += 1
            continue
        outcome = "accepted" if result is None else result.value
        if result is None:
            stats.accepted += 1
            counts["accepted"] += 1
        else:
            stats.rejected[result.value] += 1
        if outcome not in seen and len(pool) < len(fuzz_target.seeds) + _POOL_GROWTH_MAX:
            seen.add(outcome)
            if method != "corpus":
                pool.append(data)
    loop_s = time.perf_counter() - loop_started
    finish: dict[str, Any] = {}
    if fuzz_target.finish is not None:
        try:
            finish = fuzz_target.finish()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a poisoned document may panic
            tb = "".join(traceback.format_exception(exc))[-_TAIL_CHARS:]
            stats.finding(b"", f"after the run: {_describe(exc)}", tb)
    return {
        "target": target,
        "seed": seed,
        "runs": stats.runs,
        "accepted": stats.accepted,
        "rejected": dict(sorted(stats.rejected.items())),
        "reasons_hit": sorted(stats.rejected),
        "findings": stats.findings,
        "findings_total": stats.findings_total,
        "slowest_s": round(stats.slowest_s, 6),
        "slowest_input_hex_prefix": stats.slowest_input_hex,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_rss_kib": _peak_rss_kib(),
        "inputs_per_s": round(stats.runs / loop_s, 1) if loop_s > 0 else 0.0,
        "elapsed_s": round(time.perf_counter() - started, 3),
        "corpus_size": len(fuzz_target.seeds),
        "by_method": {m: dict(sorted(c.items())) for m, c in sorted(stats.by_method.items())},
        "notes": dict(sorted(fuzz_target.notes.items())),
        "finish": finish,
    }


def _peak_rss_kib() -> int | None:
    """This process image's own peak RSS (``VmHWM``). ``ru_maxrss`` survives ``exec``, so in a
    child it is at least the parent's RSS at fork time: an upper bound, this the exact figure."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def replay_corpus(target: str, corpus_dir: Path | None = DEFAULT_CORPUS_DIR) -> dict[str, Any]:
    """Every input of ``target``'s seed corpus once, unmutated, in this process: the built-in
    samples and the committed regression files (``admission`` ones as given and signed)."""
    return run(target, len(build_target(target, corpus_dir).seeds), 0, corpus_dir=corpus_dir)


def replay(target: str, inputs: Sequence[bytes], corpus_dir: Path | None = None) -> dict[str, Any]:
    """Run exactly ``inputs`` through a fresh ``target`` (no corpus, no mutations)."""
    fuzz_target = build_target(target, corpus_dir)
    fuzz_target.seeds = list(inputs)
    fuzz_target.structured = None
    findings: list[dict[str, str]] = []
    reasons: Counter[str] = Counter()
    for data in inputs:
        result = _execute(fuzz_target.check, data)
        if isinstance(result, BaseException):
            tb = "".join(traceback.format_exception(result))[-_TAIL_CHARS:]
            findings.append({"input_hex": data.hex(), "error": _describe(result), "traceback": tb})
        else:
            reasons["accepted" if result is None else result.value] += 1
    return {"target": target, "runs": len(inputs), "outcomes": dict(reasons), "findings": findings}


# -- isolation ------------------------------------------------------------------------------------


def limit_memory(memory_limit_bytes: int) -> None:
    """Cap this process's address space (``RLIMIT_AS``) and disable core files.

    The child of :func:`run_isolated` calls it first thing, instead of the parent passing a
    ``preexec_fn``: that is unsafe when the parent has threads (the test suite runs two children
    at once from a thread pool), and every input still runs under the limit.
    """
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort must not write a core file


def _death(returncode: int | None, hang: str) -> str:
    if hang:
        return f"process death: {hang}"
    assert returncode is not None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"process death: killed by {name}"
    return f"process death: exit status {returncode} without a report"


def run_isolated(
    target: str,
    runs: int,
    seed: int,
    *,
    memory_limit_bytes: int = 512 * 2**20,
    timeout_s: float | None = None,
    time_limit_s_per_input: float = 1.0,
    hang_timeout_s: float | None = None,
    corpus_dir: Path | None = DEFAULT_CORPUS_DIR,
    plugins: Sequence[Path] = (),
) -> dict[str, Any]:
    """:func:`run` in a child process under an address-space limit (``RLIMIT_AS``, which the
    child sets on itself before its first input: :func:`limit_memory`).

    A runaway allocation becomes a ``MemoryError`` (a finding) or kills the child; a child that
    dies, or makes no progress for ``hang_timeout_s`` (default ``max(10, 10 x`` the per-input
    limit``)``), or outlives ``timeout_s`` (default ``120 + runs / 50`` s), is reported as a
    finding with the input it was executing, read from a mailbox file it writes before each input.
    ``plugins`` are Python files the child loads first (they may register targets).
    Returns the child's stats plus ``process_deaths``, ``returncode``, ``wall_s`` and ``command``.
    """
    timeout = 120 + runs / 50 if timeout_s is None else timeout_s
    hang_s = max(10.0, 10 * time_limit_s_per_input) if hang_timeout_s is None else hang_timeout_s
    args = ["--target", target, "--runs", str(runs), "--seed", str(seed)]
    args += ["--time-limit", str(time_limit_s_per_input)]
    args += ["--memory-limit-bytes", str(memory_limit_bytes)]
    args += ["--corpus-dir", str(corpus_dir) if corpus_dir is not None else ""]
    for plugin in plugins:
        args += ["--plugin", str(plugin)]
    command = [sys.executable, "-m", "memmesh.fuzz", *args]
    shown = "PYTHONHASHSEED=0 " + shlex.join(command)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memmesh-fuzz-") as tmp:
        box = Path(tmp) / "mailbox"
        Mailbox.create(box)
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, "--json", "--input-file", str(box)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        stdout, stderr, hang = _supervise(proc, box, hang_s=hang_s, deadline=started + timeout)
        count, last_input = Mailbox.read(box)
    report = _parse_report(stdout)
    stderr_tail = stderr.decode("utf-8", "replace")[-_TAIL_CHARS:]
    if report is None or hang:
        report = _dead_report(target, seed, count)
        report["findings"].append(
            {
                "input_hex": last_input.hex() if count else "",
                "error": _death(proc.returncode, hang)
                + ("" if count else " (before its first input)"),
                "traceback": stderr_tail,
            }
        )
        report["findings_total"] = len(report["findings"])
        report["process_deaths"] = 1
    else:
        report["process_deaths"] = 0
    report["returncode"] = proc.returncode
    report["wall_s"] = round(time.monotonic() - started, 3)
    report["command"] = shown
    report["stderr_tail"] = stderr_tail
    return report


def _supervise(
    proc: subprocess.Popen[bytes], box: Path, *, hang_s: float, deadline: float
) -> tuple[bytes, bytes, str]:
    """Wait for the child, collecting its output; kill it if it stops making progress (the
    mailbox count stays still for ``hang_s``) or outlives ``deadline``. Returns stdout, stderr
    and why it was killed ("" if it was not)."""
    poll_s = min(1.0, hang_s / 4)
    last_count, last_progress = 0, time.monotonic()
    while True:  # bounded: each pass returns, or moves towards the hang limit or the deadline
        try:
            stdout, stderr = proc.communicate(timeout=poll_s)
        except subprocess.TimeoutExpired:
            pass
        else:
            return stdout, stderr, ""
        now, count = time.monotonic(), Mailbox.count(box)
        if count != last_count:
            last_count, last_progress = count, now
        why = ""
        if now - last_progress > hang_s:
            why = f"no progress for {hang_s:.0f} s (a hang) at input {count}"
        elif now > deadline:
            why = f"the run outlived its deadline at input {count}"
        if why:
            proc.kill()
            stdout, stderr = proc.communicate()
            return stdout, stderr, why


def _parse_report(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return None
    try:
        report = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) else None


def _dead_report(target: str, seed: int, count: int) -> dict[str, Any]:
    return {
        "target": target,
        "seed": seed,
        "runs": max(0, count - 1),
        "accepted": 0,
        "rejected": {},
        "reasons_hit": [],
        "findings": [],
        "findings_total": 0,
        "slowest_s": 0.0,
        "max_rss_kib": 0,
        "inputs_per_s": 0.0,
    }


# -- command line ---------------------------------------------------------------------------------


def _load_plugin(path: Path, index: int) -> None:
    spec = importlib.util.spec_from_file_location(f"memmesh_fuzz_plugin_{index}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load fuzz plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def _save_findings(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write each finding's input as ``<folder>/<sha256 prefix>``, the corpus naming."""
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for finding in report["findings"]:
        data = bytes.fromhex(finding["input_hex"])
        path = folder / hashlib.sha256(data).hexdigest()[:16]
        path.write_bytes(data)
        saved.append(path)
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memmesh.fuzz", description="Fuzz one memmesh decoder."
    )
    parser.add_argument("--target", help="one of --list")
    parser.add_argument("--runs", type=int, default=10_000, help="inputs, the corpus first")
    parser.add_argument("--seed", type=int, help="default: random (printed)")
    parser.add_argument("--json", action="store_true", help="print the stats as one JSON line")
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds per input")
    parser.add_argument("--corpus-dir", default=None, help=f"default: {DEFAULT_CORPUS_DIR}")
    parser.add_argument("--memory-limit-bytes", type=int, help="RLIMIT_AS for this process")
    parser.add_argument("--input-file", type=Path, help="mailbox file (run_isolated)")
    parser.add_argument("--plugin", type=Path, action="append", default=[])
    parser.add_argument("--findings-dir", type=Path, help="save finding inputs here")
    parser.add_argument("--replay", type=Path, nargs="+", help="run exactly these input files")
    parser.add_argument("--list", action="store_true", help="list the targets")
    args = parser.parse_args(argv)
    if args.memory_limit_bytes:
        limit_memory(args.memory_limit_bytes)
    for i, plugin in enumerate(args.plugin):
        _load_plugin(plugin, i)
    if args.list:
        print("\n".join(sorted(TARGETS)))
        return 0
    if not args.target:
        parser.error("--target is required")
    corpus_dir = _corpus_dir_arg(args.corpus_dir)
    if args.replay:
        report = replay(args.target, [p.read_bytes() for p in args.replay], corpus_dir)
    else:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
        mailbox = Mailbox(args.input_file) if args.input_file else None
        try:
            report = run(
                args.target,
                args.runs,
                seed,
                time_limit_s_per_input=args.time_limit,
                corpus_dir=corpus_dir,
                mailbox=mailbox,
            )
        finally:
            if mailbox is not None:
                mailbox.close()
    if args.findings_dir and report["findings"]:
        _save_findings(report, args.findings_dir)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(report)
    return 1 if report["findings"] else 0


def _corpus_dir_arg(value: str | None) -> Path | None:
    if value is None:
        env = os.environ.get("MEMMESH_FUZZ_CORPUS")
        return Path(env) if env else DEFAULT_CORPUS_DIR
    return Path(value) if value else None


def _print_report(report: dict[str, Any]) -> None:
    for finding in report["findings"]:
        print(f"FINDING {finding['error']}\n  input {finding['input_hex'][:400]}")
        if finding.get("traceback"):
            print(finding["traceback"])
    brief = {k: v for k, v in report.items() if k != "findings"}
    print(json.dumps(brief, indent=2, sort_keys=True))


if __name__ == "__main__":
    # Run the package module, not this ``__main__`` copy, so that plugins registering targets
    # through ``memmesh.fuzz`` register them where ``main`` looks.
    raise SystemExit(importlib.import_module("memmesh.fuzz").main())
