"""DSSE v1 envelopes (the in-toto / Sigstore signing envelope) for attestations.

JSON shape::

    {"payload": "<base64>", "payloadType": "application/vnd.memmesh.attestation+json",
     "signatures": [{"keyid": "<hex Ed25519 public key>", "sig": "<base64 signature>"}, ...]}

Each signature is Ed25519 over the pre-authentication encoding
``PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body`` (lengths as ASCII
decimal byte counts), with no extra domain prefix, so any DSSE tool that knows the key can check
it. The first signature is normally the statement's signer; any other is a **witness
co-signature** (same PAE, another key): a node that checked its own replica agrees at that
frontier adds one with :func:`cosign`.

:meth:`DsseEnvelope.to_json` writes canonical JSON (RFC 8785) with standard padded base64.
:func:`decode_dsse` is strict and bounded: at most :data:`DSSE_BYTES_MAX` bytes of JSON (no
floats, no duplicate members; whitespace is tolerated, because DSSE tools re-serialise envelopes
and the signatures cover only the PAE), exactly the three members, at most :data:`SIGNATURES_MAX`
signatures each with exactly ``keyid`` (64 lowercase hex digits, unique) and ``sig`` (standard
padded base64 of 64 bytes), and a payload of at most
:data:`~memmesh.attest.statement.STATEMENT_BYTES_MAX` bytes. Refusals raise :class:`DsseError`
(codes ``too_large``, ``bad_json``, ``wrong_type``, ``missing_field``, ``unknown_field``,
``bad_base64``, ``bad_value``, ``count_exceeds_limit``, ``duplicate_keyid``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..canonical import canonical_bytes
from ..crypto import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, verify
from .errors import DsseError
from .statement import STATEMENT_BYTES_MAX, Statement

__all__ = [
    "DSSE_BYTES_MAX",
    "PAYLOAD_TYPE",
    "SIGNATURES_MAX",
    "DsseEnvelope",
    "DsseSignature",
    "cosign",
    "decode_dsse",
    "pae",
    "sign_payload",
    "sign_statement",
]

PAYLOAD_TYPE = "application/vnd.memmesh.attestation+json"
SIGNATURES_MAX = 64
PAYLOAD_TYPE_BYTES_MAX = 256
DSSE_BYTES_MAX = STATEMENT_BYTES_MAX * 4 // 3 + 64 * 1024
"""The base64 of the largest statement, plus room for the signatures and the JSON around them."""
_NO_DOMAIN = b""
_KEYID_RE = re.compile(r"[0-9a-f]{64}")
_MEMBERS = frozenset({"payload", "payloadType", "signatures"})
_SIG_MEMBERS = frozenset({"keyid", "sig"})


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload`` with its type."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True)
class DsseSignature:
    keyid: bytes
    """The signing Ed25519 public key (``keyid`` is its lowercase hex)."""
    sig: bytes


@dataclass(frozen=True, slots=True)
class DsseEnvelope:
    payload: bytes
    payload_type: str
    signatures: tuple[DsseSignature, ...]

    def to_json(self) -> bytes:
        """Canonical JSON bytes of the envelope."""
        return canonical_bytes(
            {
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [
                    {"keyid": s.keyid.hex(), "sig": base64.b64encode(s.sig).decode("ascii")}
                    for s in self.signatures
                ],
            }
        )

    def signature_by(self, key: bytes) -> DsseSignature | None:
        for signature in self.signatures:
            if signature.keyid == key:
                return signature
        return None

    def valid(self, signature: DsseSignature) -> bool:
        """Whether ``signature`` is a valid Ed25519 signature of this envelope's PAE."""
        return verify(
            signature.keyid, _NO_DOMAIN, pae(self.payload_type, self.payload), signature.sig
        )


def sign_payload(payload: bytes, key: SigningKey, payload_type: str = PAYLOAD_TYPE) -> DsseEnvelope:
    sig = key.sign(_NO_DOMAIN, pae(payload_type, payload))
    return DsseEnvelope(payload, payload_type, (DsseSignature(key.public_key, sig),))


def sign_statement(statement: Statement, key: SigningKey) -> bytes:
    """The DSSE JSON of ``statement`` signed by ``key``, which must be the statement's signer."""
    if key.public_key != statement.signer:
        raise ValueError("the signing key is not the statement's signer")
    return sign_payload(statement.to_bytes(), key).to_json()


def cosign(dsse: bytes | DsseEnvelope, key: SigningKey) -> bytes:
    """Add ``key``'s signature (a witness co-signature) to a DSSE envelope; return its JSON.

    The caller is the witness: it signs only after checking that its own replica agrees with
    the statement at its frontier. Signing twice with one key is refused.
    """
    envelope = decode_dsse(dsse) if isinstance(dsse, bytes) else dsse
    if envelope.signature_by(key.public_key) is not None:
        raise ValueError("this key has already signed the envelope")
    if len(envelope.signatures) >= SIGNATURES_MAX:
        raise ValueError(f"the envelope already holds {SIGNATURES_MAX} signatures")
    sig = key.sign(_NO_DOMAIN, pae(envelope.payload_type, envelope.payload))
    added = DsseSignature(key.public_key, sig)
    return DsseEnvelope(
        envelope.payload, envelope.payload_type, (*envelope.signatures, added)
    ).to_json()


# -- decoding ---------------------------------------------------------------------------------


def decode_dsse(data: bytes) -> DsseEnvelope:
    """Decode DSSE JSON strictly (see the module doc); ``DsseError`` if it is anything else."""
    if len(data) > DSSE_BYTES_MAX:
        raise DsseError("too_large", f"DSSE envelope of {len(data)} bytes exceeds {DSSE_BYTES_MAX}")
    try:
        doc = json.loads(
            bytes(data).decode("utf-8"),
            parse_float=_refuse,
            parse_constant=_refuse,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DsseError("bad_json", f"DSSE envelope: {str(exc)[:200]}") from None
    obj = _object(doc, _MEMBERS, "DSSE envelope")
    payload_type = obj["payloadType"]
    if not isinstance(payload_type, str):
        raise DsseError("wrong_type", "payloadType must be a string")
    if not 0 < len(payload_type.encode("utf-8")) <= PAYLOAD_TYPE_BYTES_MAX:
        raise DsseError("bad_value", f"payloadType must be 1..{PAYLOAD_TYPE_BYTES_MAX} bytes")
    payload = _base64(obj["payload"], "payload")
    if len(payload) > STATEMENT_BYTES_MAX:
        raise DsseError("too_large", f"payload of {len(payload)} bytes")
    signatures = obj["signatures"]
    if not isinstance(signatures, list):
        raise DsseError("wrong_type", "signatures must be a list")
    if not 0 < len(signatures) <= SIGNATURES_MAX:
        raise DsseError(
            "count_exceeds_limit", f"1..{SIGNATURES_MAX} signatures, not {len(signatures)}"
        )
    parsed = tuple(_signature(item) for item in signatures)
    if len({s.keyid for s in parsed}) != len(parsed):
        raise DsseError("duplicate_keyid", "two signatures name the same keyid")
    return DsseEnvelope(payload, payload_type, parsed)


def _signature(item: Any) -> DsseSignature:
    obj = _object(item, _SIG_MEMBERS, "signature")
    keyid = obj["keyid"]
    if not isinstance(keyid, str):
        raise DsseError("wrong_type", "keyid must be a string")
    if not _KEYID_RE.fullmatch(keyid):
        raise DsseError("bad_value", "keyid must be the signer's public key in lowercase hex")
    sig = _base64(obj["sig"], "sig")
    if len(sig) != SIGNATURE_BYTES:
        raise DsseError("bad_value", f"sig must be {SIGNATURE_BYTES} bytes, not {len(sig)}")
    key = bytes.fromhex(keyid)
    assert len(key) == PUBLIC_KEY_BYTES
    return DsseSignature(key, sig)


def _object(value: Any, members: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DsseError("wrong_type", f"{what} must be a JSON object")
    missing = sorted(members - set(value))
    if missing:
        raise DsseError("missing_field", f"{what} lacks {', '.join(missing)}")
    unknown = sorted(set(value) - members)
    if unknown:
        raise DsseError("unknown_field", f"{what} has unknown members {', '.join(unknown)[:200]}")
    return value


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DsseError("wrong_type", f"{what} must be a base64 string")
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DsseError("bad_base64", f"{what} is not standard padded base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise DsseError("bad_base64", f"{what} is not in canonical base64")
    return raw


def _refuse(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]}")


def _no_duplicates(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {name[:40]!r}")
        out[name] = value
    return out
