"""The test vectors of docs/PROTOCOL.md, checked against the code and against the layout itself.

Every ```vector block is re-created with ``seal`` and decoded with ``open_envelope``. Independently
of the envelope module, the id is recomputed with hashlib, the signature is checked with PyNaCl
directly, and the bytes are split at the offsets the document's layout table gives.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import nacl.signing
import pytest

from memmesh.crypto import SigningKey
from memmesh.envelope import (
    ID_TAG,
    SIGNATURE_DOMAIN,
    EnvelopeKind,
    decode_envelope,
    open_envelope,
    seal,
)
from memmesh.ids import tagged_hash

PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "PROTOCOL.md"

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_KEYS = (
    "name",
    "seed",
    "mesh_id",
    "epoch",
    "seq",
    "prev",
    "deps",
    "hlc",
    "claims_root",
    "payload",
    "kind",
    "envelope",
    "id",
    "author",
)


def _fenced_blocks(info: str | None = None) -> list[str]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    return [m.group(2) for m in _FENCE.finditer(text) if info is None or m.group(1) == info]


def _parse_vector(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        assert sep, f"not a `key: value` line: {line!r}"
        key = key.strip()
        assert key not in fields, f"duplicate key {key!r}"
        fields[key] = value.strip()
    assert set(fields) == set(_KEYS), f"keys {sorted(fields)} != {sorted(_KEYS)}"
    return fields


def _vectors() -> list[dict[str, str]]:
    return [_parse_vector(block) for block in _fenced_blocks("vector")]


def _deps(value: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(d.strip()) for d in value.split(",")) if value else ()


VECTORS = _vectors()


def test_document_has_at_least_three_vectors_with_distinct_names() -> None:
    assert len(VECTORS) >= 3
    names = [v["name"] for v in VECTORS]
    assert len(set(names)) == len(names)


def test_vectors_cover_the_required_cases() -> None:
    by_shape = {(int(v["epoch"]), int(v["seq"]), len(_deps(v["deps"]))) for v in VECTORS}
    assert (1, 1, 0) in by_shape  # first envelope of a key
    assert any(e == 1 and s == 2 and n == 2 for e, s, n in by_shape)
    assert any(int(v["epoch"]) == 2 and v["payload"] == "" and int(v["seq"]) == 1 for v in VECTORS)
    # The second envelope's prev is the id of the first one (a real hash chain).
    ids = {v["id"] for v in VECTORS}
    assert any(int(v["seq"]) == 2 and v["prev"] in ids for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_seal_reproduces_the_vector(vector: dict[str, str]) -> None:
    key = SigningKey(bytes.fromhex(vector["seed"]))
    envelope = seal(
        key,
        mesh_id=bytes.fromhex(vector["mesh_id"]),
        epoch=int(vector["epoch"]),
        seq=int(vector["seq"]),
        prev=bytes.fromhex(vector["prev"]),
        deps=_deps(vector["deps"]),
        hlc=int(vector["hlc"]),
        claims_root=bytes.fromhex(vector["claims_root"]),
        payload=bytes.fromhex(vector["payload"]),
        kind=EnvelopeKind(int(vector["kind"])),
    )
    assert envelope.raw.hex() == vector["envelope"]
    assert envelope.id.hex() == vector["id"]
    assert envelope.author.hex() == vector["author"]
    assert key.public_key.hex() == vector["author"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_open_envelope_decodes_every_field(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["envelope"])
    mesh_id = bytes.fromhex(vector["mesh_id"])
    envelope = open_envelope(raw, mesh_id=mesh_id)
    assert envelope.kind == EnvelopeKind(int(vector["kind"]))
    assert envelope.mesh_id == mesh_id
    assert envelope.author == bytes.fromhex(vector["author"])
    assert envelope.epoch == int(vector["epoch"])
    assert envelope.seq == int(vector["seq"])
    assert envelope.prev == bytes.fromhex(vector["prev"])
    assert envelope.deps == _deps(vector["deps"])
    assert envelope.hlc == int(vector["hlc"])
    assert envelope.claims_root == bytes.fromhex(vector["claims_root"])
    assert envelope.payload == bytes.fromhex(vector["payload"])
    assert envelope.raw == raw
    assert envelope.id == bytes.fromhex(vector["id"])
    assert envelope.signature == raw[-64:]
    assert envelope.body == raw[:-64]
    assert decode_envelope(raw) == envelope


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_matches_the_documented_layout(vector: dict[str, str]) -> None:
    """Split the bytes at the offsets of PROTOCOL.md §3.1, without using the envelope module."""
    raw = bytes.fromhex(vector["envelope"])
    deps = _deps(vector["deps"])
    payload = bytes.fromhex(vector["payload"])
    n, p = len(deps), len(payload)
    assert len(raw) == 220 + 32 * n + p
    assert raw[0] == 1
    assert raw[1] == int(vector["kind"])
    assert raw[2:34].hex() == vector["mesh_id"]
    assert raw[34:66].hex() == vector["author"]
    assert struct.unpack(">I", raw[66:70])[0] == int(vector["epoch"])
    assert struct.unpack(">Q", raw[70:78])[0] == int(vector["seq"])
    assert raw[78:110].hex() == vector["prev"]
    assert struct.unpack(">H", raw[110:112])[0] == n
    assert b"".join(deps) == raw[112 : 112 + 32 * n]
    assert struct.unpack(">Q", raw[112 + 32 * n : 120 + 32 * n])[0] == int(vector["hlc"])
    assert raw[120 + 32 * n : 152 + 32 * n].hex() == vector["claims_root"]
    assert struct.unpack(">I", raw[152 + 32 * n : 156 + 32 * n])[0] == p
    assert raw[156 + 32 * n : 156 + 32 * n + p] == payload
    body, signature = raw[: 156 + 32 * n + p], raw[156 + 32 * n + p :]
    assert len(signature) == 64

    # The id, recomputed from the definition in §2.2 and §3.3.
    expected_id = hashlib.sha256(b"memmesh/envelope-id/v1\x00" + body).hexdigest()
    assert expected_id == vector["id"]
    assert tagged_hash(ID_TAG, body).hex() == expected_id

    # The signature, checked with PyNaCl directly over the documented domain bytes.
    domain = bytes.fromhex("6d656d6d6573682f656e76656c6f70652f763100")
    assert domain == SIGNATURE_DOMAIN == b"memmesh/envelope/v1\x00"
    verify_key = nacl.signing.VerifyKey(bytes.fromhex(vector["author"]))
    assert verify_key.verify(domain + body, signature) == domain + body


def test_annotated_dump_matches_the_first_vector() -> None:
    """The field-by-field dump of §6.1 concatenates to vector `first-envelope`, in layout order."""
    dumps = [b for b in _fenced_blocks() if b.lstrip().startswith("off  field")]
    assert len(dumps) == 1
    fields: list[tuple[int, str, str]] = []
    for line in dumps[0].splitlines()[1:]:
        hex_part = line.split(";")[0].split()
        if len(hex_part) == 1:  # continuation line of the field above
            offset, name, value = fields[-1]
            fields[-1] = (offset, name, value + hex_part[0])
        else:
            offset_text, name, value = hex_part
            fields.append((int(offset_text), name, value))
    names = [name for _, name, _ in fields]
    assert names == [
        "version",
        "kind",
        "mesh_id",
        "author",
        "epoch",
        "seq",
        "prev",
        "deps_count",
        "hlc",
        "claims_root",
        "payload_len",
        "payload",
        "signature",
    ]
    position = 0
    for offset, _, value in fields:
        assert offset == position
        position += len(value) // 2
    first = next(v for v in VECTORS if v["name"] == "first-envelope")
    assert "".join(value for _, _, value in fields) == first["envelope"]
