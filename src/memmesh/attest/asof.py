"""Point-in-time reads: the view as it was at an attestation, or at any frontier.

:func:`rebuild_at` takes envelopes (typically a store's logs, in log order, which may run far
past the frontier), keeps each log's chain from the frontier's head back to seq 1 (found by
``prev``, so envelopes after the head and other branches are left out) plus any evidence
envelopes named, replays exactly those into a fresh in-memory admission
(:mod:`memmesh.attest.replay`) and builds the view from nothing. Because admission and the view
are pure functions of the set of envelopes, its :meth:`~memmesh.memory.view.View.snapshot` is
the one the node had at that frontier, whatever was written, excluded or resolved since.

:func:`rebuild_at_statement` does the same for an attestation's frontier and evidence. Refusals
raise :class:`AsOfError`: ``bad_envelope`` (an input envelope does not decode),
``missing_envelope`` (part of a chain is not in the input), ``not_admitted`` (the replay refused
or could not admit an envelope).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..envelope import Envelope, decode_envelope
from ..errors import Rejected
from ..ids import Head, LogId, short_id
from ..membership import Genesis
from ..memory.view import View
from .errors import AttestationError
from .replay import replay
from .statement import Statement

__all__ = ["AsOfError", "rebuild_at", "rebuild_at_statement"]


class AsOfError(AttestationError):
    """The envelopes given cannot rebuild the state asked for."""


def rebuild_at(
    envelopes_in_log_order: Iterable[bytes],
    genesis: Genesis,
    frontier: Mapping[LogId, Head] | Sequence[tuple[LogId, Head]],
    *,
    evidence: Iterable[bytes] = (),
    trusted: bool = False,
) -> View:
    """The view of exactly the envelopes up to ``frontier`` (and the ``evidence`` ids).

    ``trusted``: the envelopes come from a store that verified every signature before it
    committed them (a node's own log), so the replay does not verify them again."""
    heads = list(frontier.items()) if isinstance(frontier, Mapping) else list(frontier)
    decoded: dict[bytes, Envelope] = {}
    for raw in envelopes_in_log_order:
        try:
            env = decode_envelope(raw)
        except Rejected as exc:
            raise AsOfError("bad_envelope", str(exc)) from None
        decoded.setdefault(env.id, env)
    chosen: list[Envelope] = []
    on_log: set[bytes] = set()
    for log, head in heads:
        env_id = head.id
        for seq in range(head.seq, 0, -1):
            link = decoded.get(env_id)
            if link is None or link.log != log or link.seq != seq:
                raise AsOfError("missing_envelope", f"log {log} lacks seq {seq}")
            chosen.append(link)
            on_log.add(env_id)
            env_id = link.prev
    for env_id in evidence:
        side = decoded.get(env_id)
        if side is None:
            raise AsOfError("missing_envelope", f"evidence {short_id(env_id)} is not given")
        if env_id not in on_log:
            chosen.append(side)
    result = replay(genesis, chosen, on_log, signatures_checked=trusted)
    if result.refused or result.unadmitted:
        first = [*(i for i, _ in result.refused), *result.unadmitted][0]
        raise AsOfError("not_admitted", f"envelope {short_id(first)} was not admitted")
    return View.build(result.admission)


def rebuild_at_statement(
    envelopes_in_log_order: Iterable[bytes],
    genesis: Genesis,
    statement: Statement,
    *,
    trusted: bool = False,
) -> View:
    """The view at an attestation: its frontier and its evidence."""
    if genesis.mesh_id != statement.mesh_id:
        raise AsOfError("wrong_mesh", "the genesis founds another mesh")
    return rebuild_at(
        envelopes_in_log_order,
        genesis,
        statement.frontier,
        evidence=statement.evidence,
        trusted=trusted,
    )
