"""An MCP server over one node's local API: the memory as tools for any MCP client.

:func:`build_server` makes an ``mcp`` 2.x ``MCPServer`` whose tools call a node's REST API
(``memmesh mcp --node URL`` serves it over stdio). Reads return the node's **read receipt**,
writes the **claim id**; ``record_decision`` writes a ``decision`` claim that cites the receipts
(and attestation ids) it rests on, and ``verify_attestation`` checks an attestation offline, in
this process, with no node at all. A refusal by the node (``{"error", "detail"}``) becomes an
MCP tool error whose message starts with its reason code, such as ``bad_request: ...``.

The tools use :class:`memmesh.client.AsyncMeshClient` where it fits and raw ``aiohttp``
otherwise (search, to keep the receipt of an empty result; receipts; attestations). Each call
opens its own HTTP session, so the server holds nothing between calls but the node's URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import aiohttp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict

from . import __version__
from .attest import verify_attestation as _verify_attestation
from .client import AsyncMeshClient, Item, MeshError, Written
from .runtime.attest_api import report_json

__all__ = ["TOOL_NAMES", "MeshTools", "build_server"]

TIMEOUT_S = 30.0
ATTEST_TIMEOUT_S = 120.0
"""Attesting waits for each witness (the node gives each 30 s), so it gets longer."""
LIMIT_MAX = 1000
"""The node's largest page (``SEARCH_LIMIT_MAX``)."""

INSTRUCTIONS = """\
Memory Mesh: a memory shared by a swarm of agents. Every value is a signed claim about a
subject (namespace, key), with its author, source and timestamp.
- Read with get_memory or search_memories: each answer carries a read receipt (its `id` is
  64 hex digits) that states exactly which claims you saw.
- When you act on what you read, record it with record_decision, passing the receipts (or
  their ids, or attestation ids): the decision then cites what it was based on.
- Write with add_memory; it replaces the value this node holds for the subject.
- Two writes that did not see each other are a conflict: list_conflicts shows them and the
  policy's decision; resolve_conflict settles one (it needs a resolver or admin agent).
- create_attestation has the node sign what it knows now; verify_attestation checks one
  offline."""

# -- typed answers (the tools' output schemas) -----------------------------------------------


class Receipt(TypedDict):
    """What a read returned: ``id`` is a tagged hash of the other three."""

    id: str
    frontier: str
    claims: list[str]
    reader: str


class Provenance(TypedDict):
    """Who wrote the shown claim, when, from what, and whether its signature verified."""

    claim_id: str
    envelope_id: str
    type: str
    agent: str
    role: str | None
    aseq: int
    hlc: list[int]
    source: str | None
    signature: str
    based_on: list[str]
    derived_from: list[str]
    supersedes: list[str]
    confidence: int | None
    valid_at: int | None
    invalid_at: int | None


class MemoryItem(TypedDict):
    namespace: list[str]
    key: str
    value: Any
    state: str
    claim_id: str | None
    provenance: Provenance | None
    live: list[str]
    conflict: dict[str, Any] | None


class Memory(MemoryItem):
    receipt: Receipt


class SearchResult(TypedDict):
    items: list[MemoryItem]
    receipt: Receipt
    next: dict[str, Any] | None


class WrittenClaim(TypedDict):
    claim_id: str
    envelope_id: str
    seq: int


class Decision(WrittenClaim):
    based_on: list[str]
    """The ids the claim cites, as it holds them: sorted, without duplicates."""


class History(TypedDict):
    namespace: list[str]
    key: str
    entries: list[dict[str, Any]]
    next: str | None


class Namespaces(TypedDict):
    namespaces: list[list[str]]
    next: dict[str, Any] | None


class Conflicts(TypedDict):
    conflicts: list[dict[str, Any]]
    next: str | None


class Attestation(TypedDict):
    id: str
    signer: str
    seq: int
    hlc: list[int]
    """``[physical_ms, logical]``."""
    witnesses: list[str]
    refusals: dict[str, str]
    frontier_hash: str
    counts: dict[str, int]
    dsse: dict[str, Any]


# -- parameter types -------------------------------------------------------------------------

NamespaceArg = Annotated[
    str | list[str],
    Field(description="Dotted namespace such as 'crm.accounts', or its list of labels."),
]
KeyArg = Annotated[str, Field(description="The key within the namespace.")]
PageCursorArg = Annotated[
    str | None,
    Field(description="The `next` of an earlier answer, to go on from where it stopped."),
]
IdList = Sequence[str]

_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def _write(*, destructive: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=False,
        open_world_hint=False,
    )


# -- the tools -------------------------------------------------------------------------------


class MeshTools:
    """The tools, bound to one node's API; each method is one MCP tool."""

    def __init__(self, api: str, *, token: str | None = None, timeout_s: float = TIMEOUT_S):
        self.api = api.rstrip("/")
        if not self.api.startswith(("http://", "https://")):
            raise ValueError(f"{api!r} is not an http:// or https:// URL of a node's API")
        self.token = token
        self.timeout_s = timeout_s

    # -- plumbing --

    @asynccontextmanager
    async def _refusals(self) -> AsyncIterator[None]:
        """Turn what the node refuses, or not reaching it, into tool errors with a reason."""
        try:
            yield
        except MeshError as exc:
            raise ToolError(f"{exc.code}: {exc.detail} (HTTP {exc.status})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            raise ToolError(f"unreachable: no answer from the node at {self.api}: {why}") from exc

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncMeshClient]:
        async with (
            self._refusals(),
            AsyncMeshClient(self.api, token=self.token, timeout_s=self.timeout_s) as mesh,
        ):
            yield mesh

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """One raw call to the node; a refusal raises :class:`MeshError` as the client does."""
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.api + path, json=body, headers=headers) as response,
        ):
            raw = await response.read()
            if response.status >= 400:
                raise _refusal(response.status, raw)
            return json.loads(raw)

    # -- reads --

    async def get_memory(self, *, namespace: NamespaceArg, key: KeyArg) -> Memory:
        """Read one subject as this node shows it now: its value, state (`ok`, `deleted`,
        `resolved` when a policy settled a conflict, `conflict` when none did), the
        provenance of the shown claim (author agent, its role, source, HLC timestamp, whether
        its signature verified), the conflict if any, and the read receipt. Keep the receipt:
        record_decision cites it. Fails with `not_found` when nothing is live there."""
        labels = _labels(namespace)
        async with self._client() as mesh:
            item = await mesh.get(labels, key)
        if item is None:
            raise ToolError(f"not_found: nothing live at {'.'.join(labels)}:{key}")
        assert item.receipt is not None
        return {**_memory_item(item), "receipt": _receipt(item.receipt)}

    async def search_memories(
        self,
        *,
        namespace_prefix: Annotated[
            str | list[str],
            Field(description="Namespace prefix to search under, such as 'crm' ('' for all)."),
        ],
        filter: Annotated[
            dict[str, Any] | None,
            Field(
                description='Conditions on the values\' fields, such as {"tier": "gold"} or '
                '{"score": {"$gte": 3}}; operators $eq $ne $gt $gte $lt $lte.'
            ),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX, description="Most items.")] = 10,
        offset: Annotated[int, Field(ge=0, le=1 << 31, description="Items to skip.")] = 0,
        cursor: Annotated[
            dict[str, Any] | None,
            Field(
                description="The `next` of an earlier answer to this search, to go on from "
                "where it stopped (then leave offset out)."
            ),
        ] = None,
    ) -> SearchResult:
        """Search the values under a namespace prefix, optionally filtered on their fields.
        Returns the items (value, state, provenance), one read receipt for all of them (also
        when nothing matched) and `next`: null when nothing is left; otherwise call again with
        cursor=next for the rest (a large prefix is read a part at a time, so an answer can
        hold fewer items than limit, even none, and still have more to come)."""
        prefix = [] if namespace_prefix in ("", []) else _labels(namespace_prefix)
        body: dict[str, Any] = {"namespace_prefix": prefix, "filter": filter, "limit": limit}
        if cursor is not None:
            body["cursor"] = cursor
        elif offset:
            body["offset"] = offset
        async with self._refusals():
            answer = await self._request("POST", "/v1/store/items/search", body)
        items = [_memory_item(Item.from_json(i)) for i in answer["items"]]
        return {"items": items, "receipt": _receipt(answer["receipt"]), "next": answer.get("next")}

    async def get_memory_history(
        self,
        *,
        namespace: NamespaceArg,
        key: KeyArg,
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX, description="Most claims.")] = 100,
        cursor: PageCursorArg = None,
    ) -> History:
        """Every claim ever made about one subject, oldest first, each with its status:
        `live`, `superseded`, `excluded` (its author was revoked or its node equivocated) or
        `invalid` (with the reason), and its full provenance. Empty when there is none. At
        most `limit` an answer: `next` is null when none are left, otherwise call again with
        cursor=next for the rest."""
        labels = _labels(namespace)
        query = {"namespace": ".".join(labels), "key": key, "limit": str(limit)}
        if cursor is not None:
            query["after"] = cursor
        async with self._refusals():
            try:
                answer = await self._request("GET", f"/v1/store/items/history?{urlencode(query)}")
            except MeshError as exc:
                if exc.status != 404 or cursor is not None:  # a cursor names a claim it gave
                    raise
                answer = {"entries": [], "next": None}  # no claim about this subject
        return {
            "namespace": labels,
            "key": key,
            "entries": answer["entries"],
            "next": answer.get("next"),
        }

    async def list_namespaces(
        self,
        *,
        prefix: Annotated[
            str | list[str] | None,
            Field(description="Only namespaces under this one (dotted, or a list of labels)."),
        ] = None,
        max_depth: Annotated[
            int | None, Field(ge=1, description="Cut namespaces to this many labels.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX, description="Most namespaces.")] = 100,
        cursor: Annotated[
            dict[str, Any] | None,
            Field(description="The `next` of an earlier answer, to go on from where it stopped."),
        ] = None,
    ) -> Namespaces:
        """The namespaces that hold at least one value, each as its list of labels, sorted.
        `next`: null when nothing is left; otherwise call again with cursor=next for the rest
        (many namespaces are read a part at a time, so an answer can hold fewer than limit,
        even none, and still have more to come)."""
        body: dict[str, Any] = {"limit": limit}
        if prefix not in (None, "", []):
            body["prefix"] = _labels(prefix)
        if max_depth is not None:
            body["max_depth"] = max_depth
        if cursor is not None:
            body["cursor"] = cursor
        async with self._refusals():
            answer = await self._request("POST", "/v1/store/namespaces", body)
        return {"namespaces": answer["namespaces"], "next": answer.get("next")}

    async def list_conflicts(
        self,
        *,
        status: Annotated[
            Literal["current", "all"],
            Field(description="`current`: conflicts standing now; `all`: settled ones too."),
        ] = "current",
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX, description="Most conflicts.")] = 50,
        cursor: PageCursorArg = None,
    ) -> Conflicts:
        """Conflicts: two or more claims about one subject written without seeing each
        other. Each has its id, subject, candidate claims (with provenance), the policy's
        decision and why, whether it is open (no policy settled it: no value is shown until
        resolve_conflict or a new write settles it), and when this node saw it. At most
        `limit` an answer: `next` is null when none are left, otherwise call again with
        cursor=next for the rest."""
        query = {"status": status, "limit": str(limit)}
        if cursor is not None:
            query["after"] = cursor
        async with self._refusals():
            answer = await self._request("GET", f"/v1/conflicts?{urlencode(query)}")
        return {"conflicts": answer["conflicts"], "next": answer.get("next")}

    # -- writes --

    async def add_memory(
        self,
        *,
        namespace: NamespaceArg,
        key: KeyArg,
        value: Annotated[Any, Field(description="The value: any JSON value.")],
        type: Annotated[
            str,
            Field(
                description="Claim type: fact, observation, decision, instruction, note, or a "
                "custom type registered on the mesh (its value must match the schema)."
            ),
        ] = "fact",
        source: Annotated[
            str | None, Field(description="Where the value came from, as free text.")
        ] = None,
        based_on: Annotated[
            IdList,
            Field(description="Ids (64 hex digits) of receipts or attestations it rests on."),
        ] = (),
    ) -> WrittenClaim:
        """Write a value to the shared memory, signed by this node's agent key. It replaces
        the value the node holds for the subject (the old claim stays in the history).
        Returns the new claim's id, and the envelope id and seq that carry it."""
        labels = _labels(namespace)
        async with self._client() as mesh:
            written = await mesh.put(
                labels, key, value, type=type, source=source, based_on=tuple(based_on)
            )
        return _written(written)

    async def record_decision(
        self,
        *,
        namespace: NamespaceArg,
        key: KeyArg,
        decision: Annotated[Any, Field(description="The decision: any JSON value.")],
        receipts: Annotated[
            Sequence[dict[str, Any] | str],
            Field(
                description="What the decision rests on: receipts as returned by get_memory "
                "or search_memories (recorded on the node, then cited by id), or ids (64 hex "
                "digits) of receipts or attestations, cited as they are."
            ),
        ] = (),
        source: Annotated[
            str | None, Field(description="Who or what made the decision, as free text.")
        ] = None,
    ) -> Decision:
        """Record a decision as a `decision` claim whose `based_on` cites the read receipts
        (and attestation ids) it was based on, so anyone can trace it to exactly what was
        read. Returns the claim id and the ids it cites (sorted)."""
        labels = _labels(namespace)
        cited: list[str] = []
        async with self._refusals():
            for given in receipts:
                if isinstance(given, str):
                    cited.append(given)
                    continue
                body = {"receipt": dict(given), "replicate": False}
                answer = await self._request("POST", "/v1/receipts", body)
                cited.append(str(answer["id"]))
        async with self._client() as mesh:
            written = await mesh.put(
                labels, key, decision, type="decision", source=source, based_on=tuple(cited)
            )
        return {**_written(written), "based_on": sorted({c.lower() for c in cited})}

    async def resolve_conflict(
        self,
        *,
        conflict_id: Annotated[str, Field(description="The conflict's id (from list_conflicts).")],
        winner: Annotated[
            str, Field(description="The claim id of the candidate that wins (64 hex digits).")
        ],
    ) -> WrittenClaim:
        """Settle a conflict: write a `resolution` claim that supersedes every candidate and
        shows the winner's value. This node's agent must be a resolver or an admin (else
        `role_not_allowed`). Returns the resolution's claim id."""
        async with self._client() as mesh:
            written = await mesh.resolve_conflict(conflict_id, winner)
        return _written(written)

    # -- attestations --

    async def create_attestation(
        self,
        *,
        witnesses: Annotated[
            IdList,
            Field(
                description="API URLs of other nodes asked to co-sign; each does only if its "
                "replica agrees at this frontier."
            ),
        ] = (),
    ) -> Attestation:
        """Have the node sign (DSSE) exactly what it knows now: its frontier, Merkle roots,
        the live claims and how every subject resolved. Returns the attestation id (citable
        in record_decision), its seq, the witnesses that co-signed, the refusals, and the DSSE
        envelope, which verify_attestation checks offline."""
        async with self._refusals():
            answer = await self._request(
                "POST",
                "/v1/attestations",
                {"witnesses": list(witnesses)},
                timeout_s=max(self.timeout_s, ATTEST_TIMEOUT_S),
            )
        return {
            "id": answer["id"],
            "signer": answer["signer"],
            "seq": answer["seq"],
            "hlc": list(answer["statement"]["hlc"]),
            "witnesses": answer["witnesses"],
            "refusals": answer["refusals"],
            "frontier_hash": answer["frontier_hash"],
            "counts": answer["counts"],
            "dsse": answer["dsse"],
        }

    async def verify_attestation(
        self,
        *,
        dsse: Annotated[
            dict[str, Any] | str,
            Field(description="The DSSE envelope (the JSON object, or its JSON text)."),
        ],
        bundle_base64: Annotated[
            str | None,
            Field(description="The attestation's bundle file in base64: check all it states."),
        ] = None,
        pubkey: Annotated[
            str | None,
            Field(description="The signer's expected public key (64 hex digits)."),
        ] = None,
    ) -> dict[str, Any]:
        """Verify an attestation offline, in this process (no node is asked): the signer's
        and witnesses' signatures, and with a bundle every envelope, claim signature and
        digest it states. Returns the report: `verdict` (valid, invalid or unusable),
        `valid`, each failure with its reason code, the attestation id, signer, seq and
        witnesses."""
        data = json.dumps(dsse, separators=(",", ":")) if isinstance(dsse, dict) else dsse
        bundle: bytes | None = None
        if bundle_base64 is not None:
            try:
                bundle = base64.b64decode(bundle_base64, validate=True)
            except (binascii.Error, ValueError):
                raise ToolError("bad_request: bundle_base64 is not base64") from None
        key: bytes | None = None
        if pubkey is not None:
            try:
                key = bytes.fromhex(pubkey)
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ToolError("bad_request: pubkey is a public key, 64 hex digits")
        report = await asyncio.to_thread(
            _verify_attestation, data.encode(), bundle=bundle, pubkey=key
        )
        return report_json(report)


TOOLS: tuple[tuple[str, str, ToolAnnotations], ...] = (
    ("add_memory", "Add a memory", _write()),
    ("get_memory", "Get a memory", _READ),
    ("search_memories", "Search memories", _READ),
    ("get_memory_history", "History of a memory", _READ),
    ("list_namespaces", "List namespaces", _READ),
    ("list_conflicts", "List conflicts", _READ),
    ("resolve_conflict", "Resolve a conflict", _write(destructive=True)),
    ("create_attestation", "Create an attestation", _write()),
    ("verify_attestation", "Verify an attestation offline", _READ),
    ("record_decision", "Record a decision", _write()),
)
TOOL_NAMES = tuple(name for name, _, _ in TOOLS)


def build_server(
    api: str, *, token: str | None = None, timeout_s: float = TIMEOUT_S
) -> MCPServer[Any]:
    """The MCP server for the node whose local API is at ``api`` (``token``: its bearer
    token). Run it with ``.run()`` (stdio) or ``await .run_stdio_async()``."""
    tools = MeshTools(api, token=token, timeout_s=timeout_s)
    server: MCPServer[Any] = MCPServer(
        "memmesh",
        title="Memory Mesh",
        description=f"Shared, signed, attestable memory, through the node at {tools.api}",
        instructions=INSTRUCTIONS,
        version=__version__,
    )
    for name, title, hints in TOOLS:
        fn = getattr(tools, name)
        titled = hints.model_copy(update={"title": title})
        server.add_tool(fn, name=name, title=title, description=_doc(fn), annotations=titled)
    return server


# -- shapes ----------------------------------------------------------------------------------


def _doc(fn: Any) -> str:
    """A docstring as one paragraph (no hard wraps for the model to read around)."""
    return " ".join(str(fn.__doc__ or "").split())


def _labels(namespace: str | list[str]) -> list[str]:
    labels = namespace.split(".") if isinstance(namespace, str) else list(namespace)
    if not labels or not all(labels):
        raise ToolError("bad_request: a namespace is a non-empty list of non-empty labels")
    return labels


def _refusal(status: int, raw: bytes) -> MeshError:
    try:
        body = json.loads(raw)
        return MeshError(status, str(body["error"]), str(body.get("detail", "")))
    except (ValueError, TypeError, KeyError):
        return MeshError(status, "error", raw[:200].decode(errors="replace"))


def _receipt(data: dict[str, Any]) -> Receipt:
    return {
        "id": data["id"],
        "frontier": data["frontier"],
        "claims": list(data["claims"]),
        "reader": data["reader"],
    }


def _provenance(claim: dict[str, Any] | None) -> Provenance | None:
    if claim is None:
        return None
    return {
        "claim_id": claim["claim_id"],
        "envelope_id": claim["envelope_id"],
        "type": claim["type"],
        "agent": claim["agent"],
        "role": claim.get("role"),
        "aseq": claim["aseq"],
        "hlc": list(claim["hlc"]),
        "source": claim.get("source"),
        "signature": claim["signature"],
        "based_on": list(claim.get("based_on", [])),
        "derived_from": list(claim.get("derived_from", [])),
        "supersedes": list(claim.get("supersedes", [])),
        "confidence": claim.get("confidence"),
        "valid_at": claim.get("valid_at"),
        "invalid_at": claim.get("invalid_at"),
    }


def _memory_item(item: Item) -> MemoryItem:
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "state": item.state,
        "claim_id": None if item.claim is None else item.claim["claim_id"],
        "provenance": _provenance(item.claim),
        "live": list(item.live),
        "conflict": item.conflict,
    }


def _written(written: Written) -> WrittenClaim:
    return {"claim_id": written.claim_id, "envelope_id": written.envelope_id, "seq": written.seq}
