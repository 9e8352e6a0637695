"""The push tree: one spanning tree for every writer's envelopes, rooted at the lowest rank.

New envelopes are pushed along the edges of one tree and announced (``IHave``) on every other
link; anti-entropy repairs whatever a push missed. This module keeps the tree's state for one
node; :class:`~memmesh.core.node.MeshCore` sends the messages. Why a rooted tree rather than
trees built from duplicate pushes (Plumtree) is decision 24 in ``docs/decisions.md``: in short,
a tree pruned by the duplicates of many concurrent writers falls apart (two nodes on one cycle
prune two of its links at once), and one tree per writer floods every writer's first envelopes.

**Rank.** Each node key has a rank, ``tagged_hash("memmesh/tree-rank/v1", mesh id | key)``;
lower ranks come first. Nothing about a key's rank can be chosen without choosing the key.

**The root** is the node of lowest rank whose beacon is still heard. A node claims the root
when it knows of no better one and none of its active peers ranks lower: so only local minima
ever beacon, and the lowest-ranked node of each connected part of the mesh always does. The root
signs a ``Beacon(root, seq, hops=0)`` every ``beacon_interval_ms``; every node forwards the
first copy of each new seq to all its other active peers, with ``hops`` set to its own distance
from the root. A better root's beacon replaces a worse one at once; a root not heard for
``root_timeout_ms`` is dropped, and the next claim takes over.

**Parent and children.** A node's parent is the active peer that reported the fewest hops in the
current root's beacons (ties: the current parent, then the lower rank), so the tree is a
breadth-first tree from the root and its depth is the root's distance to the farthest node. A
node sends ``Graft`` to a new parent and ``Prune`` to the parent it leaves, so every node knows
its children. As in any distance-vector scheme, stale distances could make loops, and a loop
counts its distances up (every step a triggered update to every peer: a storm that grows with
each step). The rules that keep them out, after Babel and DSDV:

- only distances reported for the current seq count (the parent's from the seq before is kept
  until it reports the new one, so a new seq does not move the tree by itself);
- *feasibility*: within one seq, a peer can be the parent only if it reported fewer hops than
  the smallest distance this node has had in that seq (``feasible``). So a node's distance only
  falls within a seq, or is lost; one that has no feasible parent left says 255 and waits for
  the root's next seq, which makes every peer feasible again;
- a node's children are never its parent candidates (poisoned reverse), and a distance of
  ``HOPS_MAX`` or more is no path at all.

A node whose distance changes tells every peer at once (a beacon of the same seq with the new
hops, or 255); by the feasibility rule it does so a bounded number of times per seq, whatever
the loss, duplication or reordering of the beacons it hears.

**Lost Graft and Prune.** Either can be lost, and each left the tree wrong for good: a parent
that never heard a child's ``Graft`` only announces to it, so the child's whole subtree waits
for announcement timeouts or gets envelopes the long way round; a parent that never heard a
``Prune`` keeps pushing to a peer that left, so every envelope crosses that link twice and
the first copy may take the long way. So a child grafts its parent again at every new seq,
and a parent drops a child that has not grafted in the current seq or the one before.

**Eager links.** A link is eager (envelopes are pushed on it) when it joins a node to its
parent or to one of its children. Until a node has both a root and a parent (a fresh start, a
lost root, a lost parent with no other peer heard from), every link is eager: flooding, which
is never wrong, only costly.
"""

from __future__ import annotations

from ..crypto import SigningKey, verify
from ..ids import tagged_hash

__all__ = ["BEACON_DOMAIN", "HOPS_MAX", "UNREACHABLE", "PushTree", "beacon_message", "rank"]

BEACON_DOMAIN = b"memmesh/beacon/v1\x00"
HOPS_MAX = 32
"""A peer that reports this many hops or more cannot be a parent: "no path to the root" (sent as
255 by a node that lost its own), and a bound on how far a stale distance can count up in a
loop of parents before it is dropped; far beyond the depth of any tree of a real mesh."""
UNREACHABLE = 255


def rank(mesh_id: bytes, node: bytes) -> bytes:
    return tagged_hash(b"memmesh/tree-rank/v1", mesh_id + node)


def beacon_message(mesh_id: bytes, root: bytes, seq: int) -> bytes:
    """What a beacon's signature covers: ``mesh id | root | seq u64`` (big-endian). The hop
    count is not signed: each node sets it when it forwards the beacon."""
    return mesh_id + root + seq.to_bytes(8, "big")


class PushTree:
    """One node's view of the push tree. Pure state: no messages, no clock of its own."""

    def __init__(self, mesh_id: bytes, node: bytes) -> None:
        self.mesh_id = mesh_id
        self.node = node
        self.own_rank = rank(mesh_id, node)
        self.root: bytes | None = None
        self.seq = 0
        """The newest seq of the root's beacons this node has seen (or sent, as the root)."""
        self.signature = b""
        """The root's signature over that seq, forwarded with it."""
        self.heard_ms = 0
        """When that seq arrived."""
        self.hops: dict[str, int] = {}
        """Peer -> the hops it reported for the current seq (the parent: perhaps for the seq
        before, until it reports this one; see ``carried``)."""
        self.carried: str | None = None
        """The parent, while its distance is still the one it reported for the seq before."""
        self.feasible = UNREACHABLE
        """The smallest distance this node has had in the current seq, from a parent that
        reported for it: only peers that reported fewer hops can be its parent now."""
        self.parent: str | None = None
        self.children: dict[str, int] = {}
        """Peers that chose this node as their parent (they sent ``Graft``) -> the seq this
        node held when that child last grafted. A child grafts again at every seq, so one that
        has not since the seq before is gone (its ``Prune`` was lost): ``_expire_children``."""
        self.previous_seq = 0
        """The seq held before the current one."""
        self._ranks: dict[bytes, bytes] = {}

    # -- questions ----------------------------------------------------------------------------

    def rank_of(self, node: bytes) -> bytes:
        found = self._ranks.get(node)
        if found is None:
            if len(self._ranks) >= 1 << 16:  # a bound on a cache of derived values
                self._ranks.clear()
            found = self._ranks[node] = rank(self.mesh_id, node)
        return found

    @property
    def is_root(self) -> bool:
        return self.root == self.node

    @property
    def settled(self) -> bool:
        """A root is known and this node is joined to it: the root itself, or with a parent."""
        return self.root is not None and (self.is_root or self.parent is not None)

    def eager(self, peer: str) -> bool:
        """Whether new envelopes go to ``peer`` at once (else it gets their ids)."""
        return not self.settled or peer == self.parent or peer in self.children

    def distance(self) -> int | None:
        """This node's hops from the root, as it tells its peers; None without a path."""
        if self.is_root:
            return 0
        if self.parent is None:
            return None
        return self.hops[self.parent] + 1

    def advertised(self) -> int:
        distance = self.distance()
        return UNREACHABLE if distance is None else distance

    def outranks(self, node: bytes, other: bytes | None) -> bool:
        """``node`` would be a better root than ``other`` (anyone beats no root)."""
        return other is None or self.rank_of(node) < self.rank_of(other)

    def best_parent(self, active: list[tuple[str, bytes]]) -> str | None:
        """Among active (peer, node key) pairs that reported a path to the current root and
        are not this node's children: the fewest hops, then the current parent, then the lowest
        rank. Never decided by dict or set order."""
        bound = min(self.feasible, HOPS_MAX - 1)
        heard = [
            (p, n)
            for p, n in active
            if self.hops.get(p, HOPS_MAX) < bound and p not in self.children
        ]
        if not heard:
            return None
        peer, _ = min(
            heard, key=lambda pn: (self.hops[pn[0]], pn[0] != self.parent, self.rank_of(pn[1]))
        )
        return peer

    # -- changes ------------------------------------------------------------------------------

    def adopt(self, root: bytes, seq: int, signature: bytes, now_ms: int) -> None:
        """A new beacon seq, from the current root or a better one. Distances reported for
        the seq before no longer count, but the parent's, until it reports this one."""
        parent = self.parent if root == self.root else None
        kept = self.hops.get(parent) if parent is not None else None
        self._expire_children(seq if root == self.root else None)
        self.root = root
        self.hops.clear()
        self.parent = self.carried = None
        if parent is not None and kept is not None:
            self.hops[parent] = kept
            self.parent = self.carried = parent
        self.feasible = UNREACHABLE
        self.seq, self.signature, self.heard_ms = seq, signature, now_ms

    def report(self, peer: str, hops: int) -> None:
        """``peer`` reported ``hops`` for the current seq."""
        self.hops[peer] = hops
        if peer == self.carried:
            self.carried = None
            self._note_distance()

    def follow(self, peer: str | None) -> None:
        """Make ``peer`` the parent (None: no path to the root)."""
        self.parent = peer
        self.carried = None if peer != self.carried else peer
        self._note_distance()

    def _note_distance(self) -> None:
        distance = self.distance()
        if distance is not None and self.carried is None:
            self.feasible = min(self.feasible, distance)

    def claim(self, key: SigningKey, now_ms: int) -> None:
        """Become the root, or as the root, sign the next beacon."""
        if not self.is_root:
            self._expire_children(None)
            self.root = self.node
            self.hops.clear()
            self.parent = self.carried = None
            self.seq = 0
        seq = max(self.seq + 1, now_ms)
        if self.seq:
            self._expire_children(seq)
        self.seq = seq
        self.signature = key.sign(BEACON_DOMAIN, beacon_message(self.mesh_id, self.node, self.seq))
        self.heard_ms = now_ms

    def graft(self, peer: str) -> None:
        self.children[peer] = self.seq

    def prune(self, peer: str) -> None:
        self.children.pop(peer, None)

    def _expire_children(self, new_seq: int | None) -> None:
        """Moving from the current seq to ``new_seq`` (None: to another root, whose seqs are
        not comparable): drop the children that grafted neither in the current seq nor in the
        one before. A child re-grafts at every seq, so these left, and their ``Prune`` was
        lost; pushing to them would send every envelope twice, and the first copy may come the
        long way round. On a change of root every child gets a fresh seq's grace."""
        if new_seq is None:
            self.children = dict.fromkeys(sorted(self.children), 0)
            self.previous_seq = 0
            return
        if new_seq == self.seq:
            return
        floor = self.previous_seq
        self.children = {c: seq for c, seq in sorted(self.children.items()) if seq >= floor}
        self.previous_seq = self.seq

    def lose_root(self) -> None:
        self.root = None
        self.seq, self.signature = 0, b""
        self.hops.clear()
        self.parent = self.carried = None
        self.feasible = UNREACHABLE

    def forget(self, peer: str) -> None:
        self.hops.pop(peer, None)
        self.children.pop(peer, None)
        if self.parent == peer:
            self.parent = self.carried = None

    def verify(self, root: bytes, seq: int, signature: bytes) -> bool:
        return verify(root, BEACON_DOMAIN, beacon_message(self.mesh_id, root, seq), signature)
