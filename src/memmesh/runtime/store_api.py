"""The memory routes of the local API, shaped like LangGraph's store (DESIGN §9).

``PUT /v1/store/items`` writes a claim with this node's agent key; it supersedes the live claims
of its subject here, so a write that saw the value is an update, never a conflict.
``GET /v1/store/items`` reads one subject (``key``) or a namespace, with the value, its
provenance, the conflict state and a read receipt. ``DELETE /v1/store/items`` writes a
retraction. ``POST /v1/store/items/search`` and ``POST /v1/store/namespaces`` list;
``GET /v1/store/items/history`` shows every claim of a subject; ``/v1/conflicts`` lists,
shows and resolves conflicts; ``POST /v1/receipts`` records a receipt. Errors are JSON
``{"error": reason, "detail": text}``; a refused write changes nothing.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ..canonical import JsonValue
from ..claims import Claim
from ..errors import Rejected
from ..membership import ADMIT, REVOKE
from ..memory import Conflict, Entry, Receipt, Subject, View, describe, frontier_hash
from ..memory.search import Cursor, parse_filter, search_page
from ..memory.types import RECEIPT, RECEIPT_NAMESPACE, RESOLUTION, RETRACTION
from ..memory.view import SubjectKey
from ..store import WriteBatch
from .attestations import Disagreement

if TYPE_CHECKING:
    from .node import NodeRuntime

__all__ = ["BadRequest", "Conflicting", "NotFound", "StoreApi", "body_of", "error", "namespace_of"]

SEARCH_LIMIT_MAX = 1000
PAGE_LIMIT_MAX = 1000
"""What a page of ``GET /v1/conflicts`` or of a subject's history holds at most (and by
default): rendering each costs, and a mesh's history holds many."""
NAMESPACES_SCAN_MAX = 10_000
"""Namespaces one page of ``POST /v1/store/namespaces`` reads at most (about 10 ms): past
it the page ends, maybe short, with a ``next`` that goes on from there."""
_T = TypeVar("_T")
_OPTIONAL_FIELDS = ("source", "valid_at", "invalid_at", "confidence")
_REF_FIELDS = ("based_on", "derived_from")


_WRITE_REFUSAL_STATUS = {
    "NotAMember": 403,
    "OwnLogForked": 409,
    "TooLarge": 413,
    "StorageFull": 507,
}
"""A refused write's HTTP status by its reason; 503 (try again later) for the others."""
_QUOTA_LOG_INTERVAL_S = 10.0
"""An agent past its write quota is logged at most once per this many seconds."""


class BadRequest(Exception):
    """A request the API refuses before doing anything: 400 with ``bad_request``."""


class NotFound(Exception):
    """What the request names does not exist: 404 with ``not_found``."""


class Conflicting(Exception):
    """The request cannot be served from what this node holds: 409 with ``conflict``."""


def error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def namespace_of(value: object) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return tuple(value.split("."))
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise BadRequest("namespace is a dotted string or a non-empty list of labels")


def _prefix_of(value: object) -> tuple[str, ...]:
    if value is None or value in ("", []):
        return ()
    return namespace_of(value)


def _ids(value: object, name: str) -> list[bytes]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} is a list of 64-hex-digit ids")
    try:
        ids = [bytes.fromhex(v) for v in value]
    except ValueError:
        raise BadRequest(f"{name} holds an id that is not hex") from None
    if any(len(i) != 32 for i in ids):
        raise BadRequest(f"{name} ids are 64 hex digits")
    return ids


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name} is an integer from {low} to {high}")
    return value


def _page_limit(request: web.Request) -> int:
    """The ``limit`` query parameter of a paged listing (:data:`PAGE_LIMIT_MAX` if absent)."""
    text = request.query.get("limit")
    if text is None:
        return PAGE_LIMIT_MAX
    if not text.isdigit() or not 1 <= int(text) <= PAGE_LIMIT_MAX:
        raise BadRequest(f"limit is an integer from 1 to {PAGE_LIMIT_MAX}")
    return int(text)


def _page_after(
    ordered: list[_T], anchor: _T | None, order: Callable[[_T], Any], limit: int
) -> tuple[list[_T], bool]:
    """At most ``limit`` of ``ordered`` (sorted by ``order``) past ``anchor`` (from the start
    if None; found by bisection, so it need not be in the list any more), and whether more
    follow."""
    start = 0 if anchor is None else bisect.bisect_right(ordered, order(anchor), key=order)
    return ordered[start : start + limit], start + limit < len(ordered)


class StoreApi:
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node
        self._quota_logged: dict[bytes, float] = {}
        """Agent -> when its last refusal was logged (monotonic seconds)."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/v1/store/items", self.put_item)
        app.router.add_get("/v1/store/items", self.get_items)
        app.router.add_delete("/v1/store/items", self.delete_item)
        app.router.add_post("/v1/store/items/search", self.search)
        app.router.add_get("/v1/store/items/history", self.history)
        app.router.add_post("/v1/store/namespaces", self.namespaces)
        app.router.add_get("/v1/conflicts", self.conflicts)
        app.router.add_get("/v1/conflicts/{id}", self.conflict)
        app.router.add_post("/v1/conflicts/{id}/resolve", self.resolve)
        app.router.add_post("/v1/receipts", self.post_receipt)

    # -- writes -------------------------------------------------------------------------------

    async def put_item(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        namespace = namespace_of(body.get("namespace"))
        key, kind = body.get("key"), body.get("type", "fact")
        if not isinstance(key, str) or not key:
            raise BadRequest("key is a non-empty string")
        if not isinstance(kind, str) or kind in (ADMIT, REVOKE, RETRACTION, RESOLUTION):
            raise BadRequest(
                "type is a claim type name; membership goes through /v1/claims, retractions "
                "through DELETE and resolutions through /v1/conflicts/{id}/resolve"
            )
        fields: dict[str, Any] = {name: body[name] for name in _OPTIONAL_FIELDS if name in body}
        for name in _REF_FIELDS:
            fields[name] = _ids(body.get(name), name)
        subject = self.node.view.get(namespace, key)
        fields["supersedes"] = list(subject.live) if subject is not None else []
        return await self._write(namespace, key, body.get("value"), kind, fields)

    async def delete_item(self, request: web.Request) -> web.Response:
        body = await body_of(request) if request.can_read_body else dict(request.query)
        namespace = namespace_of(body.get("namespace"))
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise BadRequest("key is a non-empty string")
        subject = self.node.view.get(namespace, key)
        if subject is None or not subject.present:  # absent, or already deleted
            return error(404, "not_found", f"nothing live at {'.'.join(namespace)}:{key}")
        fields = {"supersedes": list(subject.live)}
        return await self._write(namespace, key, None, RETRACTION, fields)

    async def resolve(self, request: web.Request) -> web.Response:
        conflict = self._conflict(request.match_info["id"])
        body = await body_of(request)
        text = body.get("winner")
        if not isinstance(text, str):
            raise BadRequest("winner is the id of one of the conflict's candidates")
        (winner,) = _ids([text], "winner")
        if winner not in conflict.candidates:
            raise BadRequest("winner is the id of one of the conflict's candidates")
        subject = self.node.view.get(*conflict.subject)
        assert subject is not None
        fields = {"supersedes": list(subject.live)}
        value = {"winner": winner.hex()}
        return await self._write(
            conflict.subject[0], conflict.subject[1], value, RESOLUTION, fields
        )

    async def _write(
        self, namespace: tuple[str, ...], key: str, value: Any, kind: str, fields: dict[str, Any]
    ) -> web.Response:
        # Before the claim is built and signed: a flood past the quota costs little here.
        limited = self._over_quota({self.node.agent_key.public_key: 1})
        if limited is not None:
            return limited
        try:
            claim = self.node.claim(namespace, key, value, type=kind, **fields)
        except (ValueError, TypeError) as exc:
            return error(422, "invalid_claim", str(exc))
        except Rejected as exc:
            return error(422, exc.reason.value, exc.detail)
        return await self.commit([claim], quota_taken=True)

    async def commit(self, claims: list[Claim], *, quota_taken: bool = False) -> web.Response:
        """Write claims after the view's own checks and their agents' write quotas (unless
        the caller took them already); 201 once durable and integrated."""
        from .node import WriteRefused  # noqa: PLC0415 - node.py imports this module

        for claim in claims:
            refusal = self.node.view.check_new(claim)
            if refusal is not None:
                status = 403 if refusal[0] == "role_not_allowed" else 422
                return error(status, refusal[0], refusal[1] or f"a {claim.type} claim here")
        if not quota_taken:
            limited = self._over_quota(Counter(claim.agent for claim in claims))
            if limited is not None:
                return limited
        try:
            ack = await self.node.write(claims)
        except WriteRefused as exc:
            status = _WRITE_REFUSAL_STATUS.get(exc.reason, 503)
            return error(status, exc.reason, exc.detail)
        return web.json_response(
            {
                "claim_id": ack.claim_ids[0].hex() if len(ack.claim_ids) == 1 else None,
                "claim_ids": [c.hex() for c in ack.claim_ids],
                "envelope_id": ack.envelope_id.hex(),
                "seq": ack.seq,
            },
            status=201,
        )

    def _over_quota(self, wants: dict[bytes, int]) -> web.Response | None:
        """429 ``rate_limited`` when an agent (claims it wants to write) is past its write
        quota (:mod:`memmesh.quota`); nothing is written then."""
        quota, now = self.node.quota, time.monotonic()
        short = quota.take(wants, now)
        if short is None:
            return None
        agent, wait_s = short
        if self._quota_logged.get(agent, -math.inf) + _QUOTA_LOG_INTERVAL_S <= now:
            if len(self._quota_logged) >= 4096:  # a bound on the agents remembered
                self._quota_logged.clear()
            self._quota_logged[agent] = now  # flagged: one line per agent and interval
            self.node.log(
                "write quota exceeded", agent=agent.hex()[:16], refused_total=quota.refused
            )
        detail = (
            f"agent {agent.hex()[:16]} is past its quota of {quota.per_s} claims a second "
            f"(burst {quota.burst})"
        )
        response = error(429, "rate_limited", detail)
        if wait_s != float("inf"):
            response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return response

    async def post_receipt(self, request: web.Request) -> web.Response:
        """Record a receipt: kept by this node (``replicate`` false), or written as a
        ``receipt`` claim every replica holds."""
        body = await body_of(request)
        given = body.get("receipt")
        claimed_id = given.pop("id", None) if isinstance(given, dict) else None
        try:
            receipt = Receipt.from_value(given)
        except ValueError as exc:
            raise BadRequest(f"receipt: {exc}") from None
        receipt_id = receipt.id.hex()
        if claimed_id is not None and claimed_id != receipt_id:
            raise BadRequest(f"receipt: its id is {receipt_id}, not {claimed_id}")
        if body.get("replicate", False):
            written = await self._write(RECEIPT_NAMESPACE, receipt_id, receipt.value(), RECEIPT, {})
            if written.status != 201 or written.text is None:
                return written
            answer = {**json.loads(written.text), "id": receipt_id, "recorded": "replicated"}
            return web.json_response(answer, status=201)
        self.node.store.commit(WriteBatch(meta={f"receipt/{receipt_id}": receipt.id}))
        self.node.trace.record(receipt.id)
        return web.json_response({"id": receipt_id, "recorded": "local"}, status=201)

    # -- reads --------------------------------------------------------------------------------

    async def _view_as_of(self, as_of: object) -> tuple[View, bytes | None]:
        """The current view, or with ``as_of`` (an attestation id or a unique prefix of at
        least 8 hex digits) the view of exactly what that attestation covers, rebuilt from this
        node's log, with its frontier hash for the receipt."""
        if as_of is None or as_of == "":
            return self.node.view, None
        if not isinstance(as_of, str):
            raise BadRequest("as_of is an attestation id (hex)")
        service = self.node.attestations
        try:
            held = service.find(as_of)
        except KeyError:
            raise NotFound(f"no attestation {as_of} held here (one id, or 8+ hex digits)") from None
        try:
            await service.prepare_view_at(held.statement)  # rebuilt off the event loop
            view = service.view_at(held.statement)
        except Disagreement as exc:
            raise Conflicting(f"{exc.code}: {exc.detail}") from None
        return view, frontier_hash(held.statement.frontier)

    async def get_items(self, request: web.Request) -> web.Response:
        namespace = namespace_of(request.query.get("namespace", ""))
        reader = _reader(request.query.get("reader"))
        key = request.query.get("key")
        view, frontier = await self._view_as_of(request.query.get("as_of"))
        if key is not None:
            subject = view.get(namespace, key)
            if subject is None or not subject.live:
                return error(404, "not_found", f"nothing live at {'.'.join(namespace)}:{key}")
            item = self._item(namespace, key, subject, view)
            receipt = self.node.read(list(subject.live), reader, frontier=frontier)
            return web.json_response({**item, "receipt": receipt.to_json()})
        # A namespace of any size: read a bounded part of it per request, like a search.
        subjects, more = view.subjects_of(
            namespace,
            after=request.query.get("after"),
            limit=self.node.settings.search_scan_subjects_max,
        )
        items: list[dict[str, Any]] = []
        returned: list[bytes] = []
        for k, subject in subjects:
            if subject.live:
                items.append(self._item(namespace, k, subject, view))
                returned.extend(subject.live)
        receipt = self.node.read(returned, reader, frontier=frontier)
        following = {"after": subjects[-1][0]} if more else None
        return web.json_response({"items": items, "receipt": receipt.to_json(), "next": following})

    async def search(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        prefix = _prefix_of(body.get("namespace_prefix", body.get("namespace")))
        try:
            conditions = parse_filter(body.get("filter"))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        limit = _int(body, "limit", 10, 1, SEARCH_LIMIT_MAX)
        offset = _int(body, "offset", 0, 0, 1 << 31)
        after: SubjectKey | None = None
        if body.get("cursor") is not None:
            if "offset" in body:
                raise BadRequest("a cursor carries its own offset: send one or the other")
            after, offset = _cursor_of(body["cursor"], prefix)
        reader = _reader(body.get("reader"))
        view, frontier = await self._view_as_of(body.get("as_of"))
        page = search_page(
            view,
            prefix,
            conditions,
            limit=limit,
            offset=offset,
            after=after,
            scan_max=self.node.settings.search_scan_subjects_max,
        )
        found: list[dict[str, Any]] = []
        returned: list[bytes] = []
        for (ns, key), subject in page.found:
            found.append(self._item(ns, key, subject, view))
            returned.extend(subject.live)
        receipt = self.node.read(returned, reader, frontier=frontier)
        cursor = page.next
        return web.json_response(
            {
                "items": found,
                "receipt": receipt.to_json(),
                "next": None if cursor is None else _cursor_json(cursor),
            }
        )

    async def namespaces(self, request: web.Request) -> web.Response:
        body = await body_of(request) if request.can_read_body else {}
        prefix = _prefix_of(body.get("prefix"))
        suffix = _prefix_of(body.get("suffix"))
        depth = body.get("max_depth")
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)):
            raise BadRequest("max_depth is an integer")
        limit = _int(body, "limit", 100, 1, SEARCH_LIMIT_MAX)
        offset = _int(body, "offset", 0, 0, 1 << 31)
        start: tuple[str, ...] | None = None
        if body.get("cursor") is not None:
            if "offset" in body:
                raise BadRequest("a cursor carries its own offset: send one or the other")
            start, offset = _namespace_cursor_of(body["cursor"], prefix)
        page = self.node.view.namespace_page(
            prefix,
            depth=depth,
            suffix=suffix,
            start=start,
            offset=offset,
            limit=limit,
            scan_max=NAMESPACES_SCAN_MAX,
        )
        following = page.next
        return web.json_response(
            {
                "namespaces": [list(n) for n in page.found],
                "next": None
                if following is None
                else {"start": list(following.start), "offset": following.offset},
            }
        )

    async def history(self, request: web.Request) -> web.Response:
        namespace = namespace_of(request.query.get("namespace", ""))
        key = request.query.get("key")
        if not key:
            raise BadRequest("key is required")
        view = self.node.view
        subject = view.get(namespace, key)
        if subject is None:
            return error(404, "not_found", f"no claim at {'.'.join(namespace)}:{key}")
        anchor: Entry | None = None
        after = request.query.get("after")
        if after is not None:
            (claim_id,) = _ids([after], "after")
            anchor = subject.entries.get(claim_id)
            if anchor is None:
                raise NotFound(f"no claim {after} at {'.'.join(namespace)}:{key}")
        page, more = _page_after(
            view.history(namespace, key), anchor, view.history_order, _page_limit(request)
        )
        live = set(subject.live)
        entries = []
        for entry in page:
            described = self._describe(entry)
            described["status"] = _status(entry, live)
            entries.append(described)
        following = page[-1].claim.id.hex() if more else None
        return web.json_response(
            {"namespace": list(namespace), "key": key, "entries": entries, "next": following}
        )

    async def conflicts(self, request: web.Request) -> web.Response:
        """At most ``limit`` conflicts a page (rendering each costs; a mesh's history holds
        many), past the conflict ``after``; ``next`` names the last one given when more
        follow."""
        status = request.query.get("status", "current")
        if status not in ("current", "all"):
            raise BadRequest("status is current or all")
        after = request.query.get("after")
        anchor = None if after is None else self._conflict(after)
        page, more = self.node.view.conflicts_page(status, anchor, _page_limit(request))
        following = page[-1].id.hex() if more else None
        return web.json_response(
            {"conflicts": [self._conflict_json(c) for c in page], "next": following}
        )

    async def conflict(self, request: web.Request) -> web.Response:
        return web.json_response(self._conflict_json(self._conflict(request.match_info["id"])))

    # -- shapes -------------------------------------------------------------------------------

    def _conflict(self, text: str) -> Conflict:
        try:
            conflict_id = bytes.fromhex(text)
        except ValueError:
            raise BadRequest("a conflict id is 64 hex digits") from None
        conflict = self.node.view.conflicts.get(conflict_id)
        if conflict is None:
            raise NotFound(f"no conflict {text}")
        return conflict

    def _conflict_json(self, conflict: Conflict, view: View | None = None) -> dict[str, Any]:
        view = self.node.view if view is None else view
        subject = view.get(*conflict.subject)
        assert subject is not None
        current = subject.conflict == conflict.id
        detected: int | None = conflict.detected_ms
        resolved = conflict.resolved_ms
        if view is not self.node.view:
            # A view rebuilt for as_of has no times of its own: when this node detected and
            # settled the conflict is what it recorded living through it (ids are the same).
            lived = self.node.view.conflicts.get(conflict.id)
            detected = None if lived is None else lived.detected_ms
            settled = lived is not None and conflict.decision.status == "resolved"
            resolved = lived.resolved_ms if settled and lived is not None else None
        return {
            "id": conflict.id.hex(),
            "namespace": list(conflict.subject[0]),
            "key": conflict.subject[1],
            "candidates": [self._describe(subject.entries[c], view) for c in conflict.candidates],
            "decision": conflict.decision.to_json(),
            "open": current and conflict.decision.status != "resolved",
            "current": current,
            "detected_ms": detected,
            "resolved_ms": resolved,
            "settled_by": conflict.settled_by or None,
        }

    def _describe(self, entry: Entry, view: View | None = None) -> dict[str, JsonValue]:
        view = self.node.view if view is None else view
        member = view.admission.membership.state.get(entry.claim.agent)
        return describe(entry, None if member is None else str(member.role))

    def _item(
        self, namespace: tuple[str, ...], key: str, subject: Subject, view: View | None = None
    ) -> dict[str, Any]:
        view = self.node.view if view is None else view
        entry = subject.value_entry()
        deleted = entry is not None and entry.claim.type == RETRACTION
        conflict = view.conflicts.get(subject.conflict) if subject.conflict else None
        if conflict is None:
            state = "deleted" if deleted else "ok"
        else:
            state = "resolved" if conflict.decision.status == "resolved" else "conflict"
        return {
            "namespace": list(namespace),
            "key": key,
            "value": None if entry is None or deleted else entry.claim.value,
            "state": state,
            "claim_id": None if entry is None else entry.claim.id.hex(),
            "claim": None if entry is None else self._describe(entry, view),
            "live": [c.hex() for c in subject.live],
            "conflict": None if conflict is None else self._conflict_json(conflict, view),
        }


async def body_of(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _reader(value: object) -> bytes | None:
    if value is None:
        return None
    (reader,) = _ids([value], "reader")
    return reader


def _status(entry: Entry, live: set[bytes]) -> str:
    if entry.excluded is not None:
        return "excluded"
    if entry.invalid is not None:
        return "invalid"
    return "live" if entry.claim.id in live else "superseded"


def _cursor_json(cursor: Cursor) -> dict[str, Any]:
    namespace, key = cursor.after
    return {"after": {"namespace": list(namespace), "key": key}, "offset": cursor.offset}


def _cursor_of(value: object, prefix: tuple[str, ...]) -> tuple[SubjectKey, int]:
    """A search answer's ``next``, sent back: where the last page stopped."""
    after = value.get("after") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or not isinstance(after, dict)
        or set(value) - {"after", "offset"}
    ):
        raise BadRequest("cursor is a search answer's `next`, sent back as it came")
    namespace = namespace_of(after.get("namespace"))
    key = after.get("key")
    if not isinstance(key, str) or not key or set(after) != {"namespace", "key"}:
        raise BadRequest("cursor is a search answer's `next`, sent back as it came")
    if namespace[: len(prefix)] != prefix:
        raise BadRequest("cursor is not under this search's namespace_prefix")
    return (namespace, key), _int(value, "offset", 0, 0, 1 << 31)


def _namespace_cursor_of(value: object, prefix: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """A namespaces answer's ``next``, sent back: where the last page stopped."""
    if not isinstance(value, dict) or set(value) - {"start", "offset"} or "start" not in value:
        raise BadRequest("cursor is a namespaces answer's `next`, sent back as it came")
    start = namespace_of(value["start"])
    if start[: len(prefix)] != prefix:
        raise BadRequest("cursor is not under this listing's prefix")
    return start, _int(value, "offset", 0, 0, 1 << 31)
