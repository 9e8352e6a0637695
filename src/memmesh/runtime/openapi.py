"""The OpenAPI 3.1 description of the local API, served at ``GET /v1/openapi.json``.

Hand-written from the routes, and checked against them by a test (every route the application
serves is described, and every described path is served).
"""

from __future__ import annotations

from typing import Any

from .. import __version__

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    params: tuple[str, ...] | list[str] = (),
    ok: str = "200",
    errors: tuple[str, ...] = ("400",),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "success", "content": {_JSON: {"schema": {}}}}},
    }
    for code in errors:
        op["responses"][code] = {"description": "error", "content": {_JSON: {"schema": _ERROR}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    if params:
        op["parameters"] = [
            {
                "name": p.removeprefix("path:"),
                "in": "path" if p.startswith("path:") else "query",
                "required": p.startswith("path:"),
                "schema": {"type": "string"},
            }
            for p in params
        ]
    return op


def _object(required: tuple[str, ...], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


_NAMESPACE = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_IDS = {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}


def openapi_document() -> dict[str, Any]:
    item = _object(
        ("namespace", "key", "value"),
        namespace=_NAMESPACE,
        key={"type": "string"},
        value={},
        type={"type": "string"},
        source={"type": "string"},
        valid_at={"type": "integer"},
        invalid_at={"type": "integer"},
        confidence={"type": "integer", "minimum": 0, "maximum": 10000},
        based_on=_IDS,
        derived_from=_IDS,
    )
    paths: dict[str, Any] = {
        "/livez": {"get": _op("The process answers", errors=())},
        "/readyz": {"get": _op("Ready to serve (503 before)", params=["verbose"], errors=("503",))},
        "/metrics": {"get": _op("Prometheus text", errors=())},
        "/v1/openapi.json": {"get": _op("This document", errors=())},
        "/v1/state": {"get": _op("Node, frontier, digest, peers, buffers", errors=())},
        "/v1/peers": {
            "get": _op("Sessions with peers", errors=()),
            "post": _op("Dial a peer", body=_object(("url",), url={"type": "string"}), ok="202"),
            "delete": _op("Forget a peer", params=["url"]),
        },
        "/v1/members": {"get": _op("Membership", errors=())},
        "/v1/evidence": {"get": _op("Equivocation evidence held", errors=())},
        "/v1/evidence/{id}": {
            "get": _op(
                "One piece of evidence, with both envelopes", params=["path:id"], errors=("404",)
            )
        },
        "/v1/members/{key}/chain": {"get": _op("Admit chain of a key", params=["path:key"])},
        "/v1/agents/{key}": {"get": _op("Highest claim seq of an agent", params=["path:key"])},
        "/v1/claims": {
            "post": _op(
                "Write a claim signed elsewhere (hex of its bytes)",
                body=_object(("claim",), claim={"type": "string"}),
                ok="201",
                errors=("400", "403", "422", "429", "503", "507"),
            )
        },
        "/v1/store/items": {
            "put": _op(
                "Write a value (supersedes what this node holds of the subject)",
                body=item,
                ok="201",
                errors=("400", "403", "422", "429", "503", "507"),
            ),
            "get": _op(
                "Read one subject (key) or a namespace, with a receipt; as_of an attestation",
                params=["namespace", "key", "reader", "as_of", "after"],
                errors=("400", "404", "409"),
            ),
            "delete": _op(
                "Retract a subject",
                params=["namespace", "key"],
                ok="201",
                errors=("400", "404", "429", "503"),
            ),
        },
        "/v1/store/items/search": {
            "post": _op(
                "Search values under a namespace prefix ($eq $ne $gt $gte $lt $lte); the "
                "answer's `next`, sent back as `cursor`, goes on where a page stopped",
                body=_object(
                    (),
                    namespace_prefix=_NAMESPACE,
                    filter={"type": "object"},
                    limit={"type": "integer"},
                    offset={"type": "integer"},
                    cursor={"type": "object"},
                    as_of={"type": "string"},
                ),
                errors=("400", "404", "409"),
            )
        },
        "/v1/store/items/history": {
            "get": _op(
                "Every claim of a subject, at most limit (1,000) a page; after=the answer's "
                "next for the rest",
                params=["namespace", "key", "limit", "after"],
                errors=("400", "404"),
            )
        },
        "/v1/store/namespaces": {
            "post": _op(
                "List namespaces, sorted; the answer's `next`, sent back as `cursor`, goes on "
                "where a page stopped",
                body=_object(
                    (),
                    prefix=_NAMESPACE,
                    suffix=_NAMESPACE,
                    max_depth={"type": "integer"},
                    limit={"type": "integer"},
                    offset={"type": "integer"},
                    cursor={"type": "object"},
                ),
            )
        },
        "/v1/conflicts": {
            "get": _op(
                "Conflicts (status=current|all), at most limit (1,000) a page; after=the "
                "answer's next for the rest",
                params=["status", "limit", "after"],
            )
        },
        "/v1/conflicts/{id}": {
            "get": _op("One conflict", params=["path:id"], errors=("400", "404"))
        },
        "/v1/conflicts/{id}/resolve": {
            "post": _op(
                "Settle a conflict with a resolution claim (resolver or admin)",
                params=["path:id"],
                body=_object(("winner",), winner={"type": "string"}),
                ok="201",
                errors=("400", "403", "404", "429", "503"),
            )
        },
        "/v1/receipts": {
            "post": _op(
                "Record a read receipt (locally, or replicated as a receipt claim)",
                body=_object(
                    ("receipt",), receipt={"type": "object"}, replicate={"type": "boolean"}
                ),
                ok="201",
            )
        },
        "/v1/attestations": {
            "get": _op("Attestations held, and split-view evidence among them", errors=()),
            "post": _op(
                "Attest to what this node holds now (witnesses: node API URLs to co-sign)",
                body=_object((), witnesses={"type": "array", "items": {"type": "string"}}),
                ok="201",
            ),
        },
        "/v1/attestations/verify": {
            "post": _op(
                "Verify an attestation (with its bundle, base64); a valid one is kept",
                body=_object(
                    ("dsse",),
                    dsse={"type": "object"},
                    bundle={"type": "string"},
                    pubkey={"type": "string"},
                ),
            )
        },
        "/v1/attestations/{id}": {
            "get": _op(
                "One attestation (format=dsse: the DSSE file itself)",
                params=["path:id", "format"],
                errors=("404",),
            )
        },
        "/v1/attestations/{id}/bundle": {
            "get": _op(
                "The attestation's bundle (octet-stream)",
                params=["path:id"],
                errors=("404", "409"),
            )
        },
        "/v1/attestations/{id}/proof": {
            "get": _op(
                "A claim's inclusion proof in the attestation (octet-stream)",
                params=["path:id", "claim"],
                errors=("400", "404"),
            )
        },
        "/v1/attestations/{id}/witness": {
            "post": _op(
                "Co-sign when this replica agrees at the statement's frontier (409 if not)",
                params=["path:id"],
                body=_object(("dsse",), dsse={"type": "object"}),
                errors=("400", "409"),
            )
        },
        "/v1/export": {
            "get": _op(
                "The document's state as one Yjs v1 update (octet-stream)", params=["format"]
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Memory Mesh node", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _object(
                    ("error", "detail"), error={"type": "string"}, detail={"type": "string"}
                ),
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
