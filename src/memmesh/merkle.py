"""RFC 6962 Merkle trees over SHA-256 (Certificate Transparency hashing).

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``, the empty tree
``SHA-256("")``; a tree of n leaves splits at the largest power of two below n. The two prefixes
keep a leaf from ever being presented as a node. Used for each envelope's claims root now, and for
the per-log and top trees of attestations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["EMPTY_ROOT", "leaf_hash", "merkle_root", "node_hash"]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle Tree Hash of ``leaves`` (in order)."""
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    # Pairing left to right and promoting an odd last node unchanged gives exactly RFC 6962's
    # split-at-the-largest-power-of-two tree, iteratively.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
