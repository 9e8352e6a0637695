"""Read receipts: content-addressed records of what a read returned (DESIGN §5).

A receipt names the reader, the frontier the node served from and the claim ids returned. Its
id is a tagged hash of exactly those, so a read costs no disk write: anyone holding the same
three facts computes the same id. An agent that acts on a read records its receipt (kept by its
node, or replicated as a ``receipt`` claim in ``_mesh.receipts`` keyed by the id), and a
``decision`` claim cites the receipt id in ``based_on``: that is how a decision is traced to the
memory it rested on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..canonical import JsonValue, canonical_bytes
from ..ids import Head, LogId, tagged_hash

__all__ = ["RECEIPT_ID_TAG", "Receipt", "frontier_hash", "receipt_claim_ok"]

RECEIPT_ID_TAG = b"receipt-id/v1"
FRONTIER_TAG = b"frontier/v1"


def frontier_hash(frontier: Iterable[tuple[LogId, Head]]) -> bytes:
    """A tagged hash of a frontier: ``author | epoch u32 | seq u64 | head id`` per log, sorted."""
    parts = [
        log.author + log.epoch.to_bytes(4, "big") + head.seq.to_bytes(8, "big") + head.id
        for log, head in sorted(frontier)
    ]
    return tagged_hash(FRONTIER_TAG, b"".join(parts))


@dataclass(frozen=True, slots=True)
class Receipt:
    frontier: bytes
    claims: tuple[bytes, ...]
    """Sorted, each once."""
    reader: bytes

    @classmethod
    def of(cls, frontier: bytes, claims: Iterable[bytes], reader: bytes) -> Receipt:
        return cls(frontier, tuple(sorted(set(claims))), reader)

    @classmethod
    def from_value(cls, value: JsonValue) -> Receipt:
        """The receipt a ``receipt`` claim's value states; ``ValueError`` if malformed."""
        if not isinstance(value, dict) or set(value) != {"frontier", "claims", "reader"}:
            raise ValueError("a receipt is {frontier, claims, reader}")
        frontier, claims, reader = value["frontier"], value["claims"], value["reader"]
        if not (isinstance(frontier, str) and isinstance(reader, str)):
            raise ValueError("frontier and reader are hex ids")
        if not isinstance(claims, list):
            raise ValueError("claims is a list of hex claim ids")
        texts = [c for c in claims if isinstance(c, str)]
        if len(texts) != len(claims):
            raise ValueError("claims is a list of hex claim ids")
        try:
            ids = [bytes.fromhex(c) for c in texts]
            receipt = cls.of(bytes.fromhex(frontier), ids, bytes.fromhex(reader))
        except ValueError:
            raise ValueError("ids must be hex") from None
        if len(receipt.frontier) != 32 or len(receipt.reader) != 32:
            raise ValueError("frontier and reader are 32-byte ids")
        if any(len(c) != 32 for c in receipt.claims) or len(receipt.claims) != len(claims):
            raise ValueError("claims are distinct 32-byte ids, sorted")
        return receipt

    def value(self) -> dict[str, JsonValue]:
        return {
            "frontier": self.frontier.hex(),
            "claims": [c.hex() for c in self.claims],
            "reader": self.reader.hex(),
        }

    @property
    def id(self) -> bytes:
        return tagged_hash(RECEIPT_ID_TAG, canonical_bytes(self.value()))

    def to_json(self) -> dict[str, JsonValue]:
        return {"id": self.id.hex(), **self.value()}


def receipt_claim_ok(key: str, value: JsonValue) -> bool:
    """A ``receipt`` claim is keyed by the id of the receipt its value states."""
    try:
        return Receipt.from_value(value).id.hex() == key
    except ValueError:
        return False
