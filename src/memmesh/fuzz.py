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

Run one target in this process with :func:`run`, or in a child process under an address-space
limit with :func:`run_isolated`, which also reports the input a dying child was executing::

    python -m memmesh.fuzz --target envelope --runs 100000 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import mmap
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pycrdt

from .admission import Admission, Outcome, Status
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
from .crypto import SIGNATURE_BYTES, SigningKey
from .envelope import (
    SIGNATURE_DOMAIN,
    Envelope,
    decode_envelope,
    encode_body,
    open_envelope,
    seal,
)
from .errors import Reason, Rejected
from .ids import ZERO_ID, tagged_hash
from .membership import (
    GENESIS_DOMAIN,
    MEMBERSHIP_NAMESPACE,
    Role,
    decode_genesis,
    make_genesis,
    parse_op,
)
from .merkle import merkle_root
from .store import MemoryStore
from .testing import MeshFixture, seeded_key
from .wire import pack_u32, pack_u64, unpack_u32, unpack_u64
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
        if held != _main_branch_keys(admission):
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


def _main_branch_keys(admission: Admission) -> set[str]:
    """The map keys the live document must hold: every claim of every envelope on its log's
    main branch that pycrdt integrated (side branches and failed envelopes never reach it)."""
    keys: set[str] = set()
    for log, ids in admission.logs.items():
        client = client_id(log.author, log.epoch)
        for env_id in ids:
            record = admission.records[env_id]
            if not record.failed:
                keys.update(item_key(client, claim.id) for claim in record.claims)
    return keys


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


for _name, _factory in (
    ("envelope", _envelope_target),
    ("grammar", _grammar_target),
    ("claim", _claim_target),
    ("canonical_json", _canonical_json_target),
    ("genesis", _genesis_target),
    ("membership_op", _membership_op_target),
    ("admission", _admission_target),
    ("messages", _messages_target),
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
