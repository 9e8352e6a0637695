"""A LangGraph store backed by a Memory Mesh node: :class:`MeshStore`.

``MeshStore(url)`` is a ``langgraph.store.base.BaseStore`` whose ``batch`` and ``abatch`` call
one node's local API, so a graph compiled with ``compile(store=MeshStore(url))`` reads and
writes the mesh's shared, signed memory with no change to its code. Items come back as
:class:`MeshItem` and :class:`MeshSearchItem`: LangGraph's ``Item`` and ``SearchItem`` with
their fields exactly as LangGraph defines them, plus a :class:`Provenance` (the claim, its
author, source, HLC, signature status, conflict state and the node's read receipt).

The mapping (``docs/langgraph.md`` has the whole table):

- ``GetOp`` -> ``GET /v1/store/items?namespace=a.b&key=k``. A deleted subject, and one whose
  conflict no policy settled (``manual``), show no value: ``None``.
- ``PutOp`` with a value -> ``PUT /v1/store/items`` (a ``fact`` claim by the node's agent key,
  superseding what the node holds). With ``None`` -> ``DELETE /v1/store/items`` (a
  retraction) when the GET shows something to retract; deleting what was never written, or
  is already deleted, writes nothing.
- ``SearchOp`` -> ``POST /v1/store/items/search`` with the filter mapped to the node's
  operators; results come in namespace then key order. A semantic ``query`` is ignored, as
  LangGraph's own stores do when they have no embedding index (``semantic_query="error"``
  raises ``NotImplementedError`` instead).
- ``ListNamespacesOp`` -> the namespaces of the items a search under the prefix returns, then
  LangGraph's prefix/suffix conditions (with ``*`` wildcards), ``max_depth``, ``limit`` and
  ``offset`` applied here, since the node's ``POST /v1/store/namespaces`` has no ``*``
  wildcards. (It costs a transfer of every item under the prefix.)

A batch runs like LangGraph's stores run one: every read sees the store as it was before the
batch, then the writes are made, the last one per ``(namespace, key)`` winning. Every op is
checked before anything is sent, so a batch refused for a bad op writes nothing.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        InvalidNamespaceError,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "memmesh.integrations.langgraph needs LangGraph: pip install 'memmesh[langgraph]'"
    ) from exc

from ..canonical import check_json, is_nfc
from ..claims import KEY_BYTES_MAX, LABEL_BYTES_MAX, NAMESPACE_LABELS_MAX
from ..client import AsyncMeshClient, MeshClient, MeshError
from ..client import Item as NodeItem

__all__ = ["MeshItem", "MeshSearchItem", "MeshStore", "Provenance"]

PAGE_MAX = 1000
"""The most items the node returns per search request (``SEARCH_LIMIT_MAX``)."""
SYSTEM_ROOT = "_mesh"
_RANGE = ("$gt", "$gte", "$lt", "$lte")
_OPERATORS = ("$eq", "$ne", *_RANGE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_INT_MAX = 2**53


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an item's value comes from, as the node showed it."""

    claim_id: str
    """The claim whose value is shown (for a value a policy chose, the winning claim)."""
    envelope_id: str
    agent: str
    """The author's agent key (hex)."""
    role: str | None
    """The author's role in the mesh (``writer``, ``admin``...), if it is a member."""
    type: str
    """The claim type (``fact`` for what :class:`MeshStore` writes)."""
    source: str | None
    hlc: tuple[int, int]
    """The claim's hybrid logical clock: (physical ms since the epoch, logical counter)."""
    signature: str
    """``verified`` (the node checks every signature before it stores a claim)."""
    state: str
    """``ok``, or ``resolved`` when a policy chose this value among conflicting claims."""
    conflict: Mapping[str, Any] | None
    """The conflict and its decision with the explanation, when ``state`` is ``resolved``."""
    receipt: Mapping[str, Any]
    """The read receipt ``{id, frontier, claims, reader}``; a decision cites its ``id``."""
    live: tuple[str, ...]
    """The subject's live claim ids (more than one when it is a settled conflict)."""
    claim: Mapping[str, Any]
    """The claim as the node describes it: also ``derived_from``, ``based_on``, ``confidence``,
    ``valid_at``, ``invalid_at``, ``supersedes``."""


class MeshItem(Item):
    """A LangGraph ``Item`` read from the mesh, with its :class:`Provenance`."""

    __slots__ = ("provenance",)
    provenance: Provenance

    def __init__(
        self,
        *,
        value: dict[str, Any],
        key: str,
        namespace: tuple[str, ...],
        created_at: datetime,
        updated_at: datetime,
        provenance: Provenance,
    ) -> None:
        super().__init__(
            value=value,
            key=key,
            namespace=namespace,
            created_at=created_at,
            updated_at=updated_at,
        )
        self.provenance = provenance


class MeshSearchItem(SearchItem):
    """A LangGraph ``SearchItem`` found in the mesh (``score`` is None), with its
    :class:`Provenance`."""

    __slots__ = ("provenance",)
    provenance: Provenance

    def __init__(  # noqa: PLR0917 - SearchItem's own positional signature
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        created_at: datetime,
        updated_at: datetime,
        score: float | None = None,
        *,
        provenance: Provenance,
    ) -> None:
        super().__init__(namespace, key, value, created_at, updated_at, score)
        self.provenance = provenance


# -- requests: what a batch asks of the node, driven by the sync or the async client ----------


@dataclass(frozen=True, slots=True)
class _Get:
    namespace: tuple[str, ...]
    key: str


@dataclass(frozen=True, slots=True)
class _Put:
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Delete:
    namespace: tuple[str, ...]
    key: str


@dataclass(frozen=True, slots=True)
class _Search:
    body: dict[str, Any]


_Request = _Get | _Put | _Delete | _Search
_Run = Generator[_Request, Any, list[Result]]


class MeshStore(BaseStore):
    """A LangGraph store on one Memory Mesh node's local API.

    ``url`` is the node's API (``http://127.0.0.1:7401``); ``token`` its ``api_token``, if set.
    Writes are claims signed by the node's agent key, of type ``claim_type`` (``fact``), with
    ``source`` as their provenance text if given. ``semantic_query`` says what a search with a
    natural-language ``query`` does: ``ignore`` it (the default, as LangGraph's stores without
    an embedding index do) or raise ``NotImplementedError`` (``error``).

    ``client`` is a :class:`~memmesh.client.MeshClient` on the same node, for what LangGraph's
    store has no words for: ``history``, ``conflicts``, ``resolve_conflict``,
    ``record_decision`` (pass it ``item.provenance.receipt``).
    """

    supports_ttl = False

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        source: str | None = None,
        claim_type: str = "fact",
        semantic_query: Literal["ignore", "error"] = "ignore",
        timeout_s: float = 15.0,
    ) -> None:
        if semantic_query not in ("ignore", "error"):
            raise ValueError("semantic_query is 'ignore' or 'error'")
        self.client = MeshClient(url, token=token, timeout_s=timeout_s)
        self.url = self.client.url
        self.token = token
        self.source = source
        self.claim_type = claim_type
        self.semantic_query = semantic_query
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"MeshStore({self.url!r})"

    # -- BaseStore ---------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        run = self._run([self._check(op) for op in ops])
        try:
            request = next(run)
            while True:
                request = run.send(self._do(request))
        except StopIteration as stop:
            results: list[Result] = stop.value
            return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        run = self._run([self._check(op) for op in ops])
        try:
            request = next(run)
        except StopIteration as stop:
            results: list[Result] = stop.value
            return results
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with (
            AsyncMeshClient(self.url, token=self.token, timeout_s=self.timeout_s) as client,
            aiohttp.ClientSession(timeout=timeout) as session,
        ):
            try:
                while True:
                    request = run.send(await self._ado(client, session, request))
            except StopIteration as stop:
                results = stop.value
                return results

    # -- checks: every op before anything is sent --------------------------------------------

    def _check(self, op: Op) -> Op:
        if isinstance(op, GetOp):
            _namespace(op.namespace)
            _key(op.key)
        elif isinstance(op, PutOp):
            namespace = _namespace(op.namespace)
            _key(op.key)
            if namespace[0] == SYSTEM_ROOT:
                raise InvalidNamespaceError(
                    f"namespaces under {SYSTEM_ROOT!r} hold the mesh's system claims; "
                    f"content cannot be written there: {namespace}"
                )
            if op.ttl is not None:
                raise NotImplementedError("MeshStore does not support TTL: claims do not expire")
            if op.value is not None:
                return op._replace(value=_value(op.value))
        elif isinstance(op, SearchOp):
            _namespace(op.namespace_prefix, empty_ok=True)
            _page(op.limit, op.offset)
            if op.query and self.semantic_query == "error":
                raise NotImplementedError(
                    "MeshStore has no semantic search: the node matches namespaces and "
                    "filters, not meaning; pass no query, or use semantic_query='ignore'"
                )
            _node_filter(op.filter)
        elif isinstance(op, ListNamespacesOp):
            for condition in op.match_conditions or ():
                if condition.match_type not in ("prefix", "suffix"):
                    raise ValueError(f"unsupported match type {condition.match_type!r}")
                _namespace(condition.path, empty_ok=True)
            _page(op.limit, op.offset)
            if op.max_depth is not None and op.max_depth < 0:
                raise ValueError("max_depth is a non-negative integer or None")
        else:
            raise ValueError(f"unknown operation type: {type(op).__name__}")
        return op

    # -- the batch, as requests --------------------------------------------------------------

    def _run(self, ops: list[Op]) -> _Run:
        results: list[Result] = [None] * len(ops)
        writes: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                answer = yield _Get(tuple(op.namespace), op.key)
                results[i] = None if answer is None else _item(answer, answer["receipt"])
            elif isinstance(op, SearchOp):
                results[i] = yield from _search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = yield from _list_namespaces(op)
            elif isinstance(op, PutOp):
                writes[(tuple(op.namespace), op.key)] = op
        for (namespace, key), op in writes.items():
            if op.value is None:
                yield _Delete(namespace, key)
            else:
                yield _Put(namespace, key, dict(op.value))
        return results

    # -- the drivers -------------------------------------------------------------------------

    def _do(self, request: _Request) -> Any:
        if isinstance(request, _Get):
            return _node_item(self.client.get(request.namespace, request.key))
        if isinstance(request, _Put):
            self.client.put(request.namespace, request.key, request.value, **self._fields())
            return None
        if isinstance(request, _Delete):
            if _deletable(self.client.get(request.namespace, request.key)):
                try:
                    self.client.delete(request.namespace, request.key)
                except MeshError as exc:
                    if exc.status != 404:  # deleted meanwhile
                        raise
            return None
        return self._post("/v1/store/items/search", request.body)

    async def _ado(
        self, client: AsyncMeshClient, session: aiohttp.ClientSession, request: _Request
    ) -> Any:
        if isinstance(request, _Get):
            return _node_item(await client.get(request.namespace, request.key))
        if isinstance(request, _Put):
            await client.put(request.namespace, request.key, request.value, **self._fields())
            return None
        if isinstance(request, _Delete):
            if _deletable(await client.get(request.namespace, request.key)):
                try:
                    await client.delete(request.namespace, request.key)
                except MeshError as exc:
                    if exc.status != 404:  # deleted meanwhile
                        raise
            return None
        async with session.post(
            self.url + "/v1/store/items/search", json=request.body, headers=self._headers()
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise _mesh_error(response.status, raw)
            return json.loads(raw)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": self.claim_type}
        if self.source is not None:
            fields["source"] = self.source
        return fields

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 - MeshClient checked the scheme
            self.url + path, data=json.dumps(body).encode(), method="POST"
        )
        for name, value in self._headers().items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _mesh_error(exc.code, exc.read()) from None


# -- search and namespaces ---------------------------------------------------------------------


def _search(op: SearchOp) -> Generator[_Request, Any, list[SearchItem]]:
    """One search, in pages of at most :data:`PAGE_MAX`, each going on from where the last
    stopped (its ``next``; each item keeps its page's receipt). A page may hold fewer items
    than asked, even none, where the node stopped reading (``search_scan_subjects_max``): only
    a ``next`` of null says nothing is left."""
    node_filter = _node_filter(op.filter)
    found: list[SearchItem] = []
    start: dict[str, Any] = {"offset": op.offset}
    while len(found) < op.limit:
        body: dict[str, Any] = {
            "namespace_prefix": list(op.namespace_prefix),
            "limit": min(op.limit - len(found), PAGE_MAX),
            **start,
        }
        if node_filter:
            body["filter"] = node_filter
        answer = yield _Search(body)
        found.extend(_search_item(data, answer["receipt"]) for data in answer["items"])
        if answer.get("next") is None:
            break
        start = {"cursor": answer["next"]}
    return found


def _list_namespaces(op: ListNamespacesOp) -> Generator[_Request, Any, list[tuple[str, ...]]]:
    """The namespaces holding at least one item a search returns, filtered as LangGraph
    filters them (``*`` matches any one label), cut at ``max_depth``, sorted, then paged."""
    conditions = tuple(op.match_conditions or ())
    prefix = _literal_prefix(conditions)
    held: set[tuple[str, ...]] = set()
    body: dict[str, Any] = {"namespace_prefix": list(prefix), "limit": PAGE_MAX}
    while True:
        answer = yield _Search(body)
        held.update(tuple(data["namespace"]) for data in answer["items"])
        if answer.get("next") is None:
            break
        # Each page goes on from where the last stopped: paging by offset made the node read
        # the prefix from its start again for every page.
        body = {"namespace_prefix": list(prefix), "limit": PAGE_MAX, "cursor": answer["next"]}
    chosen = [ns for ns in held if all(_matches(c, ns) for c in conditions)]
    if op.max_depth is not None:
        chosen = list({ns[: op.max_depth] for ns in chosen})
    return sorted(chosen)[op.offset : op.offset + op.limit]


def _literal_prefix(conditions: tuple[MatchCondition, ...]) -> tuple[str, ...]:
    """The longest run of labels before a wildcard among the prefix conditions: what the node
    can narrow the search to."""
    best: tuple[str, ...] = ()
    for condition in conditions:
        if condition.match_type != "prefix":
            continue
        labels: list[str] = []
        for label in condition.path:
            if label == "*":
                break
            labels.append(label)
        if len(labels) > len(best):
            best = tuple(labels)
    return best


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    start = 0 if condition.match_type == "prefix" else len(namespace) - len(path)
    return all(p in ("*", n) for n, p in zip(namespace[start:], path, strict=False))


# -- filters -------------------------------------------------------------------------------------


def _node_filter(given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """LangGraph's filter as the node's: ``{field: {"$op": operand, ...}}``.

    The node compares top-level fields; it refuses what it would answer differently from
    LangGraph's stores: a nested object matched field by field, ``None`` (LangGraph matches a
    missing field too), operators it does not have. Float operands become integers (the mesh
    stores no floats), so ``{"n": {"$gt": 2.5}}`` is ``{"n": {"$gt": 2}}``.
    """
    if not given:
        return None
    if not isinstance(given, Mapping):
        raise ValueError("filter is a mapping of field names to values or operator objects")
    out: dict[str, Any] = {}
    for name, condition in given.items():
        if not isinstance(name, str):
            raise ValueError(f"filter field names are strings, not {name!r}")
        if isinstance(condition, Mapping) and condition:
            operators = [str(k).startswith("$") for k in condition]
            if all(operators):
                out[name] = {op: _operand(name, op, v) for op, v in condition.items()}
                continue
            if any(operators):
                raise ValueError(
                    f"filter on {name!r} mixes operators and fields: {sorted(map(str, condition))}"
                )
        if _has_object(condition):
            raise NotImplementedError(
                f"filter on {name!r} with an object: LangGraph matches nested objects field by "
                "field, the node compares whole values; use {'$eq': {...}} to match the whole "
                "value"
            )
        out[name] = {"$eq": _operand(name, "$eq", condition)}
    return out


def _operand(name: str, op: str, value: Any) -> Any:
    if op not in _OPERATORS:
        known = ", ".join(_OPERATORS)
        raise ValueError(f"unsupported filter operator {op} on {name!r}; use {known}")
    if value is None:
        raise NotImplementedError(
            f"filter on {name!r} with None: LangGraph matches a missing field as None, the node "
            "does not; filter on a value"
        )
    if op in _RANGE:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{op} on {name!r} compares with a number or a string, not {value!r}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{op} on {name!r} with {value}")
            # Stored numbers are integers, so a bound between two integers is the nearer one.
            return math.floor(value) if op in ("$gt", "$lte") else math.ceil(value)
        return value
    return _integral(value)


def _has_object(value: Any) -> bool:
    if isinstance(value, Mapping):
        return True
    return isinstance(value, list | tuple) and any(_has_object(v) for v in value)


def _integral(value: Any) -> Any:
    """Floats that are integers as integers (``2.0`` equals ``2`` in LangGraph's stores)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _JSON_INT_MAX:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_integral(v) for v in value]
    return value


# -- checks --------------------------------------------------------------------------------------


def _namespace(namespace: object, *, empty_ok: bool = False) -> tuple[str, ...]:
    """A namespace the node can hold as it is, or ``InvalidNamespaceError`` (a ValueError).

    The node's API writes namespaces dotted on GET (``namespace=a.b``) and keeps labels as
    non-empty NFC text of at most 128 bytes, at most 16 of them; anything else would be refused,
    or worse, read back as another namespace.
    """
    if not isinstance(namespace, tuple | list):
        raise InvalidNamespaceError(f"a namespace is a tuple of strings, not {namespace!r}")
    labels = tuple(namespace)
    if not labels and not empty_ok:
        raise InvalidNamespaceError("a namespace has at least one label")
    if len(labels) > NAMESPACE_LABELS_MAX:
        raise InvalidNamespaceError(
            f"the mesh holds namespaces of at most {NAMESPACE_LABELS_MAX} labels: {labels}"
        )
    for label in labels:
        if not isinstance(label, str):
            raise InvalidNamespaceError(f"namespace labels are strings, not {label!r}: {labels}")
        if not label:
            raise InvalidNamespaceError(f"namespace labels cannot be empty: {labels}")
        if "." in label:
            raise InvalidNamespaceError(
                f"namespace label {label!r} holds a '.', which the node reads as a separator "
                f"(namespace=a.b): {labels}"
            )
        if not is_nfc(label):
            raise InvalidNamespaceError(
                f"namespace label {label!r} is not in Unicode NFC (the mesh stores NFC text)"
            )
        if len(label.encode()) > LABEL_BYTES_MAX:
            raise InvalidNamespaceError(
                f"namespace label {label[:20]!r}... exceeds {LABEL_BYTES_MAX} bytes"
            )
    return labels


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise ValueError(f"a key is a string, not {key!r}")
    if not key:
        raise ValueError("the mesh holds no empty keys")
    if not is_nfc(key):
        raise ValueError(f"key {key!r} is not in Unicode NFC (the mesh stores NFC text)")
    if len(key.encode()) > KEY_BYTES_MAX:
        raise ValueError(f"key {key[:20]!r}... exceeds {KEY_BYTES_MAX} bytes")
    return key


def _value(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"a value is a dict (a mapping of strings to JSON), not {type(value)}")
    out = dict(value)
    try:
        check_json(out)
    except ValueError as exc:
        raise ValueError(
            f"the mesh stores JSON without floats (integers within 2^53, NFC strings): {exc}"
        ) from None
    return out


def _page(limit: int, offset: int) -> None:
    for name, number in (("limit", limit), ("offset", offset)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValueError(f"{name} is a non-negative integer, not {number!r}")


# -- answers -------------------------------------------------------------------------------------


def _node_item(item: NodeItem | None) -> dict[str, Any] | None:
    """A subject the node shows with a value, as search shows it; None without one."""
    if item is None or item.claim is None or item.state in ("deleted", "conflict"):
        return None
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "state": item.state,
        "claim": item.claim,
        "conflict": item.conflict,
        "live": list(item.live),
        "receipt": item.receipt,
    }


def _deletable(item: NodeItem | None) -> bool:
    """Whether a delete has something to retract: a value, or an open conflict. (The node
    would write another retraction over a deleted subject: a signed write for nothing.)"""
    return item is not None and item.state != "deleted"


def _provenance(data: Mapping[str, Any], receipt: Mapping[str, Any]) -> Provenance:
    claim = data["claim"]
    physical, logical = claim["hlc"]
    return Provenance(
        claim_id=claim["claim_id"],
        envelope_id=claim["envelope_id"],
        agent=claim["agent"],
        role=claim.get("role"),
        type=claim["type"],
        source=claim.get("source"),
        hlc=(int(physical), int(logical)),
        signature=claim["signature"],
        state=data["state"],
        conflict=data.get("conflict"),
        receipt=receipt,
        live=tuple(data.get("live", ())),
        claim=claim,
    )


def _hlc_time(provenance: Provenance) -> datetime:
    return _EPOCH + timedelta(milliseconds=provenance.hlc[0])


def _item(data: Mapping[str, Any], receipt: Mapping[str, Any]) -> MeshItem:
    provenance = _provenance(data, receipt)
    at = _hlc_time(provenance)
    return MeshItem(
        value=data["value"],
        key=data["key"],
        namespace=tuple(data["namespace"]),
        created_at=at,
        updated_at=at,
        provenance=provenance,
    )


def _search_item(data: Mapping[str, Any], receipt: Mapping[str, Any]) -> MeshSearchItem:
    provenance = _provenance(data, receipt)
    at = _hlc_time(provenance)
    return MeshSearchItem(
        tuple(data["namespace"]),
        data["key"],
        data["value"],
        at,
        at,
        provenance=provenance,
    )


def _mesh_error(status: int, raw: bytes) -> MeshError:
    try:
        body = json.loads(raw)
        return MeshError(status, str(body.get("error", "error")), str(body.get("detail", "")))
    except (ValueError, AttributeError):
        return MeshError(status, "error", raw[:200].decode(errors="replace"))
