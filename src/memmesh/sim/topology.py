"""Who is given whose address: a ring plus a few random seed peers per node, never a full mesh.

The ring keeps the seed graph connected; the random peers give it a small diameter. The same
undirected graph is what the flooding baseline floods over.
"""

from __future__ import annotations

import random

__all__ = ["connected", "edges_of", "seed_graph"]


def seed_graph(nodes: int, extra: int, rng: random.Random) -> list[list[int]]:
    """For each node, the nodes it is given (its ring successor first, then ``extra`` others)."""
    known: list[list[int]] = []
    for i in range(nodes):
        successor = (i + 1) % nodes
        peers = [successor] if successor != i else []
        others = [j for j in range(nodes) if j not in (i, successor)]
        peers.extend(rng.sample(others, min(extra, len(others))))
        known.append(peers)
    return known


def edges_of(known: list[list[int]]) -> list[tuple[int, int]]:
    """The undirected edges, sorted."""
    return sorted({(min(i, j), max(i, j)) for i, peers in enumerate(known) for j in peers})


def connected(members: list[int], edges: list[tuple[int, int]]) -> bool:
    """Whether ``members`` form one component over the ``edges`` between them."""
    if not members:
        return True
    inside = set(members)
    neighbours: dict[int, list[int]] = {m: [] for m in members}
    for a, b in edges:
        if a in inside and b in inside:
            neighbours[a].append(b)
            neighbours[b].append(a)
    seen, todo = {members[0]}, [members[0]]
    while todo:
        for other in neighbours[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return len(seen) == len(inside)
