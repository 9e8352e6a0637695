"""The fault schedule drawn from the seed: partitions and heals, clogged links, crashes (some
inside a commit) and restarts, joins and graceful leaves, then the final heal.

At the final heal every fault stops for good (TigerBeetle's liveness mode): partitions heal,
links stop losing, duplicating, reordering and clogging, disks stop failing, and every crashed
node restarts. From then on the cluster must converge within the bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .cluster import Cluster, SimNode
from .loop import EventLoop
from .topology import connected

__all__ = ["Faults"]

_RESTART_RETRY_US = (200_000, 2_000_000)
_DRAIN_PROBE_US = 100_000
_TORN_CRASH_WAIT_US = 1_000_000
"""A crash armed for the next commit strikes anyway after this long without one."""


class Faults:
    def __init__(
        self,
        cluster: Cluster,
        loop: EventLoop,
        rng: random.Random,
        edges: list[tuple[int, int]],
        join: Callable[[], None],
    ) -> None:
        self.cluster, self.loop, self.rng = cluster, loop, rng
        self.options = cluster.options
        self.edges = list(edges)
        self._join = join
        self.healed = False
        self.counts: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def schedule(self) -> None:
        options, rng, loop = self.options, self.rng, self.loop
        duration = options.duration_ms * 1000
        nodes = options.nodes
        if options.partitions:
            slot = duration * 9 // 10 // options.partitions
            for episode in range(options.partitions):
                start = episode * slot + rng.randrange(slot // 2 + 1)
                end = min((episode + 1) * slot, start + rng.randint(slot // 4 + 1, slot))
                loop.at(start, self._partition, self._split(nodes))
                loop.at(end, self._heal_partition)
        for _ in range(options.clogs):
            a, b = rng.choice(self.edges) if self.edges else (0, 1)
            if rng.random() < 0.5:
                a, b = b, a
            start = rng.randrange(duration * 9 // 10 + 1)
            length = rng.randint(500_000, 4_000_000)
            extra = rng.randint(200_000, 3_000_000)
            loop.at(start, self._clog, (a, b, start + length, extra))
        for _ in range(options.crashes):
            node = rng.randrange(nodes)
            at = rng.randrange(duration * 9 // 10 + 1)
            down = rng.randint(100_000, 4_000_000)
            torn = rng.random() < options.torn_commit
            lands = rng.random() < 0.5
            loop.at(at, self._crash, (node, down, torn, lands))
        for _ in range(options.joins):
            loop.at(rng.randint(duration // 10, duration * 8 // 10), self._do_join)
        for _ in range(options.leaves):
            loop.at(rng.randint(duration // 5, duration * 8 // 10), self._leave)
        loop.at(duration, self._final_heal)

    def _split(self, nodes: int) -> list[int]:
        """Sides of a partition: one node cut off, or a random split with two sides."""
        if self.rng.random() < 0.3:
            lone = self.rng.randrange(nodes)
            return [1 if i == lone else 0 for i in range(nodes)]
        while True:
            group = [self.rng.randrange(2) for _ in range(nodes)]
            if 0 < sum(group) < nodes:
                return group

    # -- partitions and clogs -----------------------------------------------------------------

    def _partition(self, group: list[int]) -> None:
        if self.healed:
            return
        self._count("partitions")
        network = self.cluster.network
        sides = group + [0] * (len(network.group) - len(group))  # nodes that joined: side 0
        network.partition(sides)

    def _heal_partition(self, _: object) -> None:
        if not self.healed:
            self._count("partition_heals")
            self.cluster.network.heal()

    def _clog(self, arg: tuple[int, int, int, int]) -> None:
        a, b, until, extra = arg
        if not self.healed:
            self._count("clogs")
            self.cluster.network.links.clog(a, b, until, extra)

    # -- crashes and restarts -----------------------------------------------------------------

    def _crash(self, arg: tuple[int, int, bool, bool]) -> None:
        index, down, torn, lands = arg
        node = self.cluster.node_of(index)
        if self.healed or node.core is None or node.left:
            return
        if torn:
            self._count("crashes_armed_in_commit")
            node.disk.crash_armed = lands
            self.loop.after(_TORN_CRASH_WAIT_US, self._crash_if_armed, (node, node.incarnation))
        else:
            self._count("crashes")
            self.cluster.crash(node, "crash")
        self.loop.after(down, self._restart, node)

    def _crash_if_armed(self, arg: tuple[SimNode, int]) -> None:
        node, incarnation = arg
        if node.disk.crash_armed is not None:
            node.disk.crash_armed = None
            if node.incarnation == incarnation and node.core is not None and not self.healed:
                self._count("crashes")
                self.cluster.crash(node, "crash (no commit came)")

    def _restart(self, node: SimNode) -> None:
        if node.core is not None or node.left:
            return
        self._count("restarts")
        if not self.cluster.start(node):
            self.retry_start(node)

    def retry_start(self, node: SimNode) -> None:
        """A start failed (a read fault): try again a little later."""
        self._count("start_failures")
        low, high = _RESTART_RETRY_US
        self.loop.after(self.rng.randint(low, high), self._restart, node)

    # -- joins and leaves ---------------------------------------------------------------------

    def _do_join(self, _: object) -> None:
        if not self.healed:
            self._count("joins")
            self._join()

    def _leave(self, _: object) -> None:
        if self.healed:
            return
        cluster = self.cluster
        staying = [
            n.index for n in cluster.nodes if not n.left and not n.leaving and n.byzantine is None
        ]
        for index in self.rng.sample(staying, len(staying)):
            rest = [i for i in staying if i != index]
            if len(rest) >= 2 and connected(rest, self.edges):
                node = cluster.node_of(index)
                node.leaving = True
                self._count("leaves_started")
                self.loop.after(_DRAIN_PROBE_US, self._drain, node)
                return

    def _drain(self, node: SimNode) -> None:
        """Leave once every log this node holds has its head on another node's disk (so the
        mesh keeps everything it acknowledged); until then keep syncing."""
        core = node.core
        if core is not None:
            others = [
                n
                for n in self.cluster.nodes
                if n is not node and not n.left and n.byzantine is None
            ]
            drained = all(
                any(other.disk.holds(head.id) for other in others) for _, head in core.frontier()
            )
            if drained:
                self._count("leaves")
                self.cluster.leave(node)
                return
        self.loop.after(_DRAIN_PROBE_US, self._drain, node)

    # -- the end of the fault phase -----------------------------------------------------------

    def _final_heal(self, _: object) -> None:
        self.healed = True
        cluster = self.cluster
        cluster.trace.add("final-heal")
        cluster.network.heal()
        cluster.network.links.faulty = False
        for node in cluster.nodes:
            node.disk.faults_on = False
            node.disk.crash_armed = None
        for node in cluster.nodes:
            if node.core is None and not node.left:
                self._restart(node)

    def add_edges(self, node: int, peers: list[int]) -> None:
        self.edges.extend((min(node, p), max(node, p)) for p in peers)
