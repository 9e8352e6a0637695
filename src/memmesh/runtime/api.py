"""The node's local HTTP API (loopback by default, optional bearer token).

``GET /livez``, ``GET /readyz`` (``?verbose`` for the checks), ``GET /v1/state``,
``GET/POST/DELETE /v1/peers``, ``GET /v1/members``, ``POST /v1/claims`` (a claim signed elsewhere,
such as an admin's admit or revoke, or an agent's own claim), ``GET /metrics`` (Prometheus text),
``GET /v1/openapi.json``, and the memory routes of :mod:`memmesh.runtime.store_api`. Errors are
JSON ``{"error": code, "detail": text}`` with a fitting status.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import __version__
from ..claims import decode_claim
from ..core import SessionState
from ..envelope import decode_envelope
from ..errors import Rejected
from .attest_api import AttestApi
from .openapi import openapi_document
from .signals import RESOLUTION_BUCKETS_S, Histogram
from .store_api import BadRequest, Conflicting, NotFound, StoreApi, body_of, error

if TYPE_CHECKING:
    from .node import NodeRuntime

__all__ = ["build_api"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN = frozenset({"/livez", "/readyz"})


def build_api(node: NodeRuntime) -> web.Application:
    token = node.settings.api_token
    secret = token.get_secret_value() if token is not None else None

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if secret is not None and request.path not in _OPEN:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
                return error(401, "unauthorized", "a bearer token is required")
        try:
            return await handler(request)
        except BadRequest as exc:
            return error(400, "bad_request", str(exc))
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Conflicting as exc:
            return error(409, "conflict", str(exc))

    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    api = _Api(node)
    app.router.add_get("/livez", api.livez)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/v1/state", api.state)
    app.router.add_get("/v1/peers", api.peers)
    app.router.add_post("/v1/peers", api.add_peer)
    app.router.add_delete("/v1/peers", api.remove_peer)
    app.router.add_get("/v1/members", api.members)
    app.router.add_get("/v1/evidence", api.evidence)
    app.router.add_get("/v1/evidence/{id}", api.evidence_one)
    app.router.add_get("/v1/members/{key}/chain", api.member_chain)
    app.router.add_get("/v1/agents/{key}", api.agent)
    app.router.add_post("/v1/claims", api.post_claim)
    app.router.add_get("/v1/openapi.json", api.openapi)
    app.router.add_get("/metrics", api.metrics)
    api.store.add_routes(app)
    AttestApi(node).add_routes(app)
    return app


def _evidence_json(key: bytes, pair: tuple[bytes, bytes], raw: bool) -> dict[str, Any]:
    first, second = (decode_envelope(e) for e in pair)
    out: dict[str, Any] = {
        "id": key.hex(),
        "kind": "equivocation",
        "author": first.author.hex(),
        "epoch": first.epoch,
        "seq": first.seq,
        "envelopes": [first.id.hex(), second.id.hex()],
    }
    if raw:
        out["first"], out["second"] = pair[0].hex(), pair[1].hex()
    return out


def _hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise BadRequest("a key is 64 hex digits") from None
    if len(key) != 32:
        raise BadRequest("a key is 64 hex digits")
    return key


class _Api:
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_NodeCollector(node))
        self.store = StoreApi(node)

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        node = self.node
        checks = {
            "store_open": not node.store.closed,
            "serving": node.gossip_url is not None,
            "may_write": node.core.may_write(),
        }
        ready = checks["store_open"] and checks["serving"]
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready"}
        if "verbose" in request.query:
            body["checks"] = checks
        return web.json_response(body, status=200 if ready else 503)

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.state())

    async def peers(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": self.node.state()["peers"]})

    async def add_peer(self, request: web.Request) -> web.Response:
        url = (await body_of(request)).get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise BadRequest("url must be a ws:// or wss:// gossip URL")
        self.node.add_peer(url)
        return web.json_response({"added": url}, status=202)

    async def remove_peer(self, request: web.Request) -> web.Response:
        url = request.query.get("url")
        if url is None:
            url = (await body_of(request)).get("url")
        if not isinstance(url, str):
            raise BadRequest("name the peer's url")
        self.node.remove_peer(url)
        return web.json_response({"removed": url})

    async def evidence(self, request: web.Request) -> web.Response:
        """Equivocation evidence held: each pair of envelopes one author signed for one seq."""
        return web.json_response(
            {"evidence": [_evidence_json(k, pair, False) for k, pair in self._evidence_pairs()]}
        )

    async def evidence_one(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"].lower()
        for key, pair in self._evidence_pairs():
            if key.hex() == wanted:
                body = _evidence_json(key, pair, True)
                body["mesh"] = self.node.genesis.mesh_id.hex()
                return web.json_response(body)
        raise NotFound(f"no evidence {wanted} here")

    def _evidence_pairs(self) -> list[tuple[bytes, tuple[bytes, bytes]]]:
        return sorted(self.node.core.admission.evidence.items())

    async def members(self, request: web.Request) -> web.Response:
        membership = self.node.core.admission.membership
        members = [
            {
                "key": key.hex(),
                "role": str(member.role),
                "node_cutoff": list(member.node_cutoff) if member.node_cutoff else None,
                "agent_cutoff": member.agent_cutoff,
            }
            for key, member in sorted(membership.state.items())
        ]
        return web.json_response({"members": members})

    async def member_chain(self, request: web.Request) -> web.Response:
        """The admit claims from a genesis admin to this key, for a joining node's handshake."""
        key = _hex_key(request.match_info["key"])
        chain = self.node.core.admission.admit_chain(key)
        return web.json_response({"key": key.hex(), "chain": [raw.hex() for raw in chain]})

    async def agent(self, request: web.Request) -> web.Response:
        """The highest claim seq of an agent key this replica holds (an admin tool signing a
        claim elsewhere takes the next one)."""
        key = _hex_key(request.match_info["key"])
        return web.json_response({"key": key.hex(), "last_aseq": self.node.last_agent_seq(key)})

    async def post_claim(self, request: web.Request) -> web.Response:
        """A claim signed elsewhere (an admin's admit or revoke, say), as hex of its bytes."""
        body = await body_of(request)
        raw = body.get("claim")
        if not isinstance(raw, str):
            raise BadRequest("claim is the hex of a signed claim's bytes")
        try:
            claim = decode_claim(bytes.fromhex(raw), mesh_id=self.node.genesis.mesh_id)
        except ValueError:
            raise BadRequest("claim is not hex") from None
        except Rejected as exc:
            return error(422, exc.reason.value, exc.detail)
        return await self.store.commit([claim])

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


class _NodeCollector(Collector):
    """Reads the node's counters at scrape time (no second copy of them to keep in step)."""

    def __init__(self, node: NodeRuntime) -> None:
        self.node = node
        self._exclusions: tuple[tuple[int, int], list[tuple[str, int]]] | None = None

    def _excluded(self) -> list[tuple[str, int]]:
        """Excluded envelopes by reason, recounted only when admission changed."""
        admission = self.node.core.admission
        stamp = (admission.generation, len(admission.records))
        if self._exclusions is None or self._exclusions[0] != stamp:
            counts = Counter(
                str(reason)
                for record in admission.records.values()
                if (reason := admission.exclusion(record)) is not None
            )
            self._exclusions = (stamp, sorted(counts.items()))
        return self._exclusions[1]

    def collect(self) -> Iterator[Metric]:
        node, stats = self.node, self.node.core.stats
        admission = node.core.admission
        info = GaugeMetricFamily("memmesh_build_info", "Build information", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        peers = GaugeMetricFamily(
            "memmesh_peers", "Sessions with peers, by state", labels=["state"]
        )
        for state in SessionState:
            count = sum(s.state is state for s in node.core.sessions.values())
            peers.add_metric([state.value], count)
        yield peers
        yield GaugeMetricFamily(
            "memmesh_envelopes",
            "Envelopes stored (live and excluded)",
            value=len(admission.records),
        )
        rejected = CounterMetricFamily(
            "memmesh_envelopes_rejected", "Envelopes refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(admission.rejected.items()):
            rejected.add_metric([str(reason)], count)
        yield rejected
        excluded = CounterMetricFamily(
            "memmesh_envelopes_excluded",
            "Envelopes stored but excluded from the live set, by reason",
            labels=["reason"],
        )
        for why, count in self._excluded():
            excluded.add_metric([why], count)
        yield excluded
        messages = CounterMetricFamily(
            "memmesh_gossip_messages", "Sync messages", labels=["kind", "direction"]
        )
        volume = CounterMetricFamily(
            "memmesh_gossip_bytes", "Sync message bytes", labels=["kind", "direction"]
        )
        for direction, counts, sizes in (
            ("out", stats.messages_sent, stats.bytes_sent),
            ("in", stats.messages_received, stats.bytes_received),
        ):
            for kind in sorted(counts):
                messages.add_metric([kind, direction], counts[kind])
                volume.add_metric([kind, direction], sizes.get(kind, 0))
        yield messages
        yield volume
        yield CounterMetricFamily(
            "memmesh_duplicate_deliveries", "Envelopes received again", value=stats.duplicates
        )
        yield CounterMetricFamily("memmesh_commits", "Durable commits", value=stats.commits)
        yield GaugeMetricFamily(
            "memmesh_loop_block_seconds_max",
            "Longest single call into the core (the event loop was held)",
            value=node.stats.loop_block_ms_max / 1000,
        )
        yield from _memory_metrics(node)
        yield CounterMetricFamily(
            "memmesh_writes_rate_limited",
            "Local writes refused (429) because their agent was past its write quota",
            value=node.quota.refused,
        )
        yield CounterMetricFamily(
            "memmesh_pushes_throttled",
            "Pushed envelopes dropped because their author node was past its push budget",
            value=stats.pushes_throttled,
        )
        yield CounterMetricFamily(
            "memmesh_lost_pushes",
            "Envelopes a push tree neighbour confirmed that never came, fetched from it at once",
            value=stats.lost_pushes,
        )
        yield CounterMetricFamily(
            "memmesh_stray_pushes",
            "Pushes from a peer neither parent nor child, answered with Prune",
            value=stats.stray_pushes,
        )
        yield CounterMetricFamily(
            "memmesh_receive_paused_seconds",
            "Time readers waited because a peer sent past peer_receive_bytes_per_s",
            value=node.stats.receive_paused_s + sum(c.paused_s for c in node.conns.values()),
        )
        yield CounterMetricFamily(
            "memmesh_inbound_refused",
            "Inbound connections answered 503: inbound_connections_max were open",
            value=node.stats.inbound_refused,
        )
        yield CounterMetricFamily(
            "memmesh_peers_banned",
            "Peers disconnected and banned for sending too many invalid envelopes",
            value=stats.bans,
        )
        yield CounterMetricFamily(
            "memmesh_send_queue_overflows",
            "Peers disconnected because they did not read",
            value=node.stats.send_queue_overflows,
        )


def _memory_metrics(node: NodeRuntime) -> Iterator[Metric]:
    """The operating signals the view and the reads measure (DESIGN §9)."""
    view, reads = node.view, node.reads
    counts = view.counts
    yield CounterMetricFamily("memmesh_entries", "Content claims stored", value=counts.entries)
    yield CounterMetricFamily(
        "memmesh_entries_with_provenance",
        "Content claims naming a source, derived_from or based_on",
        value=counts.with_provenance,
    )
    settled = view.settle_times
    yield CounterMetricFamily(
        "memmesh_conflicts_detected", "Conflicts this node saw", value=len(view.conflicts)
    )
    yield CounterMetricFamily(
        "memmesh_conflicts_resolved",
        "Conflicts settled by policy or by a write",
        value=len(settled),
    )
    yield GaugeMetricFamily(
        "memmesh_conflicts_open", "Current conflicts no policy settles", value=node.open_conflicts()
    )
    resolution = Histogram.of_counts(
        RESOLUTION_BUCKETS_S, settled.at_most, len(settled), settled.total_ms / 1000
    )
    yield _histogram(
        "memmesh_conflict_resolution_seconds",
        "From detecting a conflict here to its settling (by policy or a write)",
        resolution,
    )
    yield CounterMetricFamily("memmesh_decisions", "Decision claims", value=counts.decisions)
    yield CounterMetricFamily(
        "memmesh_decisions_traceable",
        "Decision claims citing a receipt or an attestation this node can name",
        value=node.trace.traceable,
    )
    yield CounterMetricFamily("memmesh_reads", "Reads served", value=reads.total)
    incidents = CounterMetricFamily(
        "memmesh_read_incidents", "Reads that were stale or poisoned", labels=["kind"]
    )
    incidents.add_metric(["stale"], reads.stale)
    incidents.add_metric(["poisoned"], reads.poisoned)
    yield incidents
    yield _histogram(
        "memmesh_propagation_seconds",
        "From a peer's envelope being committed by its author to its integration here "
        "(this node's clock minus the envelope's HLC: clock skew included)",
        node.propagation,
    )
    yield _histogram(
        "memmesh_commit_seconds",
        "Durable commits of the store (an LMDB write transaction and its two device flushes); "
        "the node's event loop waits for each",
        node.commit_seconds,
    )
    pauses = HistogramMetricFamily(
        "memmesh_gc_pause_seconds",
        "Garbage collections of the node's process, by generation (2: a full collection); "
        "each holds the event loop",
        labels=["generation"],
    )
    for generation, histogram in enumerate(node.heap.pauses):
        pauses.add_metric([str(generation)], histogram.cumulative(), sum_value=histogram.total)
    yield pauses
    yield CounterMetricFamily(
        "memmesh_gc_freezes",
        "Freezes of the heap's growth (a collection of what arrived since the last, then "
        "gc.freeze): every gc_freeze_every_claims claims integrated",
        value=node.heap.freezes,
    )


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], histogram.cumulative(), sum_value=histogram.total)
    return family
