"""Python clients for agents: :class:`MeshClient` (blocking) and :class:`AsyncMeshClient`.

The names follow LangGraph's store (``put``, ``get``, ``search``, ``delete``,
``list_namespaces``), plus ``history``, ``conflicts``, ``resolve_conflict`` and
``record_decision``. Every read returns the node's receipt with it.

**Who signs.** Without a key, the node signs writes with its own agent key. With
``agent_key=``, the client signs every claim itself and hands the node only the signed bytes
(``POST /v1/claims``): the agent's key never leaves the agent, and its claims are attributed to
it whatever node carries them. The client then reads what the subject's live claims are first,
so its write supersedes what it saw, exactly as the node's own ``put`` does.

Each operation is written once, as a generator of HTTP requests (:class:`_Call`) that receives
each answer; the blocking client drives it with ``urllib``, the async one with ``aiohttp``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .claims import make_claim
from .crypto import SigningKey

__all__ = ["AsyncMeshClient", "Item", "MeshClient", "MeshError", "Written"]

Namespace = Sequence[str] | str


class MeshError(Exception):
    """The node refused a request: ``status`` (HTTP), ``code`` (a reason code), ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True, slots=True)
class Written:
    claim_id: str
    envelope_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Item:
    """One subject as the node shows it (``GET /v1/store/items``)."""

    namespace: tuple[str, ...]
    key: str
    value: Any
    state: str
    """``ok``, ``deleted``, ``resolved`` (a policy settled a conflict) or ``conflict``."""
    claim: dict[str, Any] | None
    """The claim whose value is shown, with its provenance."""
    conflict: dict[str, Any] | None
    receipt: dict[str, Any] | None = None
    live: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, data: dict[str, Any], receipt: dict[str, Any] | None = None) -> Item:
        return cls(
            tuple(data["namespace"]),
            data["key"],
            data["value"],
            data["state"],
            data["claim"],
            data["conflict"],
            receipt if receipt is not None else data.get("receipt"),
            tuple(data.get("live", ())),
        )


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    missing_ok: bool = False
    """A 404 answers None instead of raising."""


_Op = Generator[_Call, Any, Any]


def _http_url(url: str) -> str:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL of a node's API")
    return url.rstrip("/")


def _ns(namespace: Namespace) -> list[str]:
    labels = namespace.split(".") if isinstance(namespace, str) else list(namespace)
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise ValueError("a namespace is a non-empty sequence of non-empty labels")
    return labels


def _get_call(namespace: Namespace, key: str, as_of: str | None) -> _Call:
    params = {"namespace": ".".join(_ns(namespace)), "key": key}
    if as_of is not None:
        params["as_of"] = as_of
    return _Call("GET", f"/v1/store/items?{_query(**params)}", None, True)


def _query(**params: str) -> str:
    return urllib.parse.urlencode(params)


class _Ops:
    """The operations, as request generators; ``agent_key`` makes them sign client-side."""

    def __init__(self, agent_key: SigningKey | None) -> None:
        self.agent_key = agent_key
        self._mesh: bytes | None = None
        self._aseq: int | None = None

    def put(self, namespace: Namespace, key: str, value: Any, **fields: Any) -> _Op:
        kind = fields.pop("type", "fact")
        if self.agent_key is None:
            body = {"namespace": _ns(namespace), "key": key, "value": value, "type": kind}
            body.update({k: v for k, v in fields.items() if v is not None and v != ()})
            body = {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}
            return (yield _Call("PUT", "/v1/store/items", body))
        live = yield from self._live(namespace, key)
        refs = {k: [bytes.fromhex(r) for r in fields.pop(k, ()) or ()] for k in _REFS}
        return (yield from self._signed(namespace, key, value, kind, live, **refs, **fields))

    def delete(self, namespace: Namespace, key: str) -> _Op:
        if self.agent_key is None:
            body = {"namespace": _ns(namespace), "key": key}
            return (yield _Call("DELETE", "/v1/store/items", body))
        live = yield from self._live(namespace, key)
        if not live:
            raise MeshError(404, "not_found", f"nothing live at {'.'.join(_ns(namespace))}:{key}")
        return (yield from self._signed(namespace, key, None, "retraction", live))

    def resolve(self, conflict_id: str, winner: str) -> _Op:
        if self.agent_key is None:
            path = f"/v1/conflicts/{conflict_id}/resolve"
            return (yield _Call("POST", path, {"winner": winner}))
        conflict = yield _Call("GET", f"/v1/conflicts/{conflict_id}")
        live = yield from self._live(conflict["namespace"], conflict["key"])
        value = {"winner": winner}
        namespace = conflict["namespace"]
        return (yield from self._signed(namespace, conflict["key"], value, "resolution", live))

    def _live(self, namespace: Namespace, key: str) -> Generator[_Call, Any, list[bytes]]:
        ns = ".".join(_ns(namespace))
        item = yield _Call("GET", f"/v1/store/items?{_query(namespace=ns, key=key)}", None, True)
        return [] if item is None else [bytes.fromhex(c) for c in item["live"]]

    def _signed(
        self,
        namespace: Namespace,
        key: str,
        value: Any,
        kind: str,
        supersedes: list[bytes],
        **fields: Any,
    ) -> _Op:
        agent = self.agent_key
        assert agent is not None
        if self._mesh is None:
            self._mesh = bytes.fromhex((yield _Call("GET", "/v1/state"))["mesh"])
        if self._aseq is None:
            known = yield _Call("GET", f"/v1/agents/{agent.public_key.hex()}")
            self._aseq = int(known["last_aseq"])
        claim = make_claim(
            agent,
            mesh_id=self._mesh,
            aseq=self._aseq + 1,
            hlc=(time.time_ns() // 1_000_000, 0),
            namespace=_ns(namespace),
            key=key,
            type=kind,
            value=value,
            supersedes=supersedes,
            **{k: v for k, v in fields.items() if v is not None},
        )
        self._aseq += 1  # taken even if the node refuses: a seq is never offered twice
        return (yield _Call("POST", "/v1/claims", {"claim": claim.raw.hex()}))


_REFS = ("based_on", "derived_from")


def _written(answer: dict[str, Any]) -> Written:
    return Written(answer["claim_ids"][0], answer["envelope_id"], answer["seq"])


class MeshClient:
    """A blocking client of one node's local API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        agent_key: SigningKey | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.url = _http_url(url)
        self.token = token
        self.timeout_s = timeout_s
        self._ops = _Ops(agent_key)

    def _run(self, op: _Op) -> Any:
        answer: Any = None
        try:
            call = next(op)
            while True:
                answer = self._send(call)
                call = op.send(answer)
        except StopIteration as stop:
            return stop.value

    def _send(self, call: _Call) -> Any:
        data = None if call.body is None else json.dumps(call.body).encode()
        url = self.url + call.path
        request = urllib.request.Request(url, data=data, method=call.method)  # noqa: S310 - http(s) checked
        request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and call.missing_ok:
                return None
            raise _error(exc.code, exc.read()) from None

    def put(self, namespace: Namespace, key: str, value: Any, **fields: Any) -> Written:
        """Write a value (``type``, ``source``, ``valid_at``, ``invalid_at``, ``confidence``,
        ``based_on``, ``derived_from`` optional); it supersedes what the node holds."""
        return _written(self._run(self._ops.put(namespace, key, value, **fields)))

    def get(self, namespace: Namespace, key: str, *, as_of: str | None = None) -> Item | None:
        """The subject's value now, or ``as_of`` an attestation (its id) the node holds."""
        answer = self._run(_one(_get_call(namespace, key, as_of)))
        return None if answer is None else Item.from_json(answer)

    def delete(self, namespace: Namespace, key: str) -> Written:
        return _written(self._run(self._ops.delete(namespace, key)))

    def search(
        self,
        namespace_prefix: Namespace,
        *,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Item]:
        return self._run(_search(_ns(namespace_prefix), filter, limit, offset))  # type: ignore[no-any-return]

    def list_namespaces(
        self,
        *,
        prefix: Namespace | None = None,
        suffix: Namespace | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        body = _namespaces_body(prefix, suffix, max_depth, limit, offset)
        return self._run(_namespaces(body))  # type: ignore[no-any-return]

    def history(self, namespace: Namespace, key: str) -> list[dict[str, Any]]:
        return self._run(_history(namespace, key))  # type: ignore[no-any-return]

    def conflicts(self, status: str = "current") -> list[dict[str, Any]]:
        return self._run(_conflicts(status))  # type: ignore[no-any-return]

    def resolve_conflict(self, conflict_id: str, winner: str) -> Written:
        return _written(self._run(self._ops.resolve(conflict_id, winner)))

    def record_decision(
        self,
        namespace: Namespace,
        key: str,
        value: Any,
        *,
        receipts: Sequence[dict[str, Any]],
        replicate_receipts: bool = False,
        **fields: Any,
    ) -> Written:
        """Record the receipts of the reads a decision rests on, then write the ``decision``
        claim citing them in ``based_on``."""
        ids = [self._run(_one(_receipt_call(r, replicate_receipts))) for r in receipts]
        based_on = tuple(_receipt_id(answer) for answer in ids)
        return self.put(namespace, key, value, type="decision", based_on=based_on, **fields)


class AsyncMeshClient:
    """The same operations over ``aiohttp``; use as ``async with AsyncMeshClient(url) as c``."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        agent_key: SigningKey | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        import aiohttp  # noqa: PLC0415 - only the async client needs it

        self.url = _http_url(url)
        self.token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ops = _Ops(agent_key)

    async def __aenter__(self) -> AsyncMeshClient:
        import aiohttp  # noqa: PLC0415

        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, op: _Op) -> Any:
        try:
            call = next(op)
            while True:
                call = op.send(await self._send(call))
        except StopIteration as stop:
            return stop.value

    async def _send(self, call: _Call) -> Any:
        if self._session is None:
            raise RuntimeError("use the client as `async with AsyncMeshClient(url) as client`")
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        async with self._session.request(
            call.method, self.url + call.path, json=call.body, headers=headers
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                if response.status == 404 and call.missing_ok:
                    return None
                raise _error(response.status, raw)
            return json.loads(raw)

    async def put(self, namespace: Namespace, key: str, value: Any, **fields: Any) -> Written:
        return _written(await self._run(self._ops.put(namespace, key, value, **fields)))

    async def get(self, namespace: Namespace, key: str, *, as_of: str | None = None) -> Item | None:
        """The subject's value now, or ``as_of`` an attestation (its id) the node holds."""
        answer = await self._run(_one(_get_call(namespace, key, as_of)))
        return None if answer is None else Item.from_json(answer)

    async def delete(self, namespace: Namespace, key: str) -> Written:
        return _written(await self._run(self._ops.delete(namespace, key)))

    async def search(
        self,
        namespace_prefix: Namespace,
        *,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Item]:
        return await self._run(_search(_ns(namespace_prefix), filter, limit, offset))  # type: ignore[no-any-return]

    async def list_namespaces(
        self,
        *,
        prefix: Namespace | None = None,
        suffix: Namespace | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        body = _namespaces_body(prefix, suffix, max_depth, limit, offset)
        return await self._run(_namespaces(body))  # type: ignore[no-any-return]

    async def history(self, namespace: Namespace, key: str) -> list[dict[str, Any]]:
        return await self._run(_history(namespace, key))  # type: ignore[no-any-return]

    async def conflicts(self, status: str = "current") -> list[dict[str, Any]]:
        return await self._run(_conflicts(status))  # type: ignore[no-any-return]

    async def resolve_conflict(self, conflict_id: str, winner: str) -> Written:
        return _written(await self._run(self._ops.resolve(conflict_id, winner)))

    async def record_decision(
        self,
        namespace: Namespace,
        key: str,
        value: Any,
        *,
        receipts: Sequence[dict[str, Any]],
        replicate_receipts: bool = False,
        **fields: Any,
    ) -> Written:
        ids = [await self._run(_one(_receipt_call(r, replicate_receipts))) for r in receipts]
        based_on = tuple(_receipt_id(answer) for answer in ids)
        return await self.put(namespace, key, value, type="decision", based_on=based_on, **fields)


def _one(call: _Call) -> _Op:
    return (yield call)


def _history(namespace: Namespace, key: str) -> Generator[_Call, Any, list[dict[str, Any]]]:
    """Every claim of a subject, page after page (at most 1,000 a page); [] if it has none."""
    ns = ".".join(_ns(namespace))
    found: list[dict[str, Any]] = []
    query = _query(namespace=ns, key=key)
    while True:
        answer = yield _Call("GET", f"/v1/store/items/history?{query}", None, True)
        if answer is None:
            return found
        found += answer["entries"]
        if answer.get("next") is None:
            return found
        query = _query(namespace=ns, key=key, after=answer["next"])


def _conflicts(status: str) -> Generator[_Call, Any, list[dict[str, Any]]]:
    """Every conflict of ``status``, page after page (the node gives at most 1,000 a page)."""
    found: list[dict[str, Any]] = []
    query = _query(status=status)
    while True:
        answer = yield _Call("GET", f"/v1/conflicts?{query}")
        found += answer["conflicts"]
        if answer.get("next") is None:
            return found
        query = _query(status=status, after=answer["next"])


def _search(
    prefix: list[str], conditions: dict[str, Any] | None, limit: int, offset: int
) -> Generator[_Call, Any, list[Item]]:
    """Up to ``limit`` matches, in as many requests as the node's pages take: a page ends
    early (even empty) where the node stopped reading (``search_scan_subjects_max``), and its
    ``next`` goes on from there. Each item keeps the receipt of the page that returned it."""
    body: dict[str, Any] = {"namespace_prefix": prefix, "filter": conditions, "limit": limit,
                            "offset": offset}  # fmt: skip
    found: list[Item] = []
    while True:
        answer = yield _Call("POST", "/v1/store/items/search", body)
        found += [Item.from_json(i, answer["receipt"]) for i in answer["items"]]
        cursor = answer.get("next")
        if cursor is None or len(found) >= limit:
            return found
        body = {"namespace_prefix": prefix, "filter": conditions, "limit": limit - len(found),
                "cursor": cursor}  # fmt: skip


def _receipt_call(receipt: dict[str, Any], replicate: bool) -> _Call:
    return _Call("POST", "/v1/receipts", {"receipt": dict(receipt), "replicate": replicate})


def _receipt_id(answer: dict[str, Any]) -> str:
    return str(answer["id"])


def _namespaces(body: dict[str, Any]) -> Generator[_Call, Any, list[tuple[str, ...]]]:
    """Up to ``body["limit"]`` namespaces, in as many requests as the node's pages take: a
    page ends early (even empty) where the node stopped reading, and its ``next`` goes on."""
    limit = body["limit"]
    found: list[tuple[str, ...]] = []
    while True:
        answer = yield _Call("POST", "/v1/store/namespaces", body)
        found += [tuple(n) for n in answer["namespaces"]]
        cursor = answer.get("next")
        if cursor is None or len(found) >= limit:
            return found
        body = {k: v for k, v in body.items() if k != "offset"}
        body.update(limit=limit - len(found), cursor=cursor)


def _namespaces_body(
    prefix: Namespace | None,
    suffix: Namespace | None,
    max_depth: int | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {"limit": limit, "offset": offset}
    if prefix is not None:
        body["prefix"] = _ns(prefix)
    if suffix is not None:
        body["suffix"] = _ns(suffix)
    if max_depth is not None:
        body["max_depth"] = max_depth
    return body


def _error(status: int, raw: bytes) -> MeshError:
    try:
        body = json.loads(raw)
        return MeshError(status, str(body.get("error", "error")), str(body.get("detail", "")))
    except (ValueError, AttributeError):
        return MeshError(status, "error", raw[:200].decode(errors="replace"))
