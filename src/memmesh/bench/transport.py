"""``memmesh bench transport``: how fast one writer's updates reach N-1 other processes through
memmesh nodes, against the ``pycrdt-websocket`` relay measured in the same run with the same
layout and the same offered rates.

**Layout.** Both systems run as N separate processes on loopback, started by this bench:

- memmesh: :func:`~memmesh.runtime.swarm.swarm_up` starts N ``memmesh node run`` processes
  with the default configuration: node ``i`` is given every node before it as a peer, and each
  node keeps its active view (5 sessions dialled, at most 8), so past 9 nodes some receivers
  are two hops from the writer (``memmesh.active_peers`` records each node's active sessions
  after the warm-up).
  The **writer** is this bench process: it ``PUT``s ``/v1/store/items`` to node0 (namespace
  ``bench``, key ``s<step>-<i>``, value ``i``) over one aiohttp client session of at most
  ``in_flight_max`` concurrent requests. Node0 signs the claim and the envelope, commits it
  durably (``commit_batch_window_ms`` lets writes arriving meanwhile share the commit and the
  envelope) and pushes it; every other node verifies, commits and integrates it. The N-1 other
  nodes are the **receivers**.
- relay: one process runs ``pycrdt.websocket.WebsocketServer`` (one ``YRoom``) behind an aiohttp
  ``web.WebSocketResponse``; N client processes each hold a ``pycrdt.Doc`` synchronised by
  ``pycrdt.Provider`` over an aiohttp ``ClientSession.ws_connect`` websocket (pycrdt-websocket
  0.16 ships no aiohttp adapter; :class:`_AiohttpChannel` is the ~20-line ``Channel`` it needs).
  Client 0 is the **writer**: it sets ``map["s<step>-<i>"] = i`` in its document, one
  transaction per update; the other N-1 clients are the receivers. Nothing is signed, verified
  or persisted. Both sides use websockets without compression.

**Offered load** (open loop). For each rate R of the ladder (``rates``, updates/s), the writer
offers ``round(R * seconds_per_rate)`` updates, update ``i`` scheduled at ``t0 + i / R``
whatever happened to the earlier ones. Its **issue time** is read just before the update leaves
the writer's code (before ``session.put`` for memmesh, before the map assignment for the relay).
An update is **late** if issued more than ``late_ms`` (10 ms) after its scheduled time (the
writer's event loop was busy: it is still sent and measured); memmesh updates are **skipped**
(never issued) if ``in_flight_max`` requests are already outstanding at their scheduled time,
and **failed** if the ``PUT`` does not answer 201. ``issued_on_time`` counts the rest.

**Arrival** at a receiver:

- memmesh: a separate watcher process opens every receiver's LMDB store read-only (LMDB allows
  reader processes beside the node's writer; the node is not touched and runs no extra code) and
  reads the head of node0's log from the ``heads`` database (the seq of node0's last envelope it
  holds; logs are admitted in seq order). It wakes on inotify ``IN_MODIFY`` of each store's
  ``data.mdb``: at every commit LMDB writes the data pages, flushes them, then writes the meta
  page through a descriptor opened ``O_DSYNC``, and the kernel reports each write when its
  system call returns; the wake-up for the data pages normally reads the old head (the data
  flush has yet to run), so the new head is normally first seen at the wake-up for the meta
  page, once the commit is durable. An update written in node0's envelope ``seq`` has
  **arrived** at a receiver at the first read that shows a head ``>= seq``, timestamped just
  before that read began. The watcher also re-reads every store every ``fallback_ms`` (100 ms)
  in case an event is missed; such a sweep can see a meta page written but not yet flushed, up
  to one flush early (``watcher.fallback_finds`` counts the arrivals found that way;
  ``fsync_ms_p50``, measured in this run, is the size of a flush). Resolution: the watcher's
  wake-up latency (tens of microseconds when it has a core; more when both cores are busy, which
  then also delays the nodes). Bias: the node integrates the envelope into its document, and so
  shows it through its API, just after the commit (well under a millisecond here), so arrival
  flatters memmesh by that much; nothing is subtracted or added.
- relay: each receiver's ``Map.observe`` callback (run while ``pycrdt.Provider`` applies the
  update) records the time for each key it sees. Resolution: that of the clock.

Every time is ``time.monotonic_ns()`` (``CLOCK_MONOTONIC``, one clock for every process of the
machine). **Propagation** of an update to a receiver = arrival - issue time. After the last
update of a step the bench waits until every receiver holds every issued update or
``drain_s`` (5 s) have passed since the writer finished; an (update, receiver) pair not
delivered by then (and every pair of a failed update) counts as infinite propagation.

**Figures per step** (``steps``): ``offered``, ``issued_on_time``, ``late``, ``skipped``,
``failed`` as above, ``issue_lag_p99_ms`` the writer's own lateness; ``p50_ms``, ``p99_ms``,
``max_ms``: percentiles (nearest rank) over all (issued update, receiver) pairs, None when
infinite (``p50_ms_by_receiver``: the median per receiver, memmesh node1 first);
``delivered`` the fraction of offered updates that reached every receiver; ``passed``:
``p99_ms`` < 100 and ``issued_on_time`` >= 99 % and ``delivered`` >= 99 % of the offered
updates;
``cpu_ms_per_update``: CPU time (user + system, from ``/proc/<pid>/stat``, 10 ms ticks) of the
system's processes (memmesh: the N nodes; relay: the server and the N clients, writer included)
from just before the step's first update until its drain ended, divided by the updates issued
(memmesh: acknowledged); ``cpu_cores`` that CPU time over the window's wall time. The memmesh
writer (this bench process, an HTTP client) and the watcher are not counted:
``driver_cpu_ms_per_update`` and ``watcher_cpu_ms_per_update`` give theirs. memmesh steps also
give ``ack_p50_ms`` and ``ack_p99_ms``: issue time to the writer reading node0's 201 (the
claim durable and integrated at node0), the writer's side of the propagation; and, from each
node's ``memmesh_commit_seconds`` scraped before and after the step, ``writer_commit_ms_mean``
and ``commit_ms_mean`` (the mean durable commit at node0 and at the receivers) and
``commit_share`` (the receivers' time in commits over the step's window: each commit holds its
node's event loop, and every hop waits for one). ``commit_ms_mean_at_200`` and
``commit_share_at_200`` repeat the 200/s step's among memmesh's headline figures.

**Headline figures** for each system (``memmesh`` and ``relay``): ``max_rate``, the highest
rate of the ladder whose step passed (0 if none; ``max_rate_is_ladder_top`` says the ladder may
have capped it); ``p50_ms_at_200``, ``p99_ms_at_200``, ``p50_ms_at_1000`` and
``cpu_ms_per_update`` (taken at the 200/s step) from the steps at 200 and 1000 updates/s (None
if the ladder lacks them). Top level: ``rate_ratio`` = memmesh ``max_rate`` / relay
``max_rate`` (goal >= 1.0: match the relay while signing, verifying and persisting every
update); ``batch_window_ms``, the nodes' ``commit_batch_window_ms`` in use (goal <= 10);
``deliveries_per_update_per_node`` (goal <= 1.5) over the whole ladder: envelope copies the nodes
received (every node's ``memmesh_duplicate_deliveries_total`` plus, on each receiver, the growth
of ``memmesh_envelopes``, i.e. the copies it integrated) over the copies needed (node0's new
envelopes times N-1). Several updates share an envelope when node0 batches them
(``updates_per_envelope``); copies pushed back to node0 count as waste. The relay's figure is
the Y update messages its N clients received over updates times N-1 (the writer receives an
echo of each of its own updates). Goal for memmesh: ``p50_ms_at_200`` <= 5. ``goals_met``
compares each goal with its figure (None: not measured). memmesh also reports
``active_peers`` (each node's sessions after the warm-up), ``write_errors`` and the watcher's
``wakeups`` and ``fallback_finds``.

**The durability floor** (``memmesh.concurrent_commit_ms``): every receiver commits each
envelope durably before it shows it (DESIGN §4 rule 6), and the N-1 receivers of one push commit
at about the same moment on one disk. Measured in this run: N-1 processes each commit one small
LMDB transaction (``sync`` and ``metasync`` on, as the node does) at the same instant, 30
rounds; ``p50`` over every commit's duration and ``p50_of_slowest`` over each round's slowest.
That ``p50`` is the part of ``p50_ms_at_200`` a one-hop receiver pays for the disk alone (0 on
tmpfs, where ``fsync`` returns at once).

Absolute latencies on a shared 2-core machine are noisy; both systems run on the same machine
in the same run, so their ratio is the figure to compare. ``duration_s`` is the wall time of
the whole benchmark.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import json
import math
import os
import select
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import web

from ..errors import LocalError

__all__ = ["DEFAULT_RATES", "TransportBenchFailed", "run_transport_bench"]

DEFAULT_RATES = (50, 100, 200, 500, 1000, 2000)
"""Offered rates, updates per second."""
P99_BUDGET_MS = 100.0
PASS_FRACTION = 0.99
LATE_MS = 10.0
IN_FLIGHT_MAX = 256
DRAIN_S = 5.0
FALLBACK_MS = 100.0
GOALS = {
    "rate_ratio": 1.0,
    "batch_window_ms": 10,
    "deliveries_per_update_per_node": 1.5,
    "memmesh_p50_ms_at_200": 5.0,
}
_START_DELAY_NS = 20_000_000
"""The first update of a step is scheduled this long after the step is set up."""
_WARMUP_UPDATES = 20
_WARMUP_TIMEOUT_S = 30.0
_LINE_LIMIT = 1 << 28
_NAMESPACE = "bench"
_ROOT = "bench"
_RELAY_PATH = "/bench"
"""The relay's one room: the websocket path every client connects to."""
_CHILD_MODULE = "memmesh.bench.transport"
_RELAY_TRANSPORT = (
    "aiohttp websockets: pycrdt.websocket.WebsocketServer behind aiohttp web.WebSocketResponse, "
    "clients pycrdt.Provider over aiohttp ClientSession.ws_connect"
)


class TransportBenchFailed(LocalError):
    """The benchmark could not run as designed (a swarm that does not converge, a child that
    died): no figure would mean what its name says."""


def run_transport_bench(
    *,
    nodes: int = 10,
    rates: Sequence[int] = DEFAULT_RATES,
    seconds_per_rate: float = 5.0,
    drain_s: float = DRAIN_S,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Run both systems over the ladder (temporary files under ``directory``); every process
    this starts is stopped before it returns or raises."""
    if nodes < 2:
        raise ValueError("the bench needs a writer and at least one receiver: nodes >= 2")
    ladder = sorted({int(r) for r in rates})
    if not ladder or ladder[0] < 1:
        raise ValueError("rates are positive integers (updates per second)")
    if seconds_per_rate <= 0:
        raise ValueError("seconds_per_rate must be positive")
    _require_relay()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memmesh-bench-", dir=directory) as tmp:
        root = Path(tmp)
        fsync_ms = _fsync_ms_p50(root)
        floor = _concurrent_commit_ms(root / "commit-floor", nodes - 1)
        memmesh = _run_memmesh(nodes, ladder, seconds_per_rate, drain_s, root / "memmesh")
        memmesh["fsync_ms_p50"] = fsync_ms
        memmesh["concurrent_commit_ms"] = floor
        relay = asyncio.run(_run_relay(nodes, ladder, seconds_per_rate, drain_s, root / "relay"))
    relay_max = relay["max_rate"]
    rate_ratio = round(memmesh["max_rate"] / relay_max, 3) if relay_max else None
    return {
        "benchmark": "transport",
        "nodes": nodes,
        "rates": ladder,
        "seconds_per_rate": seconds_per_rate,
        "memmesh": memmesh,
        "relay": relay,
        "rate_ratio": rate_ratio,
        "goal_rate_ratio": GOALS["rate_ratio"],
        "batch_window_ms": memmesh["batch_window_ms"],
        "goal_batch_window_ms": GOALS["batch_window_ms"],
        "deliveries_per_update_per_node": memmesh["deliveries_per_update_per_node"],
        "goal_deliveries_per_update_per_node": GOALS["deliveries_per_update_per_node"],
        "goal_memmesh_p50_ms_at_200": GOALS["memmesh_p50_ms_at_200"],
        "goals_met": _goals_met(memmesh, rate_ratio),
        "p99_budget_ms": P99_BUDGET_MS,
        "pass_fraction": PASS_FRACTION,
        "late_ms": LATE_MS,
        "in_flight_max": IN_FLIGHT_MAX,
        "drain_s": drain_s,
        "relay_transport": _RELAY_TRANSPORT,
        "clock": f"time.monotonic_ns ({time.get_clock_info('monotonic').implementation})",
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _goals_met(memmesh: dict[str, Any], rate_ratio: float | None) -> dict[str, bool | None]:
    """Each goal against its figure; None when the figure was not measured."""

    def at_most(value: float | None, goal: float) -> bool | None:
        return None if value is None else value <= goal

    return {
        "rate_ratio": None if rate_ratio is None else rate_ratio >= GOALS["rate_ratio"],
        "batch_window_ms": at_most(memmesh["batch_window_ms"], GOALS["batch_window_ms"]),
        "deliveries_per_update_per_node": at_most(
            memmesh["deliveries_per_update_per_node"], GOALS["deliveries_per_update_per_node"]
        ),
        "memmesh_p50_ms_at_200": at_most(memmesh["p50_ms_at_200"], GOALS["memmesh_p50_ms_at_200"]),
    }


def _require_relay() -> None:
    try:
        import pycrdt.websocket  # noqa: F401, PLC0415 - only to say what is missing
    except ImportError:
        raise TransportBenchFailed(
            "the relay baseline needs pycrdt-websocket: pip install 'memmesh[bench]'"
        ) from None


# -- figures ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    """What one step of the ladder measured, before it is reduced to figures."""

    rate: int
    offered: int
    receivers: int
    issue_ns: list[int] = field(default_factory=list)
    """Issue time per offered update; -1: skipped (never issued)."""
    lag_ns: list[int] = field(default_factory=list)
    """Issue time minus scheduled time, per offered update; -1: skipped."""
    arrivals: list[list[float]] = field(default_factory=list)
    """Per issued update, per receiver: propagation in ns (``math.inf``: not delivered)."""
    failed: set[int] = field(default_factory=set)
    """Updates issued that the system refused (memmesh: the PUT did not answer 201)."""
    window_ns: int = 0
    cpu_ns: int = 0
    updates: int = 0
    """Updates the CPU time is divided by (memmesh: acknowledged; relay: issued)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(ns: float) -> float | None:
    return None if math.isinf(ns) else round(ns / 1e6, 3)


def _step_figures(step: _Step) -> dict[str, Any]:
    pairs = [t for per_update in step.arrivals for t in per_update]
    issued = sum(t >= 0 for t in step.issue_ns)
    skipped = step.offered - issued
    lags = [lag for lag in step.lag_ns if lag >= 0]
    late = sum(lag > LATE_MS * 1e6 for lag in lags)
    on_time = sum(
        1 for i, lag in enumerate(step.lag_ns) if 0 <= lag <= LATE_MS * 1e6 and i not in step.failed
    )
    delivered = sum(all(not math.isinf(t) for t in per) for per in step.arrivals)
    p50 = _percentile(pairs, 0.5) if pairs else math.inf
    p99 = _percentile(pairs, 0.99) if pairs else math.inf
    passed = (
        p99 < P99_BUDGET_MS * 1e6
        and on_time >= PASS_FRACTION * step.offered
        and delivered >= PASS_FRACTION * step.offered
    )
    updates = max(step.updates, 1)
    return {
        "rate": step.rate,
        "offered": step.offered,
        "issued_on_time": on_time,
        "late": late,
        "skipped": skipped,
        "failed": len(step.failed),
        "issue_lag_p99_ms": _ms(_percentile(lags, 0.99)) if lags else None,
        "delivered": round(delivered / step.offered, 4),
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "max_ms": _ms(max(pairs)) if pairs else None,
        "p50_ms_by_receiver": [
            _ms(_percentile([per[j] for per in step.arrivals], 0.5)) if step.arrivals else None
            for j in range(step.receivers)
        ],
        "passed": passed,
        "cpu_ms_per_update": round(step.cpu_ns / 1e6 / updates, 4),
        "cpu_cores": round(step.cpu_ns / step.window_ns, 3) if step.window_ns else None,
        "window_s": round(step.window_ns / 1e9, 3),
        **step.extra,
    }


def _headline(steps: list[dict[str, Any]], ladder: list[int]) -> dict[str, Any]:
    by_rate = {s["rate"]: s for s in steps}
    passing = [s["rate"] for s in steps if s["passed"]]
    max_rate = max(passing, default=0)

    def at(rate: int, name: str) -> Any:
        return by_rate[rate][name] if rate in by_rate else None

    return {
        "max_rate": max_rate,
        "max_rate_is_ladder_top": max_rate == ladder[-1],
        "p50_ms_at_200": at(200, "p50_ms"),
        "p99_ms_at_200": at(200, "p99_ms"),
        "p50_ms_at_1000": at(1000, "p50_ms"),
        "cpu_ms_per_update": at(200, "cpu_ms_per_update"),
    }


# -- process accounting ---------------------------------------------------------------------------

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _cpu_ns(pid: int) -> int:
    """User + system CPU time of a live process (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_NS


def _cpu_total_ns(pids: Sequence[int]) -> int:
    return sum(_cpu_ns(pid) for pid in pids)


def _own_cpu_ns() -> int:
    times = os.times()
    return int((times.user + times.system) * 1e9)


def _fsync_ms_p50(directory: Path, samples: int = 50) -> float:
    """A small write plus ``fsync`` of a file on the bench's file system, median in ms: the
    size of the early bias of the memmesh arrival times (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    out = []
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for i in range(samples):
            start = time.perf_counter()
            os.pwrite(fd, i.to_bytes(4, "little") * 1024, 0)
            os.fsync(fd)
            out.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return round(statistics.median(out) * 1e3, 3)


def _commit_at_once(path: str, barrier: Any, rounds: int, out: Any) -> None:
    import lmdb  # noqa: PLC0415 - in the child process only

    env = lmdb.open(path, map_size=16 << 20, sync=True, metasync=True, writemap=False)
    times = []
    for i in range(rounds):
        barrier.wait()
        start = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.put(b"k", i.to_bytes(4, "little") * 64)
        times.append(time.perf_counter() - start)
    env.close()
    out.put(times)


def _concurrent_commit_ms(directory: Path, processes: int, rounds: int = 30) -> dict[str, Any]:
    """Durable LMDB commits by ``processes`` processes at the same instant (see the module
    docstring): the disk's share of a one-hop propagation."""
    import multiprocessing  # noqa: PLC0415

    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(processes), context.Queue()
    children = []
    for i in range(processes):
        path = directory / f"p{i}"
        path.mkdir(parents=True, exist_ok=True)
        child = context.Process(target=_commit_at_once, args=(str(path), barrier, rounds, out))
        child.start()
        children.append(child)
    results = [out.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
    all_ms = [t * 1e3 for times in results for t in times]
    slowest = [max(times[r] for times in results) * 1e3 for r in range(rounds)]
    return {
        "processes": processes,
        "rounds": rounds,
        "p50": round(statistics.median(all_ms), 3),
        "p50_of_slowest": round(statistics.median(slowest), 3),
    }


# -- child processes ------------------------------------------------------------------------------


class _Child:
    """A child process of this module, driven by one JSON object per line both ways."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process

    @classmethod
    async def start(cls, name: str, role: str, args: dict[str, Any], log: Path) -> _Child:
        with log.open("ab") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                _CHILD_MODULE,
                role,
                json.dumps(args),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=_LINE_LIMIT,
            )
        return cls(name, process)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def read(self, timeout_s: float = 60.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise TransportBenchFailed(f"{self.name} exited (status {code}); see its log")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def ask(self, command: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read(timeout_s)

    async def stop(self) -> None:
        """Close its stdin (it exits at EOF), then SIGTERM, then SIGKILL."""
        process = self.process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        for signal_it in (None, process.terminate, process.kill):
            if process.returncode is not None:
                return
            if signal_it is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await process.wait()


async def _stop_all(children: Sequence[_Child]) -> None:
    await asyncio.gather(*(c.stop() for c in children))


async def _schedule(
    rate: int, count: int, issue: Callable[[int], bool]
) -> tuple[list[int], list[int]]:
    """Call ``issue(i)`` at ``t0 + i / rate`` (open loop), yielding to the event loop between
    calls; return each update's issue time and its lag behind its scheduled time (both -1 when
    ``issue`` declined it)."""
    period_ns = 1e9 / rate
    t0 = time.monotonic_ns() + _START_DELAY_NS
    issued = [-1] * count
    lags = [-1] * count
    for i in range(count):
        target = t0 + int(i * period_ns)
        now = time.monotonic_ns()
        if target > now:
            await asyncio.sleep((target - now) / 1e9)
            now = time.monotonic_ns()
        else:
            await asyncio.sleep(0)
        if issue(i):
            issued[i] = now
            lags[i] = max(0, now - target)  # a timer may fire a hair early
    return issued, lags


async def _drain(done: Callable[[], Awaitable[bool]], deadline_ns: int, every_s: float) -> None:
    while not await done() and time.monotonic_ns() < deadline_ns:
        await asyncio.sleep(every_s)


# -- memmesh ------------------------------------------------------------------------------------


def _run_memmesh(
    nodes: int, ladder: list[int], seconds: float, drain_s: float, directory: Path
) -> dict[str, Any]:
    from ..config import load_settings  # noqa: PLC0415
    from ..runtime.swarm import swarm_down, swarm_up  # noqa: PLC0415

    swarm = swarm_up(nodes, directory / "swarm")
    try:
        entries = swarm["nodes"]
        window_ms = load_settings(data_dir=Path(entries[0]["data_dir"])).commit_batch_window_ms
        result = asyncio.run(_memmesh_ladder(entries, ladder, seconds, drain_s, directory))
        result["batch_window_ms"] = window_ms
        return result
    finally:
        swarm_down(directory / "swarm")


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        body: dict[str, Any] = json.loads(response.read())
        return body


def _scrape(api: str) -> dict[str, float]:
    """The unlabelled samples of a node's ``/metrics`` (enough for the counters used here)."""
    with urllib.request.urlopen(api + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class _Writer:
    """The memmesh writer: PUTs to node0, at most ``IN_FLIGHT_MAX`` at once."""

    def __init__(self, session: aiohttp.ClientSession, api: str) -> None:
        self.session = session
        self.url = api + "/v1/store/items"
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.seqs: list[int] = []
        self.acked_ns: list[int] = []
        self.errors: dict[str, int] = {}

    async def run(self, step: int, rate: int, count: int) -> tuple[list[int], list[int]]:
        self.seqs = [-1] * count
        self.acked_ns = [-1] * count

        def issue(i: int) -> bool:
            if self.in_flight >= IN_FLIGHT_MAX:
                return False
            self.in_flight += 1
            task = asyncio.create_task(self._put(i, f"s{step}-{i}"))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return True

        issued = await _schedule(rate, count, issue)
        if self.tasks:
            await asyncio.gather(*self.tasks)
        return issued

    async def _put(self, i: int, key: str) -> None:
        body = json.dumps({"namespace": _NAMESPACE, "key": key, "value": i}).encode()
        try:
            async with self.session.put(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                reply = await response.json()
                if response.status == 201:
                    self.acked_ns[i] = time.monotonic_ns()
                    self.seqs[i] = int(reply["seq"])
                else:
                    self._error(f"{response.status} {reply.get('error')}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(type(exc).__name__)
        finally:
            self.in_flight -= 1

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _memmesh_ladder(
    entries: list[dict[str, Any]],
    ladder: list[int],
    seconds: float,
    drain_s: float,
    directory: Path,
) -> dict[str, Any]:
    from ..wire import pack_u32  # noqa: PLC0415

    node0 = entries[0]
    state0 = await asyncio.to_thread(_get_json, node0["api"] + "/v1/state")
    log_key = bytes.fromhex(node0["pubkey"]) + pack_u32(int(state0["epoch"]))
    watcher = await _Child.start(
        "watcher",
        "watch",
        {
            "stores": [str(Path(e["data_dir"]) / "store") for e in entries[1:]],
            "log_key": log_key.hex(),
            "fallback_ms": FALLBACK_MS,
        },
        directory / "watcher.log",
    )
    try:
        await watcher.read()
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT_MAX)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            bench = _MemmeshBench(entries, _Writer(session, node0["api"]), watcher, drain_s)
            await bench.warm_up()
            own_start, watcher_start = _own_cpu_ns(), _cpu_ns(watcher.pid)
            metrics_start = await _scrape_all(entries)
            for index, rate in enumerate(ladder):
                await bench.step(index, rate, max(1, round(rate * seconds)))
                await asyncio.sleep(0.5)  # let anti-entropy rounds and late pushes settle
            metrics_end = await _scrape_all(entries)
            own_ns, watcher_ns = _own_cpu_ns() - own_start, _cpu_ns(watcher.pid) - watcher_start
        dump = await watcher.ask({"cmd": "dump"}, timeout_s=120)
    finally:
        await watcher.stop()
    changes: list[list[list[int]]] = dump["changes"]
    for step, seqs, end in bench.steps:
        step.arrivals = _memmesh_arrivals(step.issue_ns, seqs, changes, end)
    figures = [_step_figures(s) for s, _, _ in bench.steps]
    total_updates = max(1, sum(s.updates for s, _, _ in bench.steps))
    copies = _memmesh_copies(metrics_start, metrics_end, total_updates)
    at_200 = next((f for f in figures if f["rate"] == 200), {})
    return {
        **_headline(figures, ladder),
        "commit_ms_mean_at_200": at_200.get("commit_ms_mean"),
        "commit_share_at_200": at_200.get("commit_share"),
        "deliveries_per_update_per_node": copies["deliveries_per_update_per_node"],
        "updates_per_envelope": copies["updates_per_envelope"],
        "driver_cpu_ms_per_update": round(own_ns / 1e6 / total_updates, 4),
        "watcher_cpu_ms_per_update": round(watcher_ns / 1e6 / total_updates, 4),
        "active_peers": bench.active_peers,
        "write_errors": bench.writer.errors,
        "watcher": {
            "fallback_ms": FALLBACK_MS,
            "wakeups": dump["wakeups"],
            "fallback_finds": dump["fallback_finds"],
        },
        "steps": figures,
    }


class _MemmeshBench:
    """The steps of the memmesh ladder; arrivals are filled in from the watcher at the end."""

    def __init__(
        self, entries: list[dict[str, Any]], writer: _Writer, watcher: _Child, drain_s: float
    ) -> None:
        self.entries = entries
        self.pids = [int(e["pid"]) for e in entries]
        self.writer = writer
        self.watcher = watcher
        self.drain_s = drain_s
        self.active_peers: list[int] = []
        self.steps: list[tuple[_Step, list[int], int]] = []
        """Each step, the seq acknowledged for each of its updates, and when its drain ended."""

    async def seqs(self) -> list[int]:
        reply = await self.watcher.ask({"cmd": "seqs"})
        out: list[int] = reply["seqs"]
        return out

    async def reached(self, target: int) -> bool:
        return min(await self.seqs()) >= target

    async def warm_up(self) -> None:
        """Not measured: the mesh forms, and every receiver is shown to get updates."""
        await self.writer.run(-1, 20, _WARMUP_UPDATES)
        target = max(self.writer.seqs)
        deadline = time.monotonic_ns() + int(_WARMUP_TIMEOUT_S * 1e9)
        await _drain(lambda: self.reached(target), deadline, 0.05)
        if target < 1 or not await self.reached(target):
            raise TransportBenchFailed(
                f"warm-up: node0 acknowledged up to seq {target} ({self.writer.errors}); the "
                f"receivers hold {await self.seqs()} after {_WARMUP_TIMEOUT_S:.0f} s"
            )
        states = await asyncio.gather(
            *(asyncio.to_thread(_get_json, e["api"] + "/v1/state") for e in self.entries)
        )
        self.active_peers = [int(s["active_peers"]) for s in states]

    async def step(self, index: int, rate: int, count: int) -> None:
        step = _Step(rate, count, len(self.entries) - 1)
        before = await _scrape_all(self.entries)
        cpu0, start = _cpu_total_ns(self.pids), time.monotonic_ns()
        step.issue_ns, step.lag_ns = await self.writer.run(index, rate, count)
        seqs = list(self.writer.seqs)
        acked = [s for s in seqs if s >= 0]
        last = max(acked, default=0)
        deadline = time.monotonic_ns() + int(self.drain_s * 1e9)
        await _drain(lambda: self.reached(last), deadline, 0.01)
        end = time.monotonic_ns()
        step.cpu_ns, step.window_ns = _cpu_total_ns(self.pids) - cpu0, end - start
        step.updates = len(acked)
        step.failed = {i for i, s in enumerate(seqs) if s < 0 and step.issue_ns[i] >= 0}
        acks = [
            float(a - t) for a, t in zip(self.writer.acked_ns, step.issue_ns, strict=True) if a >= 0
        ]
        step.extra = {
            "ack_p50_ms": _ms(_percentile(acks, 0.5)) if acks else None,
            "ack_p99_ms": _ms(_percentile(acks, 0.99)) if acks else None,
        }
        after = await _scrape_all(self.entries)
        step.extra.update(_memmesh_copies(before, after, len(acked)))
        step.extra.update(_memmesh_commits(before, after, step.window_ns))
        self.steps.append((step, seqs, end))


async def _scrape_all(entries: list[dict[str, Any]]) -> list[dict[str, float]]:
    return list(await asyncio.gather(*(asyncio.to_thread(_scrape, e["api"]) for e in entries)))


def _memmesh_copies(
    before: list[dict[str, float]], after: list[dict[str, float]], updates: int
) -> dict[str, Any]:
    """Envelope copies received over copies needed, between two scrapes of every node
    (index 0 is the writer's node); see the module docstring."""

    def delta(i: int, name: str) -> float:
        return _delta(before, after, i, name)

    receivers = len(before) - 1
    new_envelopes = delta(0, "memmesh_envelopes")
    received = sum(delta(i, "memmesh_duplicate_deliveries_total") for i in range(len(before)))
    received += sum(delta(i, "memmesh_envelopes") for i in range(1, len(before)))
    needed = new_envelopes * receivers
    return {
        "deliveries_per_update_per_node": round(received / needed, 3) if needed else None,
        "updates_per_envelope": round(updates / new_envelopes, 3) if new_envelopes else None,
    }


def _delta(
    before: list[dict[str, float]], after: list[dict[str, float]], i: int, name: str
) -> float:
    """How much node ``i``'s counter ``name`` grew between two scrapes."""
    return after[i].get(name, 0.0) - before[i].get(name, 0.0)


def _memmesh_commits(
    before: list[dict[str, float]], after: list[dict[str, float]], window_ns: int
) -> dict[str, Any]:
    """The durable commits of the step, from each node's ``memmesh_commit_seconds``: their
    mean duration at the writer's node and at the receivers, and the share of the receivers'
    time spent in them (each one holds its node's event loop, and every hop waits for one)."""

    def total(nodes: range, name: str) -> float:
        return sum(_delta(before, after, i, name) for i in nodes)

    def mean_ms(nodes: range) -> float | None:
        count = total(nodes, "memmesh_commit_seconds_count")
        return round(total(nodes, "memmesh_commit_seconds_sum") / count * 1e3, 3) if count else None

    receivers = range(1, len(before))
    busy = total(receivers, "memmesh_commit_seconds_sum")
    return {
        "writer_commit_ms_mean": mean_ms(range(1)),
        "commit_ms_mean": mean_ms(receivers),
        "commit_share": round(busy / (window_ns / 1e9 * len(receivers)), 3)
        if window_ns and receivers
        else None,
    }


def _memmesh_arrivals(
    issue_ns: list[int], seqs: list[int], changes: list[list[list[int]]], end_ns: int
) -> list[list[float]]:
    """Per issued update, per receiver: first time the receiver's head of node0's log reached
    the update's seq, minus the issue time; inf if not by ``end_ns`` or never acknowledged."""
    tables = [([c[1] for c in rows], [c[0] for c in rows]) for rows in changes]
    out: list[list[float]] = []
    for issued, seq in zip(issue_ns, seqs, strict=True):
        if issued < 0:
            continue
        per: list[float] = []
        for heads, times in tables:
            at = bisect.bisect_left(heads, seq) if seq >= 0 else len(heads)
            if at < len(heads) and times[at] <= end_ns:
                per.append(float(max(0, times[at] - issued)))
            else:
                per.append(math.inf)
        out.append(per)
    return out


# -- relay --------------------------------------------------------------------------------------


async def _run_relay(
    nodes: int, ladder: list[int], seconds: float, drain_s: float, directory: Path
) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    tag = {"dir": str(directory)}  # names the bench's processes in their command lines
    children: list[_Child] = []
    try:
        server = await _Child.start(
            "relay server", "relay-server", tag, directory / "relay-server.log"
        )
        children.append(server)
        url = f"http://127.0.0.1:{int((await server.read())['port'])}{_RELAY_PATH}"
        for i in range(nodes):
            args = {**tag, "url": url, "writer": i == 0}
            log = directory / f"relay-client{i}.log"
            children.append(await _Child.start(f"relay client {i}", "relay-client", args, log))
        for child in children[1:]:
            await child.read()
        bench = _RelayBench(children[0], children[1:], drain_s)
        await bench.warm_up()
        for index, rate in enumerate(ladder):
            await bench.step(index, rate, max(1, round(rate * seconds)), seconds)
            await asyncio.sleep(0.5)
        dumps = [await r.ask({"cmd": "dump"}, timeout_s=120) for r in bench.receivers]
    finally:
        await _stop_all(children)
    arrivals = [d["arrivals"] for d in dumps]
    for step, prefix, end in bench.steps:
        step.arrivals = _relay_arrivals(step.issue_ns, prefix, arrivals, end)
    figures = [_step_figures(s) for s, _, _ in bench.steps]
    needed = sum(s.updates for s, _, _ in bench.steps) * (nodes - 1)
    return {
        **_headline(figures, ladder),
        "deliveries_per_update_per_node": round(bench.received / needed, 3),
        "steps": figures,
    }


class _RelayBench:
    """The steps of the relay ladder; arrivals are filled in from the receivers at the end."""

    def __init__(self, server: _Child, clients: list[_Child], drain_s: float) -> None:
        self.writer, self.receivers = clients[0], clients[1:]
        self.clients = clients
        self.pids = [server.pid] + [c.pid for c in clients]
        self.drain_s = drain_s
        self.received = 0
        """Y update messages every client received during the steps."""
        self.steps: list[tuple[_Step, str, int]] = []

    async def delivered(self, prefix: str, count: int) -> bool:
        replies = await asyncio.gather(
            *(r.ask({"cmd": "count", "prefix": prefix}) for r in self.receivers)
        )
        return all(int(reply["count"]) >= count for reply in replies)

    async def updates(self) -> int:
        replies = await asyncio.gather(*(c.ask({"cmd": "updates"}) for c in self.clients))
        return sum(int(r["updates_received"]) for r in replies)

    async def warm_up(self) -> None:
        await self.writer.ask({"cmd": "run", "prefix": "w-", "rate": 20, "count": _WARMUP_UPDATES})
        deadline = time.monotonic_ns() + int(_WARMUP_TIMEOUT_S * 1e9)
        await _drain(lambda: self.delivered("w-", _WARMUP_UPDATES), deadline, 0.05)
        if not await self.delivered("w-", _WARMUP_UPDATES):
            raise TransportBenchFailed("warm-up: the relay did not deliver to every client")

    async def step(self, index: int, rate: int, count: int, seconds: float) -> None:
        prefix = f"s{index}-"
        step = _Step(rate, count, len(self.receivers))
        updates0 = await self.updates()
        cpu0, start = _cpu_total_ns(self.pids), time.monotonic_ns()
        command = {"cmd": "run", "prefix": prefix, "rate": rate, "count": count}
        reply = await self.writer.ask(command, timeout_s=seconds * 10 + 60)
        deadline = time.monotonic_ns() + int(self.drain_s * 1e9)
        await _drain(lambda: self.delivered(prefix, count), deadline, 0.05)
        end = time.monotonic_ns()
        step.cpu_ns, step.window_ns = _cpu_total_ns(self.pids) - cpu0, end - start
        step.issue_ns, step.lag_ns = reply["issued"], reply["lags"]
        step.updates = count
        received = await self.updates() - updates0
        self.received += received
        step.extra = {
            "deliveries_per_update_per_node": round(received / (count * len(self.receivers)), 3)
        }
        self.steps.append((step, prefix, end))


def _relay_arrivals(
    issue_ns: list[int], prefix: str, arrivals: list[dict[str, int]], end_ns: int
) -> list[list[float]]:
    """Per issued update, per receiver: its observe time minus the issue time; inf if the
    receiver did not see it by ``end_ns``."""
    out: list[list[float]] = []
    for i, issued in enumerate(issue_ns):
        if issued < 0:
            continue
        per: list[float] = []
        for seen in arrivals:
            at = seen.get(f"{prefix}{i}")
            per.append(math.inf if at is None or at > end_ns else float(max(0, at - issued)))
        out.append(per)
    return out


class _AiohttpChannel:
    """A ``pycrdt.Channel`` over an aiohttp websocket (server or client side); counts the Y
    update messages it receives."""

    def __init__(
        self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, path: str
    ) -> None:
        self._ws = ws
        self._path = path
        self._send_lock = asyncio.Lock()
        self.updates_received = 0

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> _AiohttpChannel:
        return self

    async def __anext__(self) -> bytes:
        while True:
            message = await self._ws.receive()
            if message.type is aiohttp.WSMsgType.BINARY:
                data: bytes = message.data
                if data[:2] == b"\x00\x02":  # YMessageType.SYNC, YSyncMessageType.SYNC_UPDATE
                    self.updates_received += 1
                return data
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                raise StopAsyncIteration

    async def send(self, message: bytes) -> None:
        async with self._send_lock:
            await self._ws.send_bytes(message)

    async def recv(self) -> bytes:
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ConnectionError("the websocket closed") from None


# -- the children's side --------------------------------------------------------------------------


def _say(reply: dict[str, Any], out: IO[str] | None = None) -> None:
    stream = sys.stdout if out is None else out
    stream.write(json.dumps(reply) + "\n")
    stream.flush()


async def _stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    return reader


async def _relay_server(args: dict[str, Any]) -> None:
    from pycrdt.websocket import WebsocketServer, exception_logger  # noqa: PLC0415

    stdin = await _stdin_reader()
    async with WebsocketServer(
        auto_clean_rooms=False, exception_handler=exception_logger
    ) as server:
        # Start the room before any client can connect: two clients whose first connections
        # race both see the room not yet started, both start it, the second start fails
        # inside ``serve`` (logged, not raised) and that client never syncs.
        await server.get_room(_RELAY_PATH)

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            await server.serve(_AiohttpChannel(ws, request.path))
            return ws

        app = web.Application()
        app.router.add_get("/{room}", handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            _say({"port": runner.addresses[0][1]})
            while await stdin.readline():
                pass
        finally:
            await runner.cleanup()


async def _relay_client(args: dict[str, Any]) -> None:
    from pycrdt import Doc, Map, MapEvent, Provider  # noqa: PLC0415

    doc: Doc[Any] = Doc()
    root: Map[int] = doc.get(_ROOT, type=Map)
    arrivals: dict[str, int] = {}
    counts: dict[str, int] = {}

    def observe(event: MapEvent) -> None:
        now = time.monotonic_ns()
        for key in event.keys:  # type: ignore[attr-defined] # a slot pycrdt does not annotate
            if key not in arrivals:
                arrivals[key] = now
                prefix = key[: key.index("-") + 1]
                counts[prefix] = counts.get(prefix, 0) + 1

    if not args["writer"]:
        root.observe(observe)

    def setter(prefix: str) -> Callable[[int], bool]:
        def issue(i: int) -> bool:
            root[f"{prefix}{i}"] = i
            return True

        return issue

    stdin = await _stdin_reader()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(args["url"], compress=0) as ws,
    ):
        channel = _AiohttpChannel(ws, _RELAY_PATH)
        provider = Provider(doc, channel)
        async with provider:
            await provider.synced.wait()
            _say({"ready": True})
            while line := await stdin.readline():
                command = json.loads(line)
                cmd = command["cmd"]
                if cmd == "run":
                    issued, lags = await _schedule(
                        int(command["rate"]), int(command["count"]), setter(command["prefix"])
                    )
                    _say({"issued": issued, "lags": lags})
                elif cmd == "count":
                    _say({"count": counts.get(command["prefix"], 0)})
                elif cmd == "updates":
                    _say({"updates_received": channel.updates_received})
                elif cmd == "dump":
                    _say({"arrivals": arrivals, "updates_received": channel.updates_received})


_IN_MODIFY = 0x2
_INOTIFY_EVENT = 16
"""struct inotify_event: int wd, u32 mask, u32 cookie, u32 len, then len bytes of name."""


class _HeadWatcher:
    """Reads the head of one log in several LMDB stores opened read-only (see the module
    docstring), woken by inotify, with a timer sweep as a fallback."""

    def __init__(self, stores: list[str], log_key: bytes) -> None:
        import lmdb  # noqa: PLC0415

        self.lmdb = lmdb
        self.key = log_key
        self.envs = [
            lmdb.open(path, readonly=True, lock=True, subdir=True, max_dbs=16, create=False)
            for path in stores
        ]
        self.dbs = [env.open_db(b"heads", create=False) for env in self.envs]
        self.last = [0] * len(stores)
        self.changes: list[list[list[int]]] = [[] for _ in stores]
        self.fallback_finds = 0
        self.wakeups = 0
        libc = ctypes.CDLL(None, use_errno=True)
        self.inotify = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if self.inotify < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds: dict[int, int] = {}
        for index, path in enumerate(stores):
            target = os.fsencode(os.path.join(path, "data.mdb"))
            wd = int(libc.inotify_add_watch(self.inotify, target, _IN_MODIFY))
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
            self.wds[wd] = index

    def head(self, index: int) -> int:
        from ..wire import crc32, unpack_u32, unpack_u64  # noqa: PLC0415

        env = self.envs[index]
        while True:
            try:
                with env.begin(db=self.dbs[index], buffers=False) as txn:
                    value = txn.get(self.key)
                break
            except self.lmdb.MapResizedError:
                env.set_mapsize(0)  # the node grew its map: adopt the new size
        if value is None:
            return 0
        record = bytes(value)
        if unpack_u32(record[:4]) != crc32(self.key, record[4:]):
            raise TransportBenchFailed("a heads record failed its checksum: format changed?")
        return unpack_u64(record[4:12])

    def read(self, index: int, *, by_timer: bool) -> None:
        now = time.monotonic_ns()
        seq = self.head(index)
        if seq > self.last[index]:
            self.last[index] = seq
            self.changes[index].append([now, seq])
            self.fallback_finds += by_timer

    def touched(self) -> set[int]:
        out: set[int] = set()
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.inotify, 1 << 16):
                at = 0
                while at + _INOTIFY_EVENT <= len(data):
                    wd, _mask, _cookie, length = (
                        int.from_bytes(data[at : at + 4], sys.byteorder, signed=True),
                        *(
                            int.from_bytes(data[at + o : at + o + 4], sys.byteorder)
                            for o in (4, 8, 12)
                        ),
                    )
                    if wd in self.wds:
                        out.add(self.wds[wd])
                    at += _INOTIFY_EVENT + length
        return out


def _watch(args: dict[str, Any]) -> None:
    watcher = _HeadWatcher(list(args["stores"]), bytes.fromhex(args["log_key"]))
    fallback_ns = int(float(args["fallback_ms"]) * 1e6)
    stdin = sys.stdin.buffer.fileno()
    poller = select.epoll()
    poller.register(watcher.inotify, select.EPOLLIN)
    poller.register(stdin, select.EPOLLIN)
    for index in range(len(watcher.envs)):
        watcher.read(index, by_timer=False)
    _say({"ready": True})
    pending = b""
    next_sweep = time.monotonic_ns() + fallback_ns
    while True:
        timeout = max(0, next_sweep - time.monotonic_ns()) / 1e9
        events = poller.poll(timeout)
        fds = {fd for fd, _ in events}
        if watcher.inotify in fds:
            watcher.wakeups += 1
            for index in sorted(watcher.touched()):
                watcher.read(index, by_timer=False)
        if stdin in fds:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                if command["cmd"] == "seqs":
                    _say({"seqs": watcher.last})
                elif command["cmd"] == "dump":
                    _say(
                        {
                            "changes": watcher.changes,
                            "wakeups": watcher.wakeups,
                            "fallback_finds": watcher.fallback_finds,
                        }
                    )
        if time.monotonic_ns() >= next_sweep:
            for index in range(len(watcher.envs)):
                watcher.read(index, by_timer=True)
            next_sweep = time.monotonic_ns() + fallback_ns


def _child_main(argv: list[str]) -> int:
    role, args = argv[0], json.loads(argv[1])
    if role == "watch":
        _watch(args)
    elif role == "relay-server":
        asyncio.run(_relay_server(args))
    elif role == "relay-client":
        asyncio.run(_relay_client(args))
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
