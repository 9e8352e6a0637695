"""The simulator's parts: seeds, clocks, the loop, links, connections and the flooding
baseline."""

from __future__ import annotations

import enum
import hashlib
import marshal
import random
from dataclasses import dataclass, field

import pytest

from memmesh.sim import SimOptions
from memmesh.sim.clock import NodeClock
from memmesh.sim.flood import FloodUpdate, run_flood
from memmesh.sim.links import Links
from memmesh.sim.loop import EventLoop, Trace
from memmesh.sim.network import Frame, Network
from memmesh.sim.seed import derive, rng_for


def test_sub_seeds_are_stable_and_independent() -> None:
    assert derive(1, "network") == derive(1, "network")
    assert derive(1, "network") != derive(1, "disk") != derive(2, "network")
    # Pinned: a printed seed must mean the same run in every later version.
    assert derive(1, "network") == 0x966E7208FFB581A8
    assert rng_for(5, "x").random() == rng_for(5, "x").random()


def test_a_clock_maps_its_deadlines_back_to_virtual_time() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        clock = NodeClock(rng.randint(-300_000, 300_000), rng.randint(-200, 200))
        now = rng.randint(0, 10**9)
        deadline = clock.local_ms(now) + rng.randint(-5, 100_000)
        at = clock.virtual_us(deadline, now)
        assert clock.local_ms(at) >= deadline
        assert at == now or clock.local_ms(at - 1) < deadline


def test_the_loop_runs_events_in_time_then_schedule_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    for name, at in (("c", 5), ("a", 1), ("b", 5), ("d", 3)):
        loop.at(at, seen.append, name)
    loop.run_until(4)
    assert seen == ["a", "d"] and loop.now_us == 4
    loop.run_until(10)
    assert seen == ["a", "d", "c", "b"]


def test_the_trace_encoding_is_unambiguous() -> None:
    one, two = Trace(), Trace()
    one.add("ab", b"c")
    two.add("a", b"bc")
    assert one.hexdigest() != two.hexdigest()


def test_the_trace_hash_is_sha256_over_the_encoding_whatever_the_buffering() -> None:
    """Buffered, the hash is still SHA-256 over every event's encoding in order: across the
    buffer's flushes, a digest read midway, and every kind of part (a bool, a large int, an
    enum member, encoded as its plain value)."""
    trace = Trace()
    stream = bytearray(b"memmesh-sim-trace/v2\x00")
    digests = []
    for i in range(3_000):
        parts: tuple[int | str | bytes, ...] = (
            "send" if i % 3 else f"kind-{i}",
            i,
            -i,
            i % 2 == 0,
            bytes([i % 256]) * (i % 97),
            "\u00e9t\u00e9",
            i << 70,
        )
        trace.add(*parts)
        stream += marshal.dumps(parts, 2)
        if i in (0, 1_234):
            digests.append((trace.hexdigest(), hashlib.sha256(stream).hexdigest()))
    assert len(stream) > 2 * 65_536 and trace.events == 3_000
    digests.append((trace.hexdigest(), hashlib.sha256(stream).hexdigest()))
    assert all(got == want for got, want in digests), digests
    plain, member = Trace(), Trace()
    plain.add("refused", 7, "bad_signature")
    member.add("refused", _Seven.SEVEN, _Code.BAD)
    assert plain.hexdigest() == member.hexdigest()


def test_a_trace_event_depends_on_its_values_alone() -> None:
    """marshal version 2 writes no references: the same values encode alike whether they are
    one shared object or equal copies (a later version would mark the shared one)."""
    shared = b"x" * 40
    one, two = Trace(), Trace()
    one.add(shared, shared, "kind", "kind")
    two.add(b"x" * 40, bytes(b"x" * 40), "ki" + "nd", "".join(["k", "ind"]))
    assert one.hexdigest() == two.hexdigest()
    with pytest.raises(TypeError, match="not object"):
        one.add(object())  # type: ignore[arg-type]


class _Seven(enum.IntEnum):
    SEVEN = 7


class _Code(enum.StrEnum):
    BAD = "bad_signature"


def test_links_keep_frames_in_order_unless_reordering() -> None:
    options = SimOptions(seed=1, jitter_ms_mean=30)
    links = Links(options, random.Random(1), "link")
    arrivals = [links.transmit(0, 1, 500, t * 100)[0] for t in range(200)]
    assert arrivals == sorted(arrivals)
    lossy = Links(SimOptions(seed=1, loss=0.5), random.Random(1), "link")
    lost = sum(1 for t in range(1000) if not lossy.transmit(0, 1, 500, t))
    assert 400 < lost < 600
    lossy.faulty = False
    assert all(lossy.transmit(0, 1, 500, 2000 + t) for t in range(100))


@dataclass
class _Host:
    events: list[tuple[int, str, str]] = field(default_factory=list)
    down: set[int] = field(default_factory=set)

    def incarnation(self, node: int) -> int | None:
        return None if node in self.down else 1

    def node_at(self, address: str) -> int | None:
        return int(address.removeprefix("sim://n"))

    def on_connected(self, node: int, handle: str, outbound: bool) -> None:
        self.events.append((node, "connected", handle))

    def on_frame(self, node: int, handle: str, frame: Frame) -> None:
        self.events.append((node, "frame", frame.data.decode()))

    def on_gone(self, node: int, handle: str, reason: str | None) -> None:
        self.events.append((node, "gone", str(reason)))


def _network() -> tuple[Network, EventLoop, _Host]:
    loop, host = EventLoop(), _Host()
    network = Network(SimOptions(seed=1), loop, Trace(), host, random.Random(1))
    network.add_node()
    network.add_node()
    return network, loop, host


def test_a_close_reaches_the_other_side_after_the_frames_sent_before_it() -> None:
    network, loop, host = _network()
    network.dial(0, "sim://n1")
    loop.run_until(1_000_000)
    assert [e[:2] for e in host.events] == [(1, "connected"), (0, "connected")]
    network.send(0, "sim://n1", b"bye", "Bye", ())
    network.close(0, "sim://n1", "shutdown")
    loop.run_until(2_000_000)
    assert host.events[2:] == [(0, "gone", "None"), (1, "frame", "bye"), (1, "gone", "shutdown")]


def test_a_partition_closes_both_sides_and_a_quick_heal_closes_neither() -> None:
    network, loop, host = _network()
    network.dial(0, "sim://n1")
    loop.run_until(1_000_000)
    network.partition([0, 1])
    loop.run_until(1_500_000)
    network.heal()  # before any heartbeat timed out
    loop.run_until(10_000_000)
    assert all(kind != "gone" for _, kind, _ in host.events)
    network.partition([0, 1])
    loop.run_until(20_000_000)
    assert sorted(n for n, kind, _ in host.events if kind == "gone") == [0, 1]


def test_a_dial_to_a_down_node_is_refused() -> None:
    network, loop, host = _network()
    host.down.add(1)
    network.dial(0, "sim://n1")
    loop.run_until(1_000_000)
    assert host.events == [(0, "gone", "None")]


def test_flooding_a_ring_costs_what_it_should() -> None:
    nodes = 10
    ring = [(i, (i + 1) % nodes) for i in range(nodes)]
    ring = sorted((min(a, b), max(a, b)) for a, b in ring)
    result = run_flood(
        SimOptions(seed=1, nodes=nodes, latency_ms_min=5, latency_ms_max=5, jitter_ms_mean=0),
        ring,
        [FloodUpdate(0, 0, 100), FloodUpdate(1_000_000, 3, 100)],
    )
    # The writer sends two copies, every other node forwards one: nodes + 1 per update.
    assert result.deliveries == 2 * (nodes + 1)
    assert result.hops == [nodes // 2, nodes // 2]
    assert result.reached == [nodes, nodes]
    assert result.figures()["deliveries_per_update_per_node"] == round(11 / 9, 4)
