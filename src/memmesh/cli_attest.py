"""``memmesh attest|export|verify|prove``: attestations from a shell (DESIGN §7).

``attest``, ``export`` and ``prove`` read a node: a running one through its API (``--node URL``,
or ``--data-dir DIR`` to find it), or, with ``--offline --data-dir DIR``, a stopped one's store
directly (the store is locked while its node runs). ``verify`` needs no node at all: it checks
an attestation file, and with ``--bundle`` everything it states, or with ``--proof`` one claim.
``verify`` exits 0 when valid, 1 when invalid (each failure printed with its reason code) and 2
when the input is unusable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .cli_node import ApiError, DataDir, JsonFlag, NodeUrl, Token, _base, _call, _fetch

if TYPE_CHECKING:
    from .admission import Admission
    from .attest import Statement
    from .store import LmdbStore

__all__ = ["register"]

Offline = Annotated[
    bool,
    typer.Option("--offline", help="Read the stopped node's store in --data-dir, not its API."),
]
Output = Annotated[Path, typer.Option("-o", "--output", help="The file to write.")]
AttestationFile = Annotated[
    Path, typer.Option("--attestation", help="An attestation file (DSSE JSON).")
]


def register(app: typer.Typer) -> None:
    app.command("attest")(attest)
    app.command("export")(export)
    app.command("verify")(verify)
    app.command("prove")(prove)


def _write(path: Path, data: bytes) -> None:
    from .files import write_file_atomically

    write_file_atomically(path, data)


def _statement_of(path: Path) -> tuple[bytes, Statement]:
    from .attest import AttestationError, decode_dsse, decode_statement

    dsse = path.read_bytes()
    try:
        return dsse, decode_statement(decode_dsse(dsse).payload)
    except AttestationError as exc:
        sys.stderr.write(f"error: {path}: not an attestation: {exc}\n")
        raise typer.Exit(2) from None


class _Offline:
    """A stopped node's admission and view, read from its data dir."""

    def __init__(self, data_dir: Path | None) -> None:
        from .admission import Admission
        from .config import load_settings
        from .membership import decode_genesis
        from .memory import View
        from .store import LmdbStore

        settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
        genesis = decode_genesis(settings.genesis_path.read_bytes())
        self.store: LmdbStore = LmdbStore(Path(settings.data_dir) / "store")
        try:
            self.admission: Admission = Admission.open(self.store, genesis)
            self.view = View.build(self.admission)
            self.node_key_path = settings.node_key_path
        except BaseException:
            self.store.close()
            raise

    def service(self) -> Any:
        from .crypto import read_key_file
        from .runtime.attestations import AttestationService

        key = read_key_file(self.node_key_path)
        return AttestationService(self.admission, self.view, self.store, key)

    def __enter__(self) -> _Offline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def attest(
    output: Output,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="A node API URL to co-sign (repeatable).")
    ] = None,
    node: NodeUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Have a running node attest to what it holds now; write the attestation (DSSE JSON)."""
    base = _base(node, data_dir)
    answer = _call(base, "POST", "/v1/attestations", {"witnesses": list(witness or [])}, token)
    dsse = json.dumps(answer["dsse"], separators=(",", ":")).encode()
    _write(output, dsse)
    summary = {k: answer[k] for k in ("id", "signer", "seq", "witnesses", "refusals", "counts")}
    if as_json:
        sys.stdout.write(json.dumps({**summary, "file": str(output)}, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{answer['id']} (seq {answer['seq']}, {len(answer['witnesses'])} witnesses) "
            f"-> {output}\n"
        )
        for url, why in answer["refusals"].items():
            sys.stdout.write(f"  witness {url} refused: {why}\n")


def export(
    output: Output,
    attestation: Annotated[
        Path | None, typer.Option("--attestation", help="Export this attestation's bundle.")
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="bundle (with --attestation) or yjs.")
    ] = "bundle",
    node: NodeUrl = None,
    data_dir: DataDir = None,
    offline: Offline = False,
    token: Token = None,
) -> None:
    """Write an attestation's bundle (every envelope it covers, membership included), or with
    ``--format yjs`` the document's state as one Yjs v1 update any Yjs implementation loads."""
    if format == "yjs":
        if offline:
            with _Offline(data_dir) as stopped:
                data = stopped.admission.replica.doc.get_update()
        else:
            data = _fetch(_base(node, data_dir), "GET", "/v1/export?format=yjs", token=token)
        _write(output, data)
        sys.stdout.write(f"{len(data)} bytes of Yjs v1 update -> {output}\n")
        return
    if format != "bundle" or attestation is None:
        raise typer.BadParameter("give --attestation FILE (a bundle) or --format yjs")
    dsse, statement = _statement_of(attestation)
    if offline:
        from .attest import make_bundle

        with _Offline(data_dir) as stopped:
            try:
                data = make_bundle(stopped.admission, dsse)
            except ValueError as exc:
                sys.stderr.write(f"error: this store does not hold what it states: {exc}\n")
                raise typer.Exit(1) from None
    else:
        base = _base(node, data_dir)
        path = f"/v1/attestations/{statement.id.hex()}/bundle"
        try:
            data = _fetch(base, "GET", path, token=token, timeout_s=120)
        except ApiError as exc:
            if "HTTP 404" not in str(exc):
                raise
            # Another signer's attestation: show it to the node first, then ask again.
            _call(base, "POST", "/v1/attestations/verify", {"dsse": json.loads(dsse)}, token)
            data = _fetch(base, "GET", path, token=token, timeout_s=120)
    _write(output, data)
    sys.stdout.write(f"bundle of {statement.id.hex()}: {len(data)} bytes -> {output}\n")


def prove(
    output: Output,
    attestation: AttestationFile,
    claim: Annotated[str, typer.Option("--claim", help="The claim id (hex).")],
    node: NodeUrl = None,
    data_dir: DataDir = None,
    offline: Offline = False,
    token: Token = None,
) -> None:
    """Write a claim's inclusion proof in an attestation (claim, envelope, log tree, top
    tree); ``memmesh verify FILE --proof PROOF`` checks it with the attestation alone."""
    dsse, statement = _statement_of(attestation)
    try:
        claim_id = bytes.fromhex(claim)
    except ValueError:
        raise typer.BadParameter("--claim is a claim id, 64 hex digits") from None
    if offline:
        from .attest import decode_dsse

        with _Offline(data_dir) as stopped:
            service = stopped.service()
            if statement.id not in service.known:
                service.remember(statement, decode_dsse(dsse).to_json())
            try:
                data = service.prove(statement.id, claim_id)
            except LookupError as exc:
                sys.stderr.write(f"error: {exc}\n")
                raise typer.Exit(1) from None
    else:
        base = _base(node, data_dir)
        path = f"/v1/attestations/{statement.id.hex()}/proof?claim={claim_id.hex()}"
        data = _fetch(base, "GET", path, token=token)
    _write(output, data)
    sys.stdout.write(f"proof of {claim_id.hex()}: {len(data)} bytes -> {output}\n")


def verify(
    file: Annotated[Path, typer.Argument(help="The attestation file (DSSE JSON).")],
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Check everything it states.")
    ] = None,
    pubkey: Annotated[
        str | None, typer.Option("--pubkey", help="The signer's public key (hex, or a file).")
    ] = None,
    proof: Annotated[
        Path | None, typer.Option("--proof", help="Check a claim inclusion proof against it.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify an attestation offline: exit 0 valid, 1 invalid (with each reason), 2 unusable."""
    from .attest import ProofError, verify_attestation, verify_proof
    from .runtime.attest_api import report_json

    try:
        dsse = file.read_bytes()
        data = bundle.read_bytes() if bundle is not None else None
        key = _pubkey(pubkey)
        proof_bytes = proof.read_bytes() if proof is not None else None
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from None
    report = verify_attestation(dsse, bundle=data, pubkey=key)
    answer = report_json(report)
    code = report.exit_code
    if proof_bytes is not None and report.statement is not None:
        try:
            proven = verify_proof(report.statement, proof_bytes)
        except ProofError as exc:
            answer["proof"] = {"valid": False, "code": exc.code, "detail": exc.detail}
            code = max(code, 1)
        else:
            answer["proof"] = {
                "valid": True,
                "claim": proven.claim_id.hex(),
                "envelope": proven.envelope_id.hex(),
                "log": f"{proven.log.author.hex()}@{proven.log.epoch}",
                "seq": proven.seq,
            }
    if as_json:
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    else:
        sys.stdout.write(f"{answer['verdict']}: {file}\n")
        for failure in answer["failures"]:
            sys.stdout.write(f"  {failure['code']}: {failure['detail']}\n")
        if answer["attestation"]:
            sys.stdout.write(
                f"  attestation {answer['attestation']} by {answer['signer']} seq {answer['seq']}"
                f", witnesses {len(answer['witnesses'])}\n"
            )
        if report.bundle_checked:
            sys.stdout.write(
                f"  bundle: {answer['envelopes_verified']} envelopes and "
                f"{answer['claims_verified']} claims verified; resolution "
                f"{'checked' if report.resolution_checked else 'not checked'}: "
                f"{report.resolution_note}\n"
            )
        if "proof" in answer:
            shown = answer["proof"]
            what = f"claim {shown['claim']}" if shown["valid"] else shown["code"]
            sys.stdout.write(f"  proof: {'valid' if shown['valid'] else 'invalid'}: {what}\n")
    raise typer.Exit(code)


def _pubkey(given: str | None) -> bytes | None:
    if given is None:
        return None
    text = given.strip()
    path = Path(text)
    if len(text) != 64 and path.exists():
        text = path.read_text().strip()
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError("--pubkey is a public key: 64 hex digits, or a file holding them")
    return key
