"""RFC 6962 / RFC 9162 inclusion and consistency proofs, and the incremental tree.

The known-good proofs are the published vectors in ``tests/fixtures/rfc6962`` (copied from
``../shared/fixtures``); every corruption its README lists is generated here from each good proof
and must be refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from memmesh.testing import scaled

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rfc6962"
VECTORS = json.loads((FIXTURES / "vectors.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
ROOTS = {int(size): bytes.fromhex(root) for size, root in VECTORS["roots_hex_by_size"].items()}
WRONG = hashlib.sha256(b"WrongRoot").digest()

InclusionProbe = tuple[int, int, bytes, bytes, list[bytes]]
ConsistencyProbe = tuple[int, int, bytes, bytes, list[bytes]]


def _edits(proof: list[bytes], extras: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Every proof-element corruption of the README: one bit flipped in any element, an element
    removed or inserted anywhere, garbage or a root before or after, and no proof at all."""
    for i, element in enumerate(proof):
        for bit in range(len(element) * 8):
            flipped = bytearray(element)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield f"bit {bit} of element {i}", [*proof[:i], bytes(flipped), *proof[i + 1 :]]
        yield f"element {i} removed", proof[:i] + proof[i + 1 :]
    for i in range(len(proof) + 1):
        for extra in [*extras, *proof]:
            yield f"inserted at {i}", [*proof[:i], extra, *proof[i:]]
    for extra in [b"", b"garbage", *extras]:
        yield "prepended", [extra, *proof]
        yield "appended", [*proof, extra]
    yield "empty proof", []


def _inclusion_probes(
    index: int, size: int, leaf: bytes, root: bytes, proof: list[bytes]
) -> Iterator[tuple[str, InclusionProbe]]:
    yield "index - 1", (index - 1, size, leaf, root, proof)
    yield "index + 1", (index + 1, size, leaf, root, proof)
    yield "index ^ 2", (index ^ 2, size, leaf, root, proof)
    yield "size * 2", (index, size * 2, leaf, root, proof)
    yield "size / 2", (index, size // 2, leaf, root, proof)
    yield "wrong leaf", (index, size, leaf_hash(b"WrongLeaf"), root, proof)
    for other in LEAVES:
        yield "another leaf", (index, size, leaf_hash(other), root, proof)
    yield "leaf data instead of its hash", (index, size, node_hash(leaf, leaf), root, proof)
    yield "wrong root", (index, size, leaf, WRONG, proof)
    yield "empty-tree root", (index, size, leaf, EMPTY_ROOT, proof)
    for other_size, other_root in ROOTS.items():
        if other_size != size:
            yield f"root of size {other_size}", (index, size, leaf, other_root, proof)
    for what, edited in _edits(proof, [root, leaf, WRONG]):
        yield what, (index, size, leaf, root, edited)


def _consistency_probes(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> Iterator[tuple[str, ConsistencyProbe]]:
    yield "size1 - 1", (size1 - 1, size2, root1, root2, proof)
    yield "size1 + 1", (size1 + 1, size2, root1, root2, proof)
    yield "size1 ^ 2", (size1 ^ 2, size2, root1, root2, proof)
    yield "size2 * 2", (size1, size2 * 2, root1, root2, proof)
    yield "size2 / 2", (size1, size2 // 2, root1, root2, proof)
    yield "wrong root1", (size1, size2, WRONG, root2, proof)
    yield "wrong root2", (size1, size2, root1, WRONG, proof)
    yield "empty-tree root1", (size1, size2, EMPTY_ROOT, root2, proof)
    yield "empty-tree root2", (size1, size2, root1, EMPTY_ROOT, proof)
    yield "swapped roots", (size1, size2, root2, root1, proof)
    for what, edited in _edits(proof, [root1, root2, WRONG]):
        yield what, (size1, size2, root1, root2, edited)


def test_vectors_hold_what_the_readme_says() -> None:
    assert VECTORS["hash"] == "sha256"
    assert EMPTY_ROOT.hex() == VECTORS["empty_root_hex"]
    assert len(LEAVES) == 8 and sorted(ROOTS) == list(range(1, 9))
    assert VECTORS["inclusion"] and VECTORS["consistency"]
    assert "xor 2" in (FIXTURES / "README.md").read_text()


def test_roots_of_every_prefix() -> None:
    tree = MerkleTree()
    assert tree.root() == EMPTY_ROOT
    for size in range(1, 9):
        tree.append(LEAVES[size - 1])
        assert tree.root() == ROOTS[size] == merkle_root(LEAVES[:size])
    for size in range(1, 9):
        assert tree.root(size) == ROOTS[size]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_inclusion_vector_accepted_and_every_corruption_refused(case: dict[str, object]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    assert isinstance(index, int) and isinstance(size, int)
    proof = [bytes.fromhex(h) for h in case["proof_hex"]]  # type: ignore[attr-defined]
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size]
    assert MerkleTree(LEAVES).inclusion_proof(index, size) == proof
    assert verify_inclusion(leaf, index, size, proof, root)
    original = (index, size, leaf, root, proof)
    refused = 0
    for what, probe in _inclusion_probes(*original):
        if probe == original:
            continue
        assert not verify_inclusion(probe[2], probe[0], probe[1], probe[4], probe[3]), what
        refused += 1
    assert refused > 20


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_consistency_vector_accepted_and_every_corruption_refused(case: dict[str, object]) -> None:
    size1, size2 = case["size1"], case["size2"]
    assert isinstance(size1, int) and isinstance(size2, int)
    proof = [bytes.fromhex(h) for h in case["proof_hex"]]  # type: ignore[attr-defined]
    root1, root2 = ROOTS[size1], ROOTS[size2]
    assert MerkleTree(LEAVES).consistency_proof(size1, size2) == proof
    assert verify_consistency(size1, size2, root1, root2, proof)
    original = (size1, size2, root1, root2, proof)
    refused = 0
    for what, probe in _consistency_probes(*original):
        if probe == original:
            continue
        assert not verify_consistency(*probe), what
        refused += 1
    assert refused > 10


def test_trivial_consistency_cases() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])  # size 0 has one root
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[1]])
    assert verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_consistency(4, 3, ROOTS[4], ROOTS[3], [])
    assert not verify_consistency(-1, 3, EMPTY_ROOT, ROOTS[3], [])
    assert not verify_inclusion(leaf_hash(LEAVES[0]), 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(b"short", 0, 1, [], ROOTS[1])
    assert not verify_inclusion(leaf_hash(LEAVES[0]), 0, 1, [], b"short")


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1 as the RFC writes it."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n]), recursively."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 6962 2.1.2 SUBPROOF(m, D[n], b), recursively."""
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


@settings(max_examples=scaled(30))
@given(st.integers(1, 40))
def test_proofs_for_every_leaf_and_size_pair_match_the_rfc(n: int) -> None:
    leaves = [i.to_bytes(2, "big") for i in range(n)]
    tree = MerkleTree(leaves)
    assert tree.root() == _mth(leaves) == merkle_root(leaves)
    for size in range(1, n + 1):
        root = tree.root(size)
        assert root == _mth(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == _path(index, leaves[:size])
            assert verify_inclusion(tree.leaf_hash(index), index, size, proof, root)
            if index ^ 1 < size:
                assert not verify_inclusion(tree.leaf_hash(index), index ^ 1, size, proof, root)
        for size1 in range(1, size):
            proof = tree.consistency_proof(size1, size)
            assert proof == _subproof(size1, leaves[:size], True)
            assert verify_consistency(size1, size, tree.root(size1), root, proof)
            assert not verify_consistency(size1, size, root, tree.root(size1), proof)
    assert inclusion_proof(leaves, n - 1) == tree.inclusion_proof(n - 1)
    assert consistency_proof(leaves, 1) == tree.consistency_proof(1)


def test_tree_refuses_out_of_range_requests() -> None:
    tree = MerkleTree(LEAVES[:5])
    with pytest.raises(ValueError):
        tree.root(6)
    with pytest.raises(ValueError):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError):
        tree.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        tree.consistency_proof(6)
    with pytest.raises(ValueError):
        tree.append_hash(b"short")
    with pytest.raises(IndexError):
        tree.leaf_hash(5)
    assert tree.consistency_proof(0) == [] and tree.consistency_proof(5) == []


def test_incremental_tree_appends_1000_at_100k_in_milliseconds() -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(101_000)]
    tree = MerkleTree(leaves[:100_000])
    start = time.perf_counter()
    tree.extend(leaves[100_000:])
    root = tree.root()
    elapsed = time.perf_counter() - start
    assert root == merkle_root(leaves)
    assert tree.root(100_000) == merkle_root(leaves[:100_000])
    proof = tree.consistency_proof(100_000)
    assert verify_consistency(100_000, 101_000, tree.root(100_000), root, proof)
    index = 77_777
    assert verify_inclusion(
        leaf_hash(leaves[index]), index, 101_000, tree.inclusion_proof(index), root
    )
    print(f"append 1,000 leaves at 100,000 and take the root: {elapsed * 1000:.2f} ms")
    assert elapsed < 0.1  # about 3 ms; a full recomputation takes about 150 ms
