"""Signed peer records and the passive view (HyParView's reserve of known peers).

A node signs where it can be dialled (:func:`sign_record`); records travel in ``Shuffle``
messages, so a node learns peers beyond the ones its operator configured and can replace a lost
connection without help. A record is accepted only when its signature verifies under its own
node key and that key is a node member now: a peer cannot plant an address in another node's
name, and a revoked node's record is dropped. Which records a node keeps is bounded
(:class:`PassiveView`); what it evicts is drawn from the injected generator, never from a set's
iteration order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..crypto import SigningKey, verify
from .messages import ADDRESSES_PER_RECORD_MAX, PeerRecord
from .sessions import Rng

__all__ = ["RECORD_DOMAIN", "PassiveView", "record_message", "sign_record", "verify_record"]

RECORD_DOMAIN = b"memmesh/peer-record/v1\x00"


def record_message(mesh_id: bytes, node: bytes, issued: int, addresses: Sequence[str]) -> bytes:
    """What a record's signature covers: ``mesh id | node | issued u64 | count u8 | (len u16 |
    address)*``, big-endian, addresses in UTF-8 (ASCII on the wire)."""
    parts = [mesh_id, node, issued.to_bytes(8, "big"), bytes([len(addresses)])]
    for address in addresses:
        raw = address.encode()
        parts.append(len(raw).to_bytes(2, "big") + raw)
    return b"".join(parts)


def sign_record(
    key: SigningKey, mesh_id: bytes, issued: int, addresses: Sequence[str]
) -> PeerRecord:
    if not 1 <= len(addresses) <= ADDRESSES_PER_RECORD_MAX:
        raise ValueError(f"a peer record names 1 to {ADDRESSES_PER_RECORD_MAX} addresses")
    message = record_message(mesh_id, key.public_key, issued, addresses)
    return PeerRecord(key.public_key, issued, list(addresses), key.sign(RECORD_DOMAIN, message))


def verify_record(mesh_id: bytes, record: PeerRecord) -> bool:
    message = record_message(mesh_id, record.node, record.issued, record.addresses)
    return verify(record.node, RECORD_DOMAIN, message, record.signature)


class PassiveView:
    """The newest verified record of each known node, at most ``size_max`` of them outside the
    active view (the active peers' records are kept too, to pass on in shuffles)."""

    def __init__(self, mesh_id: bytes, own_node: bytes, size_max: int) -> None:
        self.mesh_id = mesh_id
        self.own_node = own_node
        self.size_max = size_max
        self.records: dict[bytes, PeerRecord] = {}
        self.lost: dict[bytes, PeerRecord] = {}
        """Records forgotten after a failed dial, the most recent last, at most ``size_max``:
        what a node cut off by a partition has left to try once it heals (a dial fails alike
        whether the node is gone or only out of reach)."""
        self.accepted = 0
        self.rejected = 0

    def merge(
        self,
        records: Sequence[PeerRecord],
        *,
        is_member: Callable[[bytes], bool],
        active: Callable[[bytes], bool],
        rng: Rng,
    ) -> None:
        """Keep each record that is newer than what is held, verifies and names a member; then
        evict random records of inactive nodes down to the bound."""
        for record in records:
            held = self.records.get(record.node)
            if record.node == self.own_node or (held is not None and held.issued >= record.issued):
                continue
            if not is_member(record.node) or not verify_record(self.mesh_id, record):
                self.rejected += 1
                continue
            self.records[record.node] = record
            self.lost.pop(record.node, None)
            self.accepted += 1
        idle = sorted(node for node in self.records if not active(node))
        while len(idle) > self.size_max:
            self.records.pop(idle.pop(rng.randrange(len(idle))))

    def forget(self, node: bytes) -> None:
        """Drop ``node``'s record from the view; keep it among the lost ones."""
        record = self.records.pop(node, None) or self.lost.pop(node, None)
        if record is not None:
            self.lost[node] = record
            while len(self.lost) > self.size_max:
                del self.lost[next(iter(self.lost))]

    def found(self, node: bytes) -> None:
        """A lost node answered a dial: its record is back in the view."""
        record = self.lost.pop(node, None)
        if record is not None and node not in self.records:
            self.records[node] = record

    def sample(self, count: int, rng: Rng) -> list[PeerRecord]:
        """Up to ``count`` records drawn without replacement, in a seeded order."""
        nodes = sorted(self.records)
        picked: list[PeerRecord] = []
        while nodes and len(picked) < count:
            picked.append(self.records[nodes.pop(rng.randrange(len(nodes)))])
        return picked
