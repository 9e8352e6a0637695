"""The attestation statement: what a node signs about what it knew (DESIGN §7).

A :class:`Statement` holds only replicated facts, each a pure function of the envelopes the node
held (never detection times, local receipts or anything read from a clock):

- ``mesh``, ``signer`` (the node's public key), ``seq`` (>= 1, the signer's own attestation
  counter) and ``prev``: the id of the signer's previous attestation, **32 zero bytes for seq 1**
  (an explicit value, not ``null``, so the field always has one type and one width);
- ``hlc``: the caller's hybrid logical clock timestamp (``physical_ms << 16 | logical``, as
  :mod:`memmesh.hlc` packs it), encoded as the pair ``[physical_ms, logical]`` because the packed
  64-bit value does not fit the canonical JSON integer range (``|n| <= 2**53``);
- ``logs``: one entry per log of the frontier, sorted by (author bytes, epoch): ``author``,
  ``epoch``, ``size`` (the number of envelopes on the log, which is the seq of its head),
  ``head`` (the head envelope id) and ``root`` (the RFC 6962 root of the log tree: the ids of the
  envelopes on the log, in seq order). This list *is* the frontier, with each log's root;
- ``evidence``: the sorted ids of the envelopes held off their log (both branches of an
  equivocating log, from its fork on). They are part of the attested set: they decide which
  logs are excluded from a fork on, so the claims digest depends on them, and a bundle carries
  them;
- ``top_root``: the root of the top tree, whose leaves are :func:`log_leaf` of each entry in
  order: ``author (32) || epoch (u64) || size (u64) || root (32)``, 80 bytes;
- ``claims_digest``: :func:`memmesh.admission.claims_digest` of the live claims;
- ``resolution_digest`` and ``policies``: see :mod:`memmesh.attest.build` (the digest of every
  subject's resolved state, and the rule names and code versions that decided its conflicts);
- ``counts``: ``envelopes`` (on-log plus evidence), ``claims`` (claims carried by those
  envelopes, counted per envelope), ``live_claims`` (distinct live claim ids), ``subjects`` and
  ``conflicts_open`` (subjects with two or more live claims that no policy settled).

**Encoding**: RFC 8785 canonical JSON (:mod:`memmesh.canonical`), bytes as lowercase hex, every
member always present. The attestation id is ``tagged_hash(b"attestation-id/v1", payload)``.

**Decoding** (:func:`decode_statement`) is strict and bounded: at most
:data:`STATEMENT_BYTES_MAX` bytes, exactly canonical bytes, exactly the known members with the
right types and ranges, sorted lists without duplicates, at most :data:`LOGS_MAX` logs and
:data:`EVIDENCE_MAX` evidence ids. Refusals raise :class:`StatementError` with a code
(``too_large``, ``bad_json``, ``not_canonical``, ``missing_field``, ``unknown_field``,
``wrong_type``, ``bad_value``, ``not_sorted``, ``count_exceeds_limit``). Relations between fields
(``prev`` zero exactly for seq 1, the top root, the counts) are not decoding matters: the verifier
checks them and reports ``chain``, ``top_root`` or ``counts:<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..canonical import JSON_INT_MAX, JsonValue, canonical_bytes, parse_canonical
from ..errors import Rejected
from ..hlc import hlc_pack, hlc_unpack
from ..ids import HASH_BYTES, Head, LogId, short_id, tagged_hash
from ..merkle import merkle_root
from ..wire import pack_u64
from .errors import StatementError

__all__ = [
    "ATTESTATION_ID_TAG",
    "EVIDENCE_MAX",
    "LOGS_MAX",
    "POLICIES_MAX",
    "STATEMENT_BYTES_MAX",
    "STATEMENT_VERSION",
    "Counts",
    "LogEntry",
    "PolicyVersion",
    "Statement",
    "decode_statement",
    "log_label",
    "log_leaf",
    "top_root_of",
]

STATEMENT_VERSION = 1
ATTESTATION_ID_TAG = b"attestation-id/v1"
STATEMENT_BYTES_MAX = 4 << 20
"""4 MiB: room for ten thousand logs and as many evidence ids."""
LOGS_MAX = 10_000
EVIDENCE_MAX = 10_000
POLICIES_MAX = 256
EPOCH_MAX = (1 << 32) - 1
HLC_MAX = (1 << 64) - 1
_RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_MEMBERS = frozenset(
    {
        "v", "mesh", "signer", "seq", "prev", "hlc", "logs", "evidence", "top_root",
        "claims_digest", "resolution_digest", "policies", "counts",
    }
)  # fmt: skip
_LOG_MEMBERS = frozenset({"author", "epoch", "size", "head", "root"})
_POLICY_MEMBERS = frozenset({"name", "version"})
_COUNT_MEMBERS = ("envelopes", "claims", "live_claims", "subjects", "conflicts_open")


def log_label(log: LogId) -> str:
    """How reason codes and reports name a log: full author hex, ``@``, epoch."""
    return f"{log.author.hex()}@{log.epoch}"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log of the frontier with the root of its tree."""

    author: bytes
    epoch: int
    size: int
    head: bytes
    root: bytes

    @property
    def log(self) -> LogId:
        return LogId(self.author, self.epoch)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "author": self.author.hex(),
            "epoch": self.epoch,
            "size": self.size,
            "head": self.head.hex(),
            "root": self.root.hex(),
        }


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """A rule that decided some conflict, and the version of the code that ran it (0: the rule
    was not installed on the signer, so its conflicts escalated as ``unknown_rule``)."""

    name: str
    version: int


@dataclass(frozen=True, slots=True)
class Counts:
    envelopes: int
    claims: int
    live_claims: int
    subjects: int
    conflicts_open: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNT_MEMBERS}


def log_leaf(entry: LogEntry) -> bytes:
    """The top tree's leaf for a log: ``author || epoch u64 || size u64 || root`` (80 bytes)."""
    return entry.author + pack_u64(entry.epoch) + pack_u64(entry.size) + entry.root


def top_root_of(entries: Sequence[LogEntry]) -> bytes:
    """The top tree's root over the log entries, in the given (sorted) order."""
    return merkle_root([log_leaf(e) for e in entries])


@dataclass(frozen=True, slots=True)
class Statement:
    """A decoded or built attestation statement; always valid in shape (see module doc)."""

    mesh_id: bytes
    signer: bytes
    seq: int
    prev: bytes
    hlc: int
    logs: tuple[LogEntry, ...]
    evidence: tuple[bytes, ...]
    top_root: bytes
    claims_digest: bytes
    resolution_digest: bytes
    policies: tuple[PolicyVersion, ...]
    counts: Counts

    def __post_init__(self) -> None:
        _check(self)

    def to_json(self) -> dict[str, JsonValue]:
        physical, logical = hlc_unpack(self.hlc)
        counts: dict[str, JsonValue] = dict(self.counts.as_dict())
        return {
            "v": STATEMENT_VERSION,
            "mesh": self.mesh_id.hex(),
            "signer": self.signer.hex(),
            "seq": self.seq,
            "prev": self.prev.hex(),
            "hlc": [physical, logical],
            "logs": [entry.to_json() for entry in self.logs],
            "evidence": [e.hex() for e in self.evidence],
            "top_root": self.top_root.hex(),
            "claims_digest": self.claims_digest.hex(),
            "resolution_digest": self.resolution_digest.hex(),
            "policies": [{"name": p.name, "version": p.version} for p in self.policies],
            "counts": counts,
        }

    def to_bytes(self) -> bytes:
        """The canonical payload: what DSSE signs and what the id hashes."""
        return canonical_bytes(self.to_json())

    @property
    def id(self) -> bytes:
        return tagged_hash(ATTESTATION_ID_TAG, self.to_bytes())

    @property
    def frontier(self) -> list[tuple[LogId, Head]]:
        """The frontier in :meth:`memmesh.admission.Admission.frontier`'s form."""
        return [(e.log, Head(e.size, e.head)) for e in self.logs]

    def entry(self, log: LogId) -> LogEntry | None:
        for entry in self.logs:
            if entry.log == log:
                return entry
        return None

    def index_of(self, log: LogId) -> int | None:
        for i, entry in enumerate(self.logs):
            if entry.log == log:
                return i
        return None

    def __repr__(self) -> str:
        return (
            f"Statement({short_id(self.id)} signer={short_id(self.signer)} seq={self.seq} "
            f"logs={len(self.logs)} live={self.counts.live_claims})"
        )


def _bad(code: str, detail: str) -> StatementError:
    return StatementError(code, detail)


def _is_uint(value: object, maximum: int = JSON_INT_MAX) -> bool:
    return type(value) is int and 0 <= value <= maximum


def _check_hash(value: object, name: str) -> None:
    if type(value) is not bytes or len(value) != HASH_BYTES:
        raise _bad("wrong_type", f"{name} must be {HASH_BYTES} bytes")


def _check(s: Statement) -> None:
    """Shape rules shared by building and decoding."""
    for name in ("mesh_id", "signer", "prev", "top_root", "claims_digest", "resolution_digest"):
        _check_hash(getattr(s, name), name)
    if not _is_uint(s.seq) or s.seq == 0:
        raise _bad("bad_value", f"seq {s.seq!r} must be an integer in 1..2^53")
    if not _is_uint(s.hlc, HLC_MAX):
        raise _bad("bad_value", "hlc must be a 64-bit unsigned integer")
    for what, items, limit in (
        ("logs", s.logs, LOGS_MAX),
        ("evidence ids", s.evidence, EVIDENCE_MAX),
        ("policies", s.policies, POLICIES_MAX),
    ):
        if len(items) > limit:
            raise _bad("count_exceeds_limit", f"{len(items)} {what} exceed {limit}")
    _check_logs(s.logs)
    for i, env_id in enumerate(s.evidence):
        _check_hash(env_id, "evidence")
        if i and s.evidence[i - 1] >= env_id:
            raise _bad("not_sorted", "evidence ids must be sorted without duplicates")
    _check_policies(s.policies)
    for name in _COUNT_MEMBERS:
        if not _is_uint(getattr(s.counts, name)):
            raise _bad("bad_value", f"counts.{name} must be a non-negative integer")


def _check_logs(logs: Sequence[LogEntry]) -> None:
    previous: LogId | None = None
    for entry in logs:
        _check_hash(entry.author, "logs.author")
        _check_hash(entry.head, "logs.head")
        _check_hash(entry.root, "logs.root")
        if not _is_uint(entry.epoch, EPOCH_MAX) or entry.epoch == 0:
            raise _bad("bad_value", "logs.epoch must be in 1..2^32-1")
        if not _is_uint(entry.size) or entry.size == 0:
            raise _bad("bad_value", "logs.size must be in 1..2^53 (a log holds its head)")
        if previous is not None and entry.log <= previous:
            raise _bad("not_sorted", "logs must be sorted by (author, epoch) without duplicates")
        previous = entry.log


def _check_policies(policies: Sequence[PolicyVersion]) -> None:
    for i, policy in enumerate(policies):
        if type(policy.name) is not str or not _RULE_NAME_RE.fullmatch(policy.name):
            raise _bad("bad_value", "policies.name must be a rule name")
        if not _is_uint(policy.version):
            raise _bad("bad_value", "policies.version must be an integer >= 0")
        if i and (policies[i - 1].name, policies[i - 1].version) >= (policy.name, policy.version):
            raise _bad("not_sorted", "policies must be sorted by (name, version), unique")


# -- decoding ---------------------------------------------------------------------------------


def decode_statement(data: bytes) -> Statement:
    """Decode a statement payload strictly (see the module doc); ``StatementError`` if not."""
    data = bytes(data)
    if len(data) > STATEMENT_BYTES_MAX:
        raise _bad("too_large", f"statement of {len(data)} bytes exceeds {STATEMENT_BYTES_MAX}")
    try:
        doc = parse_canonical(data, what="statement", bytes_max=STATEMENT_BYTES_MAX)
    except Rejected as exc:
        raise _bad(exc.reason.value, exc.detail) from None
    obj = _object(doc, _MEMBERS, "statement")
    if obj["v"] != STATEMENT_VERSION or type(obj["v"]) is not int:
        raise _bad("bad_value", f"statement version {obj['v']!r}, expected {STATEMENT_VERSION}")
    hlc = obj["hlc"]
    if not (isinstance(hlc, list) and len(hlc) == 2):
        raise _bad("wrong_type", "hlc must be [physical_ms, logical]")
    physical, logical = hlc
    if not (_is_uint(physical, (1 << 48) - 1) and _is_uint(logical, (1 << 16) - 1)):
        raise _bad("bad_value", "hlc must be [physical_ms < 2^48, logical < 2^16]")
    assert isinstance(physical, int) and isinstance(logical, int)
    counts_obj = _object(obj["counts"], frozenset(_COUNT_MEMBERS), "counts")
    return Statement(
        mesh_id=_hex(obj["mesh"], "mesh"),
        signer=_hex(obj["signer"], "signer"),
        seq=_int(obj["seq"], "seq"),
        prev=_hex(obj["prev"], "prev"),
        hlc=hlc_pack(physical, logical),
        logs=tuple(_log(item) for item in _list(obj["logs"], "logs", LOGS_MAX)),
        evidence=tuple(
            _hex(item, "evidence") for item in _list(obj["evidence"], "evidence", EVIDENCE_MAX)
        ),
        top_root=_hex(obj["top_root"], "top_root"),
        claims_digest=_hex(obj["claims_digest"], "claims_digest"),
        resolution_digest=_hex(obj["resolution_digest"], "resolution_digest"),
        policies=tuple(_policy(item) for item in _list(obj["policies"], "policies", POLICIES_MAX)),
        counts=Counts(*(_int(counts_obj[name], f"counts.{name}") for name in _COUNT_MEMBERS)),
    )


def _object(value: JsonValue, members: frozenset[str], what: str) -> dict[str, JsonValue]:
    if not isinstance(value, dict):
        raise _bad("wrong_type", f"{what} must be a JSON object")
    missing = sorted(members - set(value))
    if missing:
        raise _bad("missing_field", f"{what} lacks {', '.join(missing)}")
    unknown = sorted(set(value) - members)
    if unknown:
        raise _bad("unknown_field", f"{what} has unknown members {', '.join(unknown)[:200]}")
    return value


def _list(value: JsonValue, what: str, limit: int) -> list[JsonValue]:
    if not isinstance(value, list):
        raise _bad("wrong_type", f"{what} must be a list")
    if len(value) > limit:
        raise _bad("count_exceeds_limit", f"{what} holds {len(value)} items, at most {limit}")
    return value


def _hex(value: JsonValue, what: str) -> bytes:
    if not isinstance(value, str):
        raise _bad("wrong_type", f"{what} must be a hex string")
    if not _HEX_RE.fullmatch(value):
        raise _bad("bad_value", f"{what} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _int(value: JsonValue, what: str) -> int:
    if type(value) is not int:
        raise _bad("wrong_type", f"{what} must be an integer")
    return value


def _log(value: JsonValue) -> LogEntry:
    obj = _object(value, _LOG_MEMBERS, "logs item")
    return LogEntry(
        author=_hex(obj["author"], "logs.author"),
        epoch=_int(obj["epoch"], "logs.epoch"),
        size=_int(obj["size"], "logs.size"),
        head=_hex(obj["head"], "logs.head"),
        root=_hex(obj["root"], "logs.root"),
    )


def _policy(value: JsonValue) -> PolicyVersion:
    obj = _object(value, _POLICY_MEMBERS, "policies item")
    name: Any = obj["name"]
    if not isinstance(name, str):
        raise _bad("wrong_type", "policies.name must be a string")
    return PolicyVersion(name=name, version=_int(obj["version"], "policies.version"))
