"""The attestation routes of the local API (DESIGN §7, §9).

- ``POST /v1/attestations``: attest to what this node holds now (``{"witnesses": [API URLs]}``
  asks those nodes to co-sign); 201 with the id, the statement and the DSSE envelope.
- ``GET /v1/attestations``: every attestation held (this node's chain and those shown to it)
  and the split-view evidence found among them.
- ``GET /v1/attestations/{id}``: one (``?format=dsse``: the DSSE JSON file itself).
- ``GET /v1/attestations/{id}/bundle``: the bundle (statement, genesis and every attested
  envelope) as ``application/octet-stream``.
- ``GET /v1/attestations/{id}/proof?claim=ID``: a claim's inclusion proof, as bytes.
- ``POST /v1/attestations/verify``: ``{"dsse", "bundle"?: base64, "pubkey"?: hex}``, the
  verification report; a valid attestation is kept, and checked against those of its signer
  already held (split-view evidence).
- ``POST /v1/attestations/{id}/witness``: ``{"dsse"}``; co-signed when this replica agrees at
  the statement's frontier, 409 ``disagree`` with the reason when it does not.
- ``GET /v1/export?format=yjs``: the document's state as one Yjs v1 update.

``id`` is an attestation id in hex, or a unique prefix of at least 8 digits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from ..attest import AttestationError, Report, decode_dsse, decode_statement, verify_attestation
from ..membership import Role
from .attestations import AttestationService, Disagreement, Held
from .store_api import BadRequest, NotFound, body_of, error

if TYPE_CHECKING:
    from .node import NodeRuntime

__all__ = ["AttestApi", "report_json"]

WITNESSES_MAX = 16
WITNESS_TIMEOUT_S = 30.0
BUNDLE_BYTES_MAX = 1 << 30


def report_json(report: Report) -> dict[str, Any]:
    statement = report.statement
    return {
        "verdict": report.verdict.value,
        "valid": report.ok,
        "failures": [{"code": f.code, "detail": f.detail} for f in report.failures],
        "attestation": None if statement is None else statement.id.hex(),
        "signer": None if statement is None else statement.signer.hex(),
        "seq": None if statement is None else statement.seq,
        "witnesses": [w.hex() for w in report.witnesses],
        "bundle_checked": report.bundle_checked,
        "resolution_checked": report.resolution_checked,
        "resolution_note": report.resolution_note,
        "envelopes_verified": report.envelopes_verified,
        "claims_verified": report.claims_verified,
        "signature_seconds": round(report.signature_seconds, 6),
        "total_seconds": round(report.total_seconds, 6),
    }


def _dsse_of(body: dict[str, Any]) -> bytes:
    """The DSSE JSON bytes of ``body["dsse"]`` (the envelope object, or its JSON text)."""
    given = body.get("dsse")
    if isinstance(given, dict):
        return json.dumps(given, separators=(",", ":")).encode()
    if isinstance(given, str):
        return given.encode()
    raise BadRequest("dsse is the DSSE envelope (a JSON object)")


class AttestApi:
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node

    @property
    def service(self) -> AttestationService:
        return self.node.attestations

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/attestations", self.create)
        app.router.add_get("/v1/attestations", self.list)
        app.router.add_post("/v1/attestations/verify", self.verify)
        app.router.add_get("/v1/attestations/{id}", self.get)
        app.router.add_get("/v1/attestations/{id}/bundle", self.bundle)
        app.router.add_get("/v1/attestations/{id}/proof", self.proof)
        app.router.add_post("/v1/attestations/{id}/witness", self.witness)
        app.router.add_get("/v1/export", self.export)

    def _find(self, request: web.Request) -> Held:
        try:
            held: Held = self.service.find(request.match_info["id"])
        except KeyError:
            raise NotFound(f"no attestation {request.match_info['id']} here") from None
        return held

    @staticmethod
    def _describe(held: Held) -> dict[str, Any]:
        return {
            **held.summary(),
            "statement": held.statement.to_json(),
            "dsse": json.loads(held.dsse),
        }

    async def create(self, request: web.Request) -> web.Response:
        body = await body_of(request) if request.can_read_body else {}
        witnesses = body.get("witnesses", [])
        if not (
            isinstance(witnesses, list)
            and len(witnesses) <= WITNESSES_MAX
            and all(isinstance(w, str) and w.startswith(("http://", "https://")) for w in witnesses)
        ):
            raise BadRequest(f"witnesses is a list of at most {WITNESSES_MAX} node API URLs")
        held: Held = self.node.attest()
        refusals: dict[str, str] = {}
        if witnesses:
            results = await asyncio.gather(*(self._ask(url, held) for url in witnesses))
            for url, (signed, why) in zip(witnesses, results, strict=True):
                if signed is not None:
                    held = self.service.add_signatures(signed)
                else:
                    refusals[url] = why
        return web.json_response({**self._describe(held), "refusals": refusals}, status=201)

    async def _ask(self, url: str, held: Held) -> tuple[bytes | None, str]:
        """One witness's co-signed DSSE, or why not."""
        path = f"{url.rstrip('/')}/v1/attestations/{held.statement.id.hex()}/witness"
        headers = {}
        token = self.node.settings.api_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=WITNESS_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                payload = {"dsse": json.loads(held.dsse)}
                async with session.post(path, json=payload, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    if response.status != 200:
                        return None, f"{answer.get('error')}: {answer.get('detail')}"
                    return json.dumps(answer["dsse"], separators=(",", ":")).encode(), ""
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            return None, f"unreachable: {type(exc).__name__}: {exc}"

    async def list(self, request: web.Request) -> web.Response:
        service = self.service
        held = sorted(
            service.known.values(),
            key=lambda h: (h.statement.signer, h.statement.seq, h.statement.id),
        )
        return web.json_response(
            {
                "attestations": [h.summary() for h in held],
                "own": [i.hex() for i in service.own],
                "evidence": [r.to_json() for _, r in sorted(service.evidence.items())],
            }
        )

    async def get(self, request: web.Request) -> web.Response:
        held = self._find(request)
        if request.query.get("format") == "dsse":
            return web.Response(body=held.dsse, content_type="application/json")
        return web.json_response(self._describe(held))

    async def bundle(self, request: web.Request) -> web.StreamResponse:
        """Written a part at a time (:meth:`AttestationService.bundle_parts`): a bundle is
        every attested envelope's bytes, and one copy of it in one piece held the loop."""
        held = self._find(request)
        try:
            parts = await self.service.bundle_parts(held.statement.id)
        except Disagreement as exc:
            return error(409, exc.code, exc.detail)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = sum(len(part) for part in parts)
        await response.prepare(request)
        if request.method == "HEAD":  # the length alone: a body here would be read as the
            return response  # start of the connection's next response
        with contextlib.suppress(ConnectionResetError):  # the client went away mid-bundle
            for part in parts:
                await response.write(part)
            await response.write_eof()
        return response

    async def proof(self, request: web.Request) -> web.Response:
        held = self._find(request)
        claim = request.query.get("claim", "")
        try:
            claim_id = bytes.fromhex(claim)
        except ValueError:
            raise BadRequest("claim is a claim id, 64 hex digits") from None
        if len(claim_id) != 32:
            raise BadRequest("claim is a claim id, 64 hex digits")
        try:
            data = self.service.prove(held.statement.id, claim_id)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return web.Response(body=data, content_type="application/octet-stream")

    async def verify(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        dsse = _dsse_of(body)
        bundle: bytes | None = None
        if body.get("bundle") is not None:
            try:
                bundle = base64.b64decode(str(body["bundle"]), validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("bundle is the bundle file in base64") from None
        pubkey: bytes | None = None
        if body.get("pubkey") is not None:
            try:
                pubkey = bytes.fromhex(str(body["pubkey"]))
            except ValueError:
                raise BadRequest("pubkey is a public key, 64 hex digits") from None
        report = await asyncio.to_thread(verify_attestation, dsse, bundle=bundle, pubkey=pubkey)
        answer = report_json(report)
        answer["evidence"] = []
        if report.ok and report.statement is not None:
            signed = decode_dsse(dsse).to_json()
            found = self.service.remember(report.statement, signed)
            answer["evidence"] = [r.to_json() for r in found]
        return web.json_response(answer)

    async def witness(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        dsse = _dsse_of(body)
        try:
            statement = decode_statement(decode_dsse(dsse).payload)
        except AttestationError as exc:
            raise BadRequest(f"dsse: {exc}") from None
        if statement.id.hex() != request.match_info["id"]:
            raise BadRequest(f"the statement's id is {statement.id.hex()}")
        report = verify_attestation(dsse, bundle=None, pubkey=statement.signer)
        if not report.ok:
            return error(409, "invalid", ", ".join(report.codes))
        member = self.node.core.admission.membership.state.get(statement.signer)
        if member is None or member.role is not Role.NODE:
            return error(409, "disagree", "the signer is not a node of this mesh")
        try:
            await self.service.prepare_statement_at(statement)
            signed = self.service.witness(dsse)
        except Disagreement as exc:
            return error(409, "disagree", f"{exc.code}: {exc.detail}")
        return web.json_response({"dsse": json.loads(signed)})

    async def export(self, request: web.Request) -> web.Response:
        kind = request.query.get("format", "yjs")
        if kind != "yjs":
            raise BadRequest("format is yjs (attestation bundles: /v1/attestations/{id}/bundle)")
        data = self.node.core.admission.replica.doc.get_update()
        return web.Response(body=data, content_type="application/octet-stream")
