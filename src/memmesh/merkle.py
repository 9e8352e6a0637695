"""RFC 6962 / RFC 9162 Merkle trees over SHA-256 (Certificate Transparency hashing).

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``, the empty tree
``SHA-256("")``; a tree of n leaves splits at the largest power of two below n. The two prefixes
keep a leaf from ever being presented as a node. Used for each envelope's claims root, and for
the per-log and top trees of attestations (``memmesh.attest``).

Besides the root (:func:`merkle_root`), this module makes and checks the two proofs of RFC 9162
section 2.1:

- an **inclusion proof** (the audit path of RFC 6962 2.1.1): the sibling hashes from a leaf up to
  the root, deepest first. :func:`verify_inclusion` is RFC 9162 2.1.3.2 verbatim.
- a **consistency proof** between sizes ``size1 <= size2`` (RFC 6962 2.1.2): the hashes that show
  the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves.
  :func:`verify_consistency` is RFC 9162 2.1.4.2, with the trivial cases made explicit: equal
  sizes need an empty proof and equal roots; size 0 needs an empty proof and the empty-tree root.

Every verifier returns ``False`` for any malformed input (a hash that is not 32 bytes, an index or
size out of range, a proof of the wrong length); none of them raises.

:class:`MerkleTree` is the incremental, append-only tree. It keeps every level of complete
(perfect, aligned) subtrees in flat byte arrays: level 0 holds the leaf hashes, level ``j`` the
hash of each aligned run of ``2**j`` leaves. Appending a leaf costs one leaf hash plus one node
hash per carry (amortised one), so appending 1,000 leaves to a tree of 100,000 takes about 2,000
hashes; the root of any prefix is a fold of at most ``log2 n`` stored subtree roots, and the
nodes of every proof are stored subtree roots or such folds, so nothing is recomputed from the
leaves. Memory: 64 bytes per leaf (32 at level 0, 32 spread over the levels above).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
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


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


def _well_formed(hashes: Iterable[bytes]) -> bool:
    return all(type(h) is bytes and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof of the leaf *hash* ``leaf`` leads to, or None if the proof
    cannot be one for ``index`` in a tree of ``size`` (RFC 9162 2.1.3.2, steps 1 to 5)."""
    if not (0 <= index < size) or len(leaf) != HASH_SIZE or not _well_formed(proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows the leaf *hash* ``leaf`` at ``index`` of the tree of ``size``
    leaves whose root is ``root``."""
    computed = root_from_inclusion(leaf, index, size, proof)
    return computed is not None and len(root) == HASH_SIZE and computed == root


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree of ``size1`` leaves with root ``root1`` is a prefix of
    the tree of ``size2`` leaves with root ``root2`` (RFC 9162 2.1.4.2)."""
    if not (0 <= size1 <= size2) or not _well_formed([root1, root2, *proof]):
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof and root1 == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


class MerkleTree:
    """An append-only RFC 6962 tree that answers roots and proofs for every prefix size.

    ``levels[j]`` is a flat ``bytearray`` of the 32-byte hashes of the aligned, complete runs of
    ``2**j`` leaves; ``levels[0]`` holds the leaf hashes. Leaves are given as data
    (:meth:`append`) or as leaf hashes (:meth:`append_hash`).
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaves)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        self.append_hash(leaf_hash(leaf))

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append_hash(leaf_hash(leaf))

    def append_hash(self, hashed: bytes) -> None:
        """Append a leaf by its leaf hash; complete every subtree it closes."""
        if len(hashed) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(hashed)}")
        levels = self._levels
        levels[0] += hashed
        self._size += 1
        index, level, node = self._size - 1, 0, bytes(hashed)
        while index & 1:  # this node closes a pair: its parent is now complete
            left = bytes(levels[level][(index - 1) * HASH_SIZE : index * HASH_SIZE])
            node = node_hash(left, node)
            level += 1
            index >>= 1
            if len(levels) == level:
                levels.append(bytearray())
            levels[level] += node

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside a tree of {self._size}")
        return self._node(0, index)

    def _node(self, level: int, index: int) -> bytes:
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _range(self, start: int, count: int) -> bytes:
        """The Merkle Tree Hash of leaves ``[start, start + count)``, for a range that RFC 6962's
        recursion produces (``start`` is aligned to every power of two it is split into)."""
        parts: list[bytes] = []
        pos, remaining = start, count
        while remaining:
            level = remaining.bit_length() - 1
            assert pos % (1 << level) == 0, "RFC 6962 subtrees are aligned"
            parts.append(self._node(level, pos >> level))
            pos += 1 << level
            remaining -= 1 << level
        digest = parts[-1]
        for part in reversed(parts[:-1]):
            digest = node_hash(part, digest)
        return digest

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ValueError(f"size {size} outside 0..{self._size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all of them)."""
        n = self._check_size(size)
        return EMPTY_ROOT if n == 0 else self._range(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves, deepest
        sibling first (RFC 9162 2.1.3.1)."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise ValueError(f"leaf {index} outside a tree of {n}")
        siblings: list[bytes] = []
        start, count = 0, n
        while count > 1:
            k = _split(count)
            if index - start < k:
                siblings.append(self._range(start + k, count - k))
                count = k
            else:
                siblings.append(self._range(start, k))
                start += k
                count -= k
        siblings.reverse()
        return siblings

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The proof that the first ``size1`` leaves are a prefix of the first ``size2``
        (RFC 9162 2.1.4.1); empty when ``size1`` is 0 or equals ``size2``."""
        n = self._check_size(size2)
        if not 0 <= size1 <= n:
            raise ValueError(f"size1 {size1} outside 0..{n}")
        if size1 in (0, n):
            return []
        nodes: list[bytes] = []
        m, start, count, whole = size1, 0, n, True
        while m != count:
            k = _split(count)
            if m <= k:
                nodes.append(self._range(start + k, count - k))
                count = k
            else:
                nodes.append(self._range(start, k))
                start += k
                m -= k
                count -= k
                whole = False
        if not whole:
            nodes.append(self._range(start, m))
        nodes.reverse()
        return nodes


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of ``leaves[index]`` (leaves given as data) in the tree of all of them."""
    return MerkleTree(leaves).inclusion_proof(index)


def consistency_proof(leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """The consistency proof from the first ``size1`` of ``leaves`` to all of them."""
    return MerkleTree(leaves).consistency_proof(size1)
