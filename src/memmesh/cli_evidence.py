"""``memmesh evidence list|show|verify``: equivocation evidence (DESIGN §4 rule 5).

``list`` and ``show`` ask a running node (``--node URL``, or ``--data-dir DIR`` to find it);
``show -o FILE`` writes the evidence file: the mesh id and both envelopes. ``verify FILE`` checks
it offline, with no node: both envelopes decode and are validly signed by one author, in that
mesh, for one log and seq, and differ. It exits 0 when they prove an equivocation, 1 when they
do not (with the reason), 2 when the file is unusable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_node import DataDir, JsonFlag, NodeUrl, Token, _base, _call, _print

__all__ = ["evidence_app"]

evidence_app = typer.Typer(help="Equivocation evidence: list, show, verify.", no_args_is_help=True)


@evidence_app.command("list")
def evidence_list(
    node: NodeUrl = None, data_dir: DataDir = None, token: Token = None, as_json: JsonFlag = False
) -> None:
    """The equivocation evidence a node holds."""
    _print(_call(_base(node, data_dir), "GET", "/v1/evidence", token=token), as_json)


@evidence_app.command("show")
def evidence_show(
    evidence_id: Annotated[str, typer.Argument(help="The evidence id (hex).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the evidence file here.")
    ] = None,
    node: NodeUrl = None,
    data_dir: DataDir = None,
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """One piece of evidence, with both envelopes' bytes."""
    shown = _call(_base(node, data_dir), "GET", f"/v1/evidence/{evidence_id}", token=token)
    if output is not None:
        keep = {k: shown[k] for k in ("kind", "mesh", "first", "second")}
        output.write_text(json.dumps(keep, indent=2) + "\n")
    _print(shown, as_json)


@evidence_app.command("verify")
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="An evidence file (memmesh evidence show -o).")],
    as_json: JsonFlag = False,
) -> None:
    """Check an equivocation proof offline: exit 0 proven, 1 not, 2 unusable file."""
    from .evidence import verify_equivocation

    try:
        doc = json.loads(file.read_text())
        mesh, first, second = (bytes.fromhex(doc[k]) for k in ("mesh", "first", "second"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"error: {file}: not an evidence file: {exc}\n")
        raise typer.Exit(2) from None
    ok, reason = verify_equivocation(first, second, mesh)
    if as_json:
        sys.stdout.write(json.dumps({"valid": ok, "reason": reason}) + "\n")
    else:
        sys.stdout.write(f"{'valid' if ok else 'invalid'}: {reason}\n")
    raise typer.Exit(0 if ok else 1)
