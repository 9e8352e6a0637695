"""RFC 6962 Merkle roots against the published vectors in ../shared/fixtures (copied in tests/)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from memmesh.merkle import EMPTY_ROOT, leaf_hash, merkle_root, node_hash

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "rfc6962.json").read_text())


def test_empty_root() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["empty_root_hex"]
    assert merkle_root([]) == EMPTY_ROOT


def test_roots_of_every_prefix_match_rfc6962() -> None:
    leaves = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
    for size, root in VECTORS["roots_hex_by_size"].items():
        assert merkle_root(leaves[: int(size)]).hex() == root, size


def _recursive(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC states it."""
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_recursive(leaves[:k]), _recursive(leaves[k:]))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_iterative_root_equals_the_rfc_definition(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == _recursive(leaves)
