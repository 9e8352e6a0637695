"""Claims: the immutable, agent-signed memory entries carried inside envelopes (DESIGN §5).

Only the structure lives here: canonical bytes, id, signature, bounds. What types, ``supersedes``
and policies *mean* belongs to the memory model.

A claim's bytes (the one binary value of its Yjs item) are::

    version u8 (=1) | body_len u32 | body (canonical JSON, RFC 8785 subset) | signature 64

The signature is Ed25519 by the claim's ``agent`` key over ``CLAIM_SIGNATURE_DOMAIN + body``, so
attribution survives a compromised node. The claim id is ``tagged_hash(b"claim-id/v1", bytes)``
over all of it. The body is a JSON object with exactly the members of :data:`_MEMBERS`; absent
optional values are ``null`` or ``[]``, never missing, so one claim has one encoding.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .canonical import (
    JSON_INT_MAX,
    JsonValue,
    canonical_bytes,
    check_json,
    encode_checked,
    is_nfc,
    parse_canonical,
)
from .crypto import SIGNATURE_BYTES, SigningKey, verify
from .errors import Reason, Rejected
from .ids import short_id, tagged_hash
from .wire import Reader

__all__ = [
    "CLAIM_BYTES_MAX",
    "CLAIM_ID_TAG",
    "CLAIM_SIGNATURE_DOMAIN",
    "CONFIDENCE_MAX",
    "Claim",
    "decode_claim",
    "make_claim",
    "signature_ok",
]

_T = TypeVar("_T")
CLAIM_VERSION = 1
CLAIM_SIGNATURE_DOMAIN = b"memmesh/claim/v1\x00"
CLAIM_ID_TAG = b"claim-id/v1"
CLAIM_BYTES_MAX = 64 * 1024
CONFIDENCE_MAX = 10_000
"""Confidence is in basis points: 10,000 is certainty. Integers, so replicas agree on sums."""
NAMESPACE_LABELS_MAX = 16
LABEL_BYTES_MAX = 128
KEY_BYTES_MAX = 512
SOURCE_BYTES_MAX = 1024
REFS_MAX = 64
_TYPE_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_HEX_ID_RE = re.compile(r"[0-9a-f]{64}")
_FRAME_BYTES = 1 + 4 + SIGNATURE_BYTES
_MEMBERS = frozenset(
    {
        "v", "mesh", "agent", "aseq", "hlc", "ns", "key", "type", "value", "valid_at",
        "invalid_at", "source", "derived_from", "based_on", "confidence", "supersedes",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    """A decoded, signature-checked claim. ``raw`` is its exact bytes, ``id`` their tagged hash.

    The bytes are held where they already are: a claim decoded from an envelope points into the
    envelope's bytes (``held`` and the offset ``at``) rather than keeping a copy of its own, so
    a node holding 100,000 claims keeps their bytes once, not twice; ``raw`` slices them out
    when asked.
    """

    mesh_id: bytes
    agent: bytes
    aseq: int
    hlc_packed: int = field(repr=False)
    """``physical << 16 | logical`` (see :attr:`hlc`): one int per claim, not a tuple of two."""
    namespace: tuple[str, ...]
    key: str
    type: str
    value: JsonValue
    valid_at: int | None
    invalid_at: int | None
    source: str | None
    derived_from: tuple[bytes, ...]
    based_on: tuple[bytes, ...]
    confidence: int | None
    supersedes: tuple[bytes, ...]
    id: bytes
    held: bytes | Callable[[], bytes] = field(repr=False, compare=False)
    """The bytes holding this claim's: its own, or its envelope's (see ``at``); or, for a
    stored envelope whose bytes a node does not keep in memory, what reads them again."""
    at: int = field(default=0, repr=False, compare=False)
    """Where this claim's bytes begin in ``held``."""

    @property
    def raw(self) -> bytes:
        """The claim's exact bytes (a slice of ``held`` unless it holds exactly these)."""
        held, at = self.held, self.at
        if not isinstance(held, bytes):
            held = held()
        end = at + _FRAME_BYTES + int.from_bytes(held[at + 1 : at + 5], "big")
        return held if at == 0 and end == len(held) else held[at:end]

    def detach(self, read: Callable[[], bytes]) -> None:
        """Read this claim's bytes with ``read`` from now on, instead of holding them: ``read``
        returns the bytes held now (its envelope's, from the store). In place, as
        :meth:`move_into`: only where the bytes are kept changes."""
        object.__setattr__(self, "held", read)

    def move_into(self, held: bytes, at: int) -> None:
        """Hold this claim's bytes at offset ``at`` of ``held`` from now on: for a local write,
        whose envelope has just been built to carry exactly ``raw`` there. Only where the bytes
        are kept changes (not ``raw``, nothing compared or hashed), so the claim stays the same
        value; done in place because a copy (``dataclasses.replace``) costs 4 us a claim on the
        write path.
        ``ValueError`` if ``held`` does not carry ``raw`` at ``at``."""
        if not held.startswith(self.raw, at):
            raise ValueError("move_into: the claim's bytes are not where `held` says")
        object.__setattr__(self, "held", held)
        object.__setattr__(self, "at", at)

    @property
    def hlc(self) -> tuple[int, int]:
        """(physical ms, logical): the hybrid logical clock the author gave the claim."""
        packed = self.hlc_packed
        return packed >> 16, packed & 0xFFFF

    @property
    def subject(self) -> tuple[tuple[str, ...], str]:
        return self.namespace, self.key

    def __repr__(self) -> str:
        return (
            f"Claim({short_id(self.id)} {'/'.join(self.namespace)}:{self.key} {self.type} "
            f"by {short_id(self.agent)}#{self.aseq})"
        )


def make_claim(
    agent_key: SigningKey,
    *,
    mesh_id: bytes,
    aseq: int,
    hlc: tuple[int, int],
    namespace: Sequence[str],
    key: str,
    type: str,
    value: Any,
    valid_at: int | None = None,
    invalid_at: int | None = None,
    source: str | None = None,
    derived_from: Sequence[bytes] = (),
    based_on: Sequence[bytes] = (),
    confidence: int | None = None,
    supersedes: Sequence[bytes] = (),
) -> Claim:
    """Build and sign a claim, checked as a peer's decoder checks it; id lists are sorted and
    deduplicated.

    Raises ``ValueError`` for a value outside canonical JSON and ``Rejected`` for anything else a
    peer would refuse, so a local writer gets a clear error instead of a claim nobody accepts.
    """
    doc = {
        "v": CLAIM_VERSION,
        "mesh": mesh_id.hex(),
        "agent": agent_key.public_key.hex(),
        "aseq": aseq,
        "hlc": list(hlc),
        "ns": list(namespace),
        "key": key,
        "type": type,
        "value": value,
        "valid_at": valid_at,
        "invalid_at": invalid_at,
        "source": source,
        "derived_from": _ref_hexes(derived_from),
        "based_on": _ref_hexes(based_on),
        "confidence": confidence,
        "supersedes": _ref_hexes(supersedes),
    }
    plain = _plain(doc)
    if plain:  # only the caller's value can still be outside the subset
        check_json(value)
        body = _plain_body(doc)
    else:  # the general check, with its precise errors
        body = canonical_bytes(doc)
    raw = b"".join(
        (
            _CLAIM_FRAME_VERSION,
            len(body).to_bytes(4, "big"),
            body,
            agent_key.sign(CLAIM_SIGNATURE_DOMAIN, body),
        )
    )
    if len(raw) > CLAIM_BYTES_MAX:
        raise Rejected(Reason.TOO_LARGE, f"claim of {len(raw)} bytes exceeds {CLAIM_BYTES_MAX}")
    # The body is canonical by construction and the signature is ours: check the fields as a
    # peer will, on the values a peer's decoder would see. When every member is of its exact
    # JSON type those are the values built above, except the value itself, which is decoded
    # again from its bytes (the last member of the body): the claim must not share a mutable
    # object with the caller, and must hold what every replica holds.
    if plain:
        known = (mesh_id, agent_key.public_key)
        fields = _check_body(
            doc, known if builtins.type(mesh_id) is bytes and len(mesh_id) == 32 else None
        )
        if builtins.type(value) not in _IMMUTABLE_SCALARS:
            start = body.index(_VALUE_MEMBER) + len(_VALUE_MEMBER)
            fields["value"] = _shared_names(_loads(body[start:-1].decode()))
    else:
        fields = _check_body(_loads(body.decode()))
        fields["value"] = _shared_names(fields["value"])
    return _checked_claim(fields, tagged_hash(CLAIM_ID_TAG, raw), raw)


_CLAIM_FRAME_VERSION = bytes((CLAIM_VERSION,))
_VALUE_MEMBER = b'"value":'
"""``value`` sorts last among the members, and no earlier member can hold these bytes (inside a
JSON string a quote is escaped), so the value's bytes are what follows their first occurrence."""
_IMMUTABLE_SCALARS = frozenset({str, int, bool, builtins.type(None)})
_loads = json.JSONDecoder().decode


def _plain_body(doc: dict[str, Any]) -> bytes:
    """The canonical bytes of a body that passed :func:`_plain` and whose value passed
    :func:`check_json`: what ``encode_checked(doc)`` gives (a property test holds them equal),
    in about half its time. The member names are fixed ASCII in code point order
    (:data:`_MEMBER_ORDER`), so only the value can need the UTF-16 ordering, and
    :func:`encode_checked` sees to it; every other member is an exact ``int``, ``None``, or an
    NFC string escaped by the very function the encoder uses."""
    value = doc["value"]
    kind = builtins.type(value)
    if kind is int:
        value_text = repr(value)
    elif kind is str:
        value_text = _json_string(value)
    else:
        value_text = encode_checked(value).decode("utf-8")
    hlc, source = doc["hlc"], doc["source"]
    text = (
        f'{{"agent":"{doc["agent"]}","aseq":{doc["aseq"]!r},'
        f'"based_on":{_hex_list(doc["based_on"])},"confidence":{_opt_int(doc["confidence"])},'
        f'"derived_from":{_hex_list(doc["derived_from"])},"hlc":[{hlc[0]!r},{hlc[1]!r}],'
        f'"invalid_at":{_opt_int(doc["invalid_at"])},"key":{_json_string(doc["key"])},'
        f'"mesh":"{doc["mesh"]}","ns":[{",".join(map(_json_string, doc["ns"]))}],'
        f'"source":{"null" if source is None else _json_string(source)},'
        f'"supersedes":{_hex_list(doc["supersedes"])},"type":{_json_string(doc["type"])},'
        f'"v":{doc["v"]!r},"valid_at":{_opt_int(doc["valid_at"])},"value":{value_text}}}'
    )
    return text.encode("utf-8")


_MEMBER_ORDER = (
    "agent", "aseq", "based_on", "confidence", "derived_from", "hlc", "invalid_at", "key",
    "mesh", "ns", "source", "supersedes", "type", "v", "valid_at", "value",
)  # fmt: skip
"""The order :func:`_plain_body` writes the members in: sorted, as RFC 8785 wants."""
assert list(_MEMBER_ORDER) == sorted(_MEMBERS)
_json_string: Callable[[str], str] = json.encoder.encode_basestring
"""The JSON encoder's own string escaping with ``ensure_ascii=False`` (ECMAScript's)."""


def _opt_int(value: int | None) -> str:
    return "null" if value is None else repr(value)


def _hex_list(hexes: list[str]) -> str:
    """A sorted list of lowercase hex ids (:func:`_ref_hexes`): nothing in them to escape."""
    return "[" + ",".join(f'"{h}"' for h in hexes) + "]" if hexes else "[]"


def _ref_hexes(refs: Sequence[bytes]) -> list[str]:
    return sorted({ref.hex() for ref in refs}) if refs else []


def _plain(doc: dict[str, Any]) -> bool:
    """Every member but the value is of its exact JSON type (no ``str`` or ``int`` subclass, no
    tuple), every integer within the subset and every string in NFC: checking ``doc`` itself
    is then checking what a peer decodes, and only the value needs the canonical check."""
    for x in (doc["aseq"], *doc["hlc"], doc["valid_at"], doc["invalid_at"], doc["confidence"]):
        if x is not None and (type(x) is not int or not -JSON_INT_MAX <= x <= JSON_INT_MAX):
            return False
    source = doc["source"]
    for x in (doc["key"], doc["type"], *doc["ns"], *(() if source is None else (source,))):
        if type(x) is not str or not is_nfc(x):
            return False
    return True


def decode_claim(
    data: bytes,
    *,
    mesh_id: bytes | None = None,
    verify_signature: bool = True,
    held: tuple[bytes, int] | None = None,
    claim_id: bytes | None = None,
) -> Claim:
    """Decode and verify a claim's bytes; every refusal is ``Rejected`` with a reason code.

    ``verify_signature=False`` is for replaying this node's own store, whose claims were verified
    before they were committed (and whose records are checksummed); never for outside bytes.
    ``held``: (bytes, offset) where ``data`` also lies, for instance its envelope's bytes; the
    claim keeps those instead of ``data`` (which the caller may drop). ``claim_id``: the tagged
    hash of ``data``, when the caller has just computed it (the grammar checks every item's).
    """
    data = bytes(data)
    if len(data) > CLAIM_BYTES_MAX:
        raise Rejected(Reason.TOO_LARGE, f"claim of {len(data)} bytes exceeds {CLAIM_BYTES_MAX}")
    r = Reader(data, "claim")
    version = r.u8("version")
    if version != CLAIM_VERSION:
        raise Rejected(Reason.BAD_VERSION, f"claim version {version}, expected 1")
    body_len = r.u32("body_len")
    if body_len + SIGNATURE_BYTES != r.remaining:
        reason = (
            Reason.TRUNCATED
            if body_len + SIGNATURE_BYTES > r.remaining
            else (Reason.TRAILING_BYTES)
        )
        raise Rejected(reason, f"claim body_len {body_len} does not match its {len(data)} bytes")
    body = r.raw(body_len, "body")
    signature = r.raw(SIGNATURE_BYTES, "signature")
    fields = _body_fields(body)
    fields["value"] = _shared_names(fields["value"])
    if mesh_id is not None and fields["mesh_id"] != mesh_id:
        raise Rejected(Reason.WRONG_MESH, f"claim for mesh {short_id(fields['mesh_id'])}")
    if verify_signature and not verify(fields["agent"], CLAIM_SIGNATURE_DOMAIN, body, signature):
        raise Rejected(
            Reason.BAD_CLAIM_SIGNATURE, f"claim not signed by agent {short_id(fields['agent'])}"
        )
    if claim_id is None:
        claim_id = tagged_hash(CLAIM_ID_TAG, data)
    if held is None:
        return _checked_claim(fields, claim_id, data)
    buffer, at = held
    if not buffer.startswith(data, at):
        raise ValueError("decode_claim: the claim's bytes are not where `held` says")
    return _checked_claim(fields, claim_id, buffer, at)


def _checked_claim(fields: dict[str, Any], claim_id: bytes, held: bytes, at: int = 0) -> Claim:
    """``Claim(**fields, id=claim_id, held=held, at=at)`` for the fields :func:`_check_body`
    made, in half the time: a frozen dataclass's ``__init__`` calls ``object.__setattr__``
    once a field, where the slots' own setters are C calls. Every field is set (a test holds
    the result equal to the constructor's)."""
    claim: Claim = _new_object(Claim)
    for name, put in _BODY_FIELD_SETTERS:
        put(claim, fields[name])
    _set_id(claim, claim_id)
    _set_held(claim, held)
    _set_at(claim, at)
    return claim


_new_object = object.__new__
_SLOTS = {f.name: getattr(Claim, f.name).__set__ for f in dataclasses.fields(Claim)}
_set_id, _set_held, _set_at = _SLOTS.pop("id"), _SLOTS.pop("held"), _SLOTS.pop("at")
_BODY_FIELD_SETTERS: tuple[tuple[str, Callable[[Claim, Any], None]], ...] = tuple(_SLOTS.items())
del _SLOTS


def _body_fields(body: bytes) -> dict[str, Any]:
    """The checked fields of a claim body that is canonical JSON; ``Rejected`` otherwise.

    The common shape is read by one regular expression (:func:`_common_body_fields`, decision
    35), which only accepts; anything it does not take is decided by the general decoder,
    which names the reason, so a refusal has the same reason code either way."""
    if body.isascii():
        common = _common_body_fields(body)
        if common is not None:
            return common
    return _check_body(parse_canonical(body, what="claim body", bytes_max=CLAIM_BYTES_MAX))


def _common_body_fields(body: bytes) -> dict[str, Any] | None:
    """The fields of an ASCII body in the common shape, read by one regular expression: every
    string member of printable ASCII with nothing to escape, every integer member in plain
    decimal. What the expression matches is canonical JSON by construction (the members in
    order, no space, nothing escaped, no leading zero), except the value, which must encode
    back to its own bytes; the checks :func:`_check_body` makes that the expression cannot are
    made here. None: not in this shape, or failing a check; the general path then decides (and
    names the reason). A property test holds the two paths to the same decisions."""
    match = _COMMON_BODY.fullmatch(body)
    if match is None:
        return None
    (agent, aseq, based_on, confidence, derived_from, physical, logical, invalid_at, key, mesh,
     labels, source, supersedes, claim_type, valid_at, value) = match.groups()  # fmt: skip
    aseq_n, physical_n, logical_n = int(aseq), int(physical), int(logical)
    valid_n, invalid_n = _opt_decimal(valid_at), _opt_decimal(invalid_at)
    confidence_n = _opt_decimal(confidence)
    if (
        aseq_n == 0
        or aseq_n > JSON_INT_MAX
        or physical_n >= 1 << 48
        or logical_n >= 1 << 16
        or (valid_n is not None and valid_n > JSON_INT_MAX)
        or (invalid_n is not None and invalid_n > JSON_INT_MAX)
        or (valid_n is not None and invalid_n is not None and invalid_n <= valid_n)
        or (confidence_n is not None and confidence_n > CONFIDENCE_MAX)
    ):
        return None
    refs = (_common_refs(derived_from), _common_refs(based_on), _common_refs(supersedes))
    if None in refs:
        return None
    held_value = _common_value(value)
    if held_value is _NOT_COMMON:
        return None
    return {
        "mesh_id": _seen(_seen_ids, mesh, _hex_id),
        "agent": _seen(_seen_ids, agent, _hex_id),
        "aseq": aseq_n,
        "hlc_packed": physical_n << 16 | logical_n,
        "namespace": _seen(_seen_labels, labels, _labels),
        "key": key.decode(),
        "type": _seen(_seen_types, claim_type, bytes.decode),
        "value": held_value,
        "valid_at": valid_n,
        "invalid_at": invalid_n,
        "source": None if source == b"null" else source[1:-1].decode(),
        "derived_from": refs[0],
        "based_on": refs[1],
        "confidence": confidence_n,
        "supersedes": refs[2],
    }


def _seen(table: dict[bytes, Any], text: bytes, parse: Callable[[bytes], Any]) -> Any:
    """What ``text`` (a member's bytes) reads as, shared (:func:`_shared`), looked up when
    seen before: a mesh has few ids, namespaces and types. A table per kind, so equal bytes of
    two kinds never read as one another; bounded like the shared values."""
    held = table.get(text)
    if held is None:
        held = _shared(parse(text))
        if len(table) < _SHARED_MAX:
            table[text] = held
    return held


def _hex_id(text: bytes) -> bytes:
    return bytes.fromhex(text.decode())


def _labels(text: bytes) -> tuple[str, ...]:
    """The labels of a namespace list the expression matched: ``["a","b"]``."""
    return tuple(text[2:-2].decode().split('","'))


_seen_ids: dict[bytes, bytes] = {}
_seen_labels: dict[bytes, tuple[str, ...]] = {}
_seen_types: dict[bytes, str] = {}


def _opt_decimal(text: bytes) -> int | None:
    return None if text == b"null" else int(text)


def _common_refs(text: bytes | None) -> tuple[bytes, ...] | None:
    """The ids of a list the expression matched (None: not strictly increasing)."""
    if text is None:
        return ()
    refs = tuple(bytes.fromhex(h) for h in text[2:-2].decode().split('","'))
    if any(a >= b for a, b in itertools.pairwise(refs)):
        return None
    return refs


_NOT_COMMON = object()


def _common_value(text: bytes) -> Any:
    """A claim value from its canonical bytes (``_NOT_COMMON`` if they are not canonical)."""
    if _PLAIN_INT.fullmatch(text):
        number = int(text)
        return number if -JSON_INT_MAX <= number <= JSON_INT_MAX else _NOT_COMMON
    if _PLAIN_STRING.fullmatch(text):
        return text[1:-1].decode()
    try:
        value = _loads_integral(text.decode())
        check_json([value])  # its integers and depth, as a member's
        if encode_checked(value) == text:
            return value
    except (ValueError, RecursionError):
        pass
    return _NOT_COMMON


_TEXT = rb"[ !#-\[\]-~]"
"""Printable ASCII but the quote and the backslash: a JSON string of these is canonical as is."""
_UINT = rb"(0|[1-9][0-9]{0,15})"
_OPT_UINT = rb"(null|0|[1-9][0-9]{0,15})"
_HEX_ID = rb'"([0-9a-f]{64})"'
_HEX_IDS = rb'(?:\[\]|(\[(?:"[0-9a-f]{64}",){0,%d}"[0-9a-f]{64}"\]))' % (REFS_MAX - 1)
_COMMON_BODY = re.compile(
    rb'\{"agent":' + _HEX_ID
    + rb',"aseq":' + _UINT
    + rb',"based_on":' + _HEX_IDS
    + rb',"confidence":' + _OPT_UINT
    + rb',"derived_from":' + _HEX_IDS
    + rb',"hlc":\[' + _UINT + rb"," + _UINT + rb"\]"
    + rb',"invalid_at":' + _OPT_UINT
    + rb',"key":"(' + _TEXT + rb"{1,%d})" % KEY_BYTES_MAX + rb'"'
    + rb',"mesh":' + _HEX_ID
    + rb',"ns":(\[(?:"' + _TEXT + rb'{1,%d}",){0,%d}"' % (LABEL_BYTES_MAX, NAMESPACE_LABELS_MAX - 1)
    + _TEXT + rb'{1,%d}"\])' % LABEL_BYTES_MAX
    + rb',"source":(null|"' + _TEXT + rb'{1,%d}")' % SOURCE_BYTES_MAX
    + rb',"supersedes":' + _HEX_IDS
    + rb',"type":"([a-z][a-z0-9_.-]{0,63})"'
    + rb',"v":1'
    + rb',"valid_at":' + _OPT_UINT
    + rb',"value":(.*)\}',
    re.DOTALL,
)  # fmt: skip
"""A canonical claim body whose strings need no escaping (the members in RFC 8785 order)."""
_PLAIN_INT = re.compile(rb"0|-?[1-9][0-9]{0,15}")
_PLAIN_STRING = re.compile(rb'"' + _TEXT + rb'*"')


def _refuse_number(text: str) -> Any:
    raise ValueError(f"not an integer: {text[:20]}")


_loads_integral = json.JSONDecoder(parse_float=_refuse_number, parse_constant=_refuse_number).decode
"""JSON with floats, NaN and infinities refused; integers of any size (checked after)."""


def signature_ok(claim: Claim) -> bool:
    """Check the agent's signature of a decoded claim again, from its bytes (what a reader
    shows as the claim's signature status)."""
    raw = claim.raw  # once: it may be read from the store
    body = raw[_FRAME_BYTES - SIGNATURE_BYTES : len(raw) - SIGNATURE_BYTES]
    return verify(claim.agent, CLAIM_SIGNATURE_DOMAIN, body, raw[-SIGNATURE_BYTES:])


def _bad(detail: str) -> Rejected:
    return Rejected(Reason.BAD_CLAIM, detail)


def _check_body(doc: JsonValue, ids: tuple[bytes, bytes] | None = None) -> dict[str, Any]:
    """The fields of a claim body, each checked; ``Rejected(BAD_CLAIM)`` names the first wrong
    one. ``ids``: the mesh id and agent key the body's ``mesh`` and ``agent`` members were
    written from (32 bytes each), for a body :func:`make_claim` has just built with exactly
    the members and this version: those need no checking, nor the ids parsing back from hex."""
    if not isinstance(doc, dict):
        raise _bad("claim body is not a JSON object")
    if ids is None:  # a body built here has exactly the members, and this version
        if doc.keys() != _MEMBERS:
            members = set(doc)
            missing, extra = sorted(_MEMBERS - members), sorted(members - _MEMBERS)
            raise _bad(f"claim members differ: missing {missing}, unknown {extra}")
        if type(doc["v"]) is not int or doc["v"] != CLAIM_VERSION:  # `true == 1` in Python
            raise _bad(f"claim body version {doc['v']!r}")
    hlc = doc["hlc"]
    if not (isinstance(hlc, list) and len(hlc) == 2 and _is_uint(hlc[0]) and _is_uint(hlc[1])):
        raise _bad("hlc must be [physical_ms, logical]")
    physical, logical = hlc[0], hlc[1]
    assert isinstance(physical, int) and isinstance(logical, int)
    if physical >= 1 << 48 or logical >= 1 << 16:
        raise _bad("hlc out of range")
    valid_at, invalid_at = _opt_uint(doc, "valid_at"), _opt_uint(doc, "invalid_at")
    if valid_at is not None and invalid_at is not None and invalid_at <= valid_at:
        raise _bad("invalid_at must be after valid_at")
    confidence = _opt_uint(doc, "confidence")
    if confidence is not None and confidence > CONFIDENCE_MAX:
        raise _bad(f"confidence {confidence} above {CONFIDENCE_MAX} basis points")
    aseq = doc["aseq"]
    if not _is_uint(aseq) or aseq == 0:
        raise _bad("aseq must be an integer >= 1")
    claim_type = doc["type"]
    if not isinstance(claim_type, str) or not _TYPE_RE.fullmatch(claim_type):
        raise _bad(f"type {str(claim_type)[:70]!r} is not a type name")
    source = doc["source"]
    if source is not None and not _is_text(source, SOURCE_BYTES_MAX):
        raise _bad(f"source must be null or 1..{SOURCE_BYTES_MAX} bytes of text")
    key = doc["key"]
    if not _is_text(key, KEY_BYTES_MAX):
        raise _bad(f"key must be 1..{KEY_BYTES_MAX} bytes of text")
    mesh_id, agent = (_hex32(doc, "mesh"), _hex32(doc, "agent")) if ids is None else ids
    return {
        "mesh_id": _shared(mesh_id),
        "agent": _shared(agent),
        "aseq": aseq,
        "hlc_packed": physical << 16 | logical,
        "namespace": _shared(_namespace(doc["ns"])),
        "key": key,
        "type": _shared(claim_type),
        "value": doc["value"],
        "valid_at": valid_at,
        "invalid_at": invalid_at,
        "source": source,
        "derived_from": _refs(doc, "derived_from"),
        "based_on": _refs(doc, "based_on"),
        "confidence": confidence,
        "supersedes": _refs(doc, "supersedes"),
    }


def _is_uint(value: JsonValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= JSON_INT_MAX


def _is_text(value: JsonValue, bytes_max: int) -> bool:
    return isinstance(value, str) and 0 < len(value.encode()) <= bytes_max


def _opt_uint(doc: dict[str, JsonValue], name: str) -> int | None:
    value = doc[name]
    if value is None:
        return None
    if not _is_uint(value):
        raise _bad(f"{name} must be null or a non-negative integer")
    assert isinstance(value, int)
    return value


_SHARED_MAX = 1 << 16
_shared_values: dict[object, object] = {}


def _shared(value: _T, table: dict[Any, Any] = _shared_values, limit: int = _SHARED_MAX) -> _T:
    """One object for each mesh id, agent key, namespace and type seen (or for each value of
    another ``table``), so 100,000 claims by a few agents in a few namespaces hold a few copies,
    not 100,000. Bounded: past ``limit`` new values are simply not shared."""
    held = table.get(value)
    if held is not None:
        return held  # type: ignore[no-any-return]
    if len(table) < limit:
        table[value] = value
    return value


_member_names: dict[str, str] = {}


def _shared_names(value: JsonValue) -> JsonValue:
    """``value`` with the member names of its objects shared across claims: values of one
    schema repeat their names in every claim, and a decoder makes new strings for each. The
    names have their own bounded table, so a writer of many odd names cannot crowd the mesh
    ids, keys and namespaces out of theirs."""
    kind = builtins.type(value)
    if kind is dict:
        assert isinstance(value, dict)
        return {_shared(name, _member_names): _shared_names(item) for name, item in value.items()}
    if kind is list:
        assert isinstance(value, list)
        return [_shared_names(item) for item in value]
    if kind is str:  # a short string is often one of a few (a status, a tier, a unit)
        assert isinstance(value, str)
        if len(value) <= _SHARED_STRING_CHARS_MAX:
            return _shared(value, _short_strings, _SHORT_STRINGS_MAX)
    return value


_SHARED_STRING_CHARS_MAX = 32
_SHORT_STRINGS_MAX = 4096
_short_strings: dict[str, str] = {}
"""Short strings in claim values, shared across claims: their own small table, so values that
are all different fill it once and then are simply not shared."""


def _hex32(doc: dict[str, JsonValue], name: str) -> bytes:
    value = doc[name]
    if not isinstance(value, str) or not _HEX_ID_RE.fullmatch(value):
        raise _bad(f"{name} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _namespace(value: JsonValue) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= NAMESPACE_LABELS_MAX:
        raise _bad(f"ns must be a list of 1..{NAMESPACE_LABELS_MAX} labels")
    labels: list[str] = []
    for label in value:
        if not _is_text(label, LABEL_BYTES_MAX):
            raise _bad(f"namespace labels are 1..{LABEL_BYTES_MAX} bytes of text")
        assert isinstance(label, str)
        labels.append(label)
    return tuple(labels)


def _refs(doc: dict[str, JsonValue], name: str) -> tuple[bytes, ...]:
    value = doc[name]
    if value == []:  # the common case
        return ()
    if not isinstance(value, list) or len(value) > REFS_MAX:
        raise _bad(f"{name} must be a list of at most {REFS_MAX} ids")
    refs: list[bytes] = []
    for item in value:
        if not isinstance(item, str) or not _HEX_ID_RE.fullmatch(item):
            raise _bad(f"{name} holds ids as 64 lowercase hex digits")
        refs.append(bytes.fromhex(item))
    if any(a >= b for a, b in itertools.pairwise(refs)):
        raise Rejected(Reason.NOT_CANONICAL, f"{name} must be sorted without duplicates")
    return tuple(refs)
