"""The vectors of docs/PROTOCOL.md §12 (claims, genesis, grammar, Merkle roots, claims digests).

Every ```claim-vector, ```genesis-vector, ```update-vector, ```merkle-vector and ```digest-vector
block is rebuilt with the reference code and decoded again. Independently of memmesh, every id and
hash is recomputed with hashlib (``sha256(b"memmesh/" + tag + b"\\x00" + data)``), signatures are
checked with PyNaCl over the documented domain bytes, and the bytes are split at the offsets the
document gives.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import nacl.signing
import pycrdt
import pytest

from memmesh.admission import Admission, Status, claims_digest
from memmesh.canonical import canonical_bytes, parse_canonical
from memmesh.claims import CLAIM_ID_TAG, CLAIM_SIGNATURE_DOMAIN, decode_claim, make_claim
from memmesh.crypto import SigningKey
from memmesh.envelope import open_envelope, seal
from memmesh.ids import ZERO_ID
from memmesh.membership import (
    GENESIS_DOMAIN,
    MESH_ID_TAG,
    Role,
    decode_genesis,
    make_genesis,
)
from memmesh.merkle import merkle_root
from memmesh.store import MemoryStore
from memmesh.ydecode import ROOT_NAME, client_id, decode_update, encode_update, item_key

PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "PROTOCOL.md"

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_KEYS = {
    "claim-vector": (
        "name",
        "seed",
        "agent",
        "mesh_id",
        "aseq",
        "hlc",
        "namespace",
        "key",
        "type",
        "value",
        "valid_at",
        "invalid_at",
        "source",
        "derived_from",
        "based_on",
        "confidence",
        "supersedes",
        "body",
        "claim",
        "id",
    ),
    "genesis-vector": (
        "name",
        "admin_seed",
        "admin",
        "node_seed",
        "node",
        "mesh_name",
        "members",
        "body",
        "genesis",
        "mesh_id",
    ),
    "update-vector": (
        "name",
        "node_seed",
        "author",
        "epoch",
        "client_id",
        "start_clock",
        "claim_ids",
        "key",
        "update",
        "claims_root",
        "hlc",
        "envelope",
        "envelope_id",
        "live_digest",
    ),
    "merkle-vector": ("name", "leaves", "root"),
    "digest-vector": ("name", "ids", "digest"),
}
_CLAIM_MEMBERS = {
    "v", "mesh", "agent", "aseq", "hlc", "ns", "key", "type", "value", "valid_at",
    "invalid_at", "source", "derived_from", "based_on", "confidence", "supersedes",
}  # fmt: skip
_JSON_ARGS = (
    "aseq",
    "hlc",
    "namespace",
    "key",
    "type",
    "value",
    "valid_at",
    "invalid_at",
    "source",
    "confidence",
)
_ID_LISTS = ("derived_from", "based_on", "supersedes")
_BODY_NAME = {"namespace": "ns"}


def _text() -> str:
    return PROTOCOL_MD.read_text(encoding="utf-8")


def _blocks(info: str) -> list[str]:
    return [m.group(2) for m in _FENCE.finditer(_text()) if m.group(1) == info]


def _parse(block: str, info: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        assert sep, f"not a `key: value` line: {line!r}"
        key = key.strip()
        assert key not in fields, f"duplicate key {key!r}"
        fields[key] = value.strip()
    assert set(fields) == set(_KEYS[info]), f"keys {sorted(fields)} != {sorted(_KEYS[info])}"
    return fields


def _vectors(info: str) -> list[dict[str, str]]:
    return [_parse(block, info) for block in _blocks(info)]


def _hex_list(value: str) -> list[bytes]:
    return [bytes.fromhex(item.strip()) for item in value.split(",")] if value else []


def _tagged(tag: bytes, data: bytes) -> bytes:
    """The tagged hash of PROTOCOL.md §2.2, written out with hashlib alone."""
    return hashlib.sha256(b"memmesh/" + tag + b"\x00" + data).digest()


def _verify(public_key: str, domain_hex: str, message: bytes, signature: bytes) -> None:
    domain = bytes.fromhex(domain_hex)
    key = nacl.signing.VerifyKey(bytes.fromhex(public_key))
    assert key.verify(domain + message, signature) == domain + message


CLAIMS = _vectors("claim-vector")
GENESES = _vectors("genesis-vector")
UPDATES = _vectors("update-vector")
MERKLES = _vectors("merkle-vector")
DIGESTS = _vectors("digest-vector")


def _ids(vectors: list[dict[str, str]]) -> list[str]:
    return [v["name"] for v in vectors]


def _claim_bytes(claim_id: bytes) -> bytes:
    """The claim bytes of the claim vector with this id (update vectors refer to them by id)."""
    for vector in CLAIMS:
        if vector["id"] == claim_id.hex():
            return bytes.fromhex(vector["claim"])
    raise AssertionError(f"no claim-vector with id {claim_id.hex()}")


def _genesis_for(mesh_id: str) -> dict[str, str]:
    for vector in GENESES:
        if vector["mesh_id"] == mesh_id:
            return vector
    raise AssertionError(f"no genesis-vector for mesh {mesh_id}")


def test_every_kind_of_vector_is_present() -> None:
    for vectors in (CLAIMS, GENESES, UPDATES, MERKLES, DIGESTS):
        assert vectors
        assert len(set(_ids(vectors))) == len(vectors)
    assert any(v["leaves"] == "" for v in MERKLES)
    assert any(len(_hex_list(v["leaves"])) == 3 for v in MERKLES)
    assert any(v["ids"] == "" for v in DIGESTS)


def test_tag_and_domain_tables_match_their_strings() -> None:
    """Every row of the §2.2 tag table and the §2.3 domain table gives the right prefix bytes."""
    text = _text()
    tags = re.findall(r"^\| `([a-z0-9./-]+)`\s*\| `([0-9a-f]+)`", text, re.MULTILINE)
    assert {tag for tag, _ in tags} >= {
        "envelope-id/v1",
        "claim-id/v1",
        "yjs-client/v1",
        "mesh-id/v1",
        "evidence/v1",
        "claims-digest/v1",
    }
    for tag, prefix in tags:
        assert bytes.fromhex(prefix) == b"memmesh/" + tag.encode() + b"\x00"
    domains = re.findall(
        r'^\| `"(memmesh/[a-z0-9/]+)\\x00"`\s*\| `([0-9a-f]+)`', text, re.MULTILINE
    )
    assert {d for d, _ in domains} == {
        "memmesh/envelope/v1",
        "memmesh/claim/v1",
        "memmesh/genesis/v1",
    }
    for domain, hex_bytes in domains:
        assert bytes.fromhex(hex_bytes) == domain.encode() + b"\x00"
    assert CLAIM_SIGNATURE_DOMAIN == b"memmesh/claim/v1\x00"
    assert GENESIS_DOMAIN == b"memmesh/genesis/v1\x00"


# -- claims (§8) ------------------------------------------------------------------------------


def _claim_args(vector: dict[str, str]) -> dict[str, Any]:
    args: dict[str, Any] = {name: json.loads(vector[name]) for name in _JSON_ARGS}
    args["hlc"] = tuple(args["hlc"])
    for name in _ID_LISTS:
        args[name] = [bytes.fromhex(item) for item in json.loads(vector[name])]
    args["mesh_id"] = bytes.fromhex(vector["mesh_id"])
    return args


@pytest.mark.parametrize("vector", CLAIMS, ids=_ids(CLAIMS))
def test_make_claim_reproduces_the_vector(vector: dict[str, str]) -> None:
    key = SigningKey(bytes.fromhex(vector["seed"]))
    assert key.public_key.hex() == vector["agent"]
    claim = make_claim(key, **_claim_args(vector))
    assert claim.raw.hex() == vector["claim"]
    assert claim.id.hex() == vector["id"]


@pytest.mark.parametrize("vector", CLAIMS, ids=_ids(CLAIMS))
def test_decode_claim_gives_every_field(vector: dict[str, str]) -> None:
    args = _claim_args(vector)
    claim = decode_claim(bytes.fromhex(vector["claim"]), mesh_id=args["mesh_id"])
    assert claim.mesh_id == args["mesh_id"]
    assert claim.agent == bytes.fromhex(vector["agent"])
    assert claim.aseq == args["aseq"]
    assert claim.hlc == args["hlc"]
    assert claim.namespace == tuple(args["namespace"])
    assert claim.key == args["key"]
    assert claim.type == args["type"]
    assert claim.value == args["value"]
    assert claim.valid_at == args["valid_at"]
    assert claim.invalid_at == args["invalid_at"]
    assert claim.source == args["source"]
    assert claim.confidence == args["confidence"]
    for name in _ID_LISTS:
        assert getattr(claim, name) == tuple(args[name])
    assert claim.id.hex() == vector["id"]


@pytest.mark.parametrize("vector", CLAIMS, ids=_ids(CLAIMS))
def test_claim_matches_the_documented_layout(vector: dict[str, str]) -> None:
    """Split at the offsets of §8.1 and check body, signature and id without memmesh."""
    raw = bytes.fromhex(vector["claim"])
    assert raw[0] == 1
    (body_len,) = struct.unpack(">I", raw[1:5])
    assert len(raw) == 5 + body_len + 64 <= 65536
    body, signature = raw[5 : 5 + body_len], raw[5 + body_len :]
    assert body.decode("utf-8") == vector["body"]

    # The body: canonical JSON with exactly the 16 members, each the vector's JSON text.
    doc = json.loads(body)
    assert set(doc) == _CLAIM_MEMBERS
    assert list(doc) == sorted(doc, key=lambda name: name.encode("utf-16-be"))
    assert canonical_bytes(doc) == body
    assert parse_canonical(body, what="claim body", bytes_max=65536) == doc
    assert doc["v"] == 1 and type(doc["v"]) is int
    assert doc["mesh"] == vector["mesh_id"]
    assert doc["agent"] == vector["agent"]
    for name in (*_JSON_ARGS, *_ID_LISTS):
        member = _BODY_NAME.get(name, name)
        assert json.dumps(doc[member], ensure_ascii=False, separators=(",", ":")) == vector[name]
        assert f'"{member}":{vector[name]}'.encode() in body
    for name in _ID_LISTS:
        assert doc[name] == sorted(set(doc[name]))

    # The signature (§8.3), with PyNaCl over the documented domain bytes.
    _verify(vector["agent"], "6d656d6d6573682f636c61696d2f763100", body, signature)

    # The claim id: tagged hash over the whole claim, signature included.
    expected = hashlib.sha256(b"memmesh/claim-id/v1\x00" + raw).hexdigest()
    assert expected == vector["id"]
    assert _tagged(CLAIM_ID_TAG, raw).hex() == expected


# -- genesis (§10.1) --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", GENESES, ids=_ids(GENESES))
def test_make_genesis_reproduces_the_vector(vector: dict[str, str]) -> None:
    admin = SigningKey(bytes.fromhex(vector["admin_seed"]))
    node = SigningKey(bytes.fromhex(vector["node_seed"]))
    assert admin.public_key.hex() == vector["admin"]
    assert node.public_key.hex() == vector["node"]
    genesis = make_genesis(admin, vector["mesh_name"], [(node.public_key, Role.NODE)])
    assert genesis.raw.hex() == vector["genesis"]
    assert genesis.mesh_id.hex() == vector["mesh_id"]


@pytest.mark.parametrize("vector", GENESES, ids=_ids(GENESES))
def test_decode_genesis_gives_every_field(vector: dict[str, str]) -> None:
    genesis = decode_genesis(bytes.fromhex(vector["genesis"]))
    assert genesis.name == vector["mesh_name"]
    assert genesis.admin.hex() == vector["admin"]
    members = [[key.hex(), role.value] for key, role in genesis.members]
    assert members == json.loads(vector["members"])
    assert [vector["admin"], "admin"] in members
    assert [vector["node"], "node"] in members
    assert genesis.mesh_id.hex() == vector["mesh_id"]


@pytest.mark.parametrize("vector", GENESES, ids=_ids(GENESES))
def test_genesis_matches_the_documented_layout(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["genesis"])
    assert raw[0] == 1
    (body_len,) = struct.unpack(">I", raw[1:5])
    assert len(raw) == 5 + body_len + 64
    body, signature = raw[5 : 5 + body_len], raw[5 + body_len :]
    assert body.decode("utf-8") == vector["body"]
    doc = json.loads(body)
    assert canonical_bytes(doc) == body
    assert doc == {
        "v": 1,
        "name": vector["mesh_name"],
        "admin": vector["admin"],
        "members": json.loads(vector["members"]),
    }
    keys = [key for key, _ in doc["members"]]
    assert keys == sorted(set(keys))
    _verify(vector["admin"], "6d656d6d6573682f67656e657369732f763100", body, signature)
    expected = hashlib.sha256(b"memmesh/mesh-id/v1\x00" + raw).hexdigest()
    assert expected == vector["mesh_id"]
    assert _tagged(MESH_ID_TAG, raw).hex() == expected


def test_the_claim_vectors_belong_to_the_genesis_vector_mesh() -> None:
    for vector in CLAIMS:
        genesis = _genesis_for(vector["mesh_id"])
        assert vector["agent"] == genesis["admin"]


# -- the document grammar (§9) ----------------------------------------------------------------


def _read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """LEB128 as §9.1 defines it: minimal, at most 8 bytes, at most 2^53 - 1."""
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            assert byte or i == 0, "non-minimal varuint"
            assert value <= 2**53 - 1
            return value, pos + i + 1
    raise AssertionError("varuint longer than 8 bytes")


def _client_id(author: bytes, epoch: int) -> int:
    digest = hashlib.sha256(b"memmesh/yjs-client/v1\x00" + author + struct.pack(">I", epoch))
    return int.from_bytes(digest.digest()[:8], "big") & (2**53 - 1)


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_client_id_is_the_documented_hash(vector: dict[str, str]) -> None:
    node = SigningKey(bytes.fromhex(vector["node_seed"]))
    author = bytes.fromhex(vector["author"])
    assert node.public_key == author
    epoch, expected = int(vector["epoch"]), int(vector["client_id"])
    assert client_id(author, epoch) == expected
    assert _client_id(author, epoch) == expected
    assert expected < 2**53


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_encode_update_reproduces_the_vector(vector: dict[str, str]) -> None:
    client, start = int(vector["client_id"]), int(vector["start_clock"])
    claim_ids = _hex_list(vector["claim_ids"])
    claims = [(claim_id, _claim_bytes(claim_id)) for claim_id in claim_ids]
    assert encode_update(client, start, claims).hex() == vector["update"]
    assert item_key(client, claim_ids[0]) == vector["key"]

    items = decode_update(bytes.fromhex(vector["update"]), client=client, start_clock=start)
    assert [item.clock for item in items] == list(range(start, start + len(claims)))
    assert [item.claim_id for item in items] == claim_ids
    assert [item.value for item in items] == [value for _, value in claims]
    assert items[0].key == vector["key"]


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_update_matches_the_documented_layout(vector: dict[str, str]) -> None:
    """Read the update byte by byte as §9.3 lays it out, without ydecode."""
    data = bytes.fromhex(vector["update"])
    client, start = int(vector["client_id"]), int(vector["start_clock"])
    claim_ids = _hex_list(vector["claim_ids"])
    sections, pos = _read_varuint(data, 0)
    count, pos = _read_varuint(data, pos)
    got_client, pos = _read_varuint(data, pos)
    clock, pos = _read_varuint(data, pos)
    assert (sections, count, got_client, clock) == (1, len(claim_ids), client, start)
    for claim_id in claim_ids:
        assert data[pos : pos + 2] == b"\x23\x01"
        name_len, pos = _read_varuint(data, pos + 2)
        assert data[pos : pos + name_len] == ROOT_NAME.encode() == b"claims"
        key_len, pos = _read_varuint(data, pos + name_len)
        key = data[pos : pos + key_len].decode("utf-8")
        assert key == f"{client}/{claim_id.hex()}"
        assert key_len == len(str(client)) + 65 <= 81
        value_len, pos = _read_varuint(data, pos + key_len)
        value = data[pos : pos + value_len]
        assert value == _claim_bytes(claim_id)
        assert hashlib.sha256(b"memmesh/claim-id/v1\x00" + value).digest() == claim_id
        pos += value_len
    assert data[pos:] == b"\x00"  # the empty delete set, then nothing


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_the_update_applies_in_pycrdt(vector: dict[str, str]) -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    claims = doc.get(ROOT_NAME, type=pycrdt.Map)
    doc.apply_update(bytes.fromhex(vector["update"]))
    expected = {
        item_key(int(vector["client_id"]), claim_id): _claim_bytes(claim_id)
        for claim_id in _hex_list(vector["claim_ids"])
    }
    assert {key: bytes(claims[key]) for key in claims} == expected


def test_annotated_update_dump_matches_the_vector() -> None:
    """Every hex field of the §12.3 dump sits at its offset in the update vector."""
    dumps = [b for b in _blocks("text") if b.lstrip().startswith("off  part")]
    assert len(dumps) == 1
    update = bytes.fromhex(UPDATES[0]["update"])
    first_claim = _claim_bytes(_hex_list(UPDATES[0]["claim_ids"])[0])
    end = 0
    for line in dumps[0].splitlines()[1:]:
        offset_text, _, value = line.split(";")[0].split(None, 2)
        offset, value = int(offset_text), value.strip()
        if value.startswith("<"):  # the claim, abbreviated
            size = int(value.strip("<>").split()[0])
            assert update[offset : offset + size] == first_claim
        else:
            size = len(value) // 2
            assert update[offset : offset + size].hex() == value
        assert offset == end
        end = offset + size
    assert end == len(update)


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_the_envelope_carrying_the_update_is_admitted(vector: dict[str, str]) -> None:
    """Sealed for the genesis vector's mesh, the envelope is live in a fresh node (§11)."""
    node = SigningKey(bytes.fromhex(vector["node_seed"]))
    raw = bytes.fromhex(vector["envelope"])
    mesh_id = raw[2:34].hex()
    genesis = decode_genesis(bytes.fromhex(_genesis_for(mesh_id)["genesis"]))
    claim_ids = _hex_list(vector["claim_ids"])
    envelope = seal(
        node,
        mesh_id=genesis.mesh_id,
        epoch=int(vector["epoch"]),
        seq=1,
        prev=ZERO_ID,
        deps=(),
        hlc=int(vector["hlc"]),
        claims_root=merkle_root(claim_ids),
        payload=bytes.fromhex(vector["update"]),
    )
    assert envelope.raw == raw
    assert envelope.id.hex() == vector["envelope_id"]
    opened = open_envelope(raw, mesh_id=genesis.mesh_id)
    assert opened.claims_root.hex() == vector["claims_root"]
    assert opened.payload.hex() == vector["update"]

    admission = Admission(MemoryStore(), genesis)
    outcome = admission.receive(raw)
    assert outcome.status is Status.INTEGRATED, outcome
    assert [claim.id for claim in admission.live_claims()] == sorted(claim_ids)
    assert admission.claims_digest().hex() == vector["live_digest"]
    assert claims_digest(claim_ids).hex() == vector["live_digest"]


# -- claims root and claims digest (§9.6, §11.6) ----------------------------------------------


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1, recursively: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _rfc6962_root(leaves[:k]), _rfc6962_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("vector", MERKLES, ids=_ids(MERKLES))
def test_merkle_root_vector(vector: dict[str, str]) -> None:
    leaves = _hex_list(vector["leaves"])
    assert merkle_root(leaves).hex() == vector["root"]
    assert _rfc6962_root(leaves).hex() == vector["root"]


@pytest.mark.parametrize("vector", UPDATES, ids=_ids(UPDATES))
def test_update_claims_root(vector: dict[str, str]) -> None:
    claim_ids = _hex_list(vector["claim_ids"])
    assert merkle_root(claim_ids).hex() == vector["claims_root"]
    assert _rfc6962_root(claim_ids).hex() == vector["claims_root"]


@pytest.mark.parametrize("vector", DIGESTS, ids=_ids(DIGESTS))
def test_claims_digest_vector(vector: dict[str, str]) -> None:
    ids = _hex_list(vector["ids"])
    assert len(set(ids)) == len(ids)
    assert claims_digest(ids).hex() == vector["digest"]
    assert claims_digest(reversed(ids)).hex() == vector["digest"]  # a set: order does not matter
    expected = hashlib.sha256(b"memmesh/claims-digest/v1\x00" + b"".join(sorted(ids)))
    assert expected.hexdigest() == vector["digest"]
