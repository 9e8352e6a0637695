"""Equivocation evidence, checked offline (DESIGN §4 rule 5).

Two envelopes signed by one author for the same log (author, epoch) and the same seq, with
different ids, prove that the author equivocated: an honest node never signs two envelopes for
one seq. Nodes keep both envelopes' bytes as evidence (``Admission.evidence``, the store's
evidence table) and exclude that log from the fork point on. Anyone holding the two byte strings
and the mesh id can check the proof with :func:`verify_equivocation`, with no replica, store or
network: it needs neither the envelopes' causal past nor the membership, only the two signatures.

Whether the author was a member when it signed is a separate question (a proof against a key
that was never admitted proves misbehaviour of a key nobody trusted).
"""

from __future__ import annotations

from .envelope import DEFAULT_LIMITS, Envelope, EnvelopeLimits, open_envelope
from .errors import Rejected
from .ids import short_id

__all__ = ["verify_equivocation"]


def verify_equivocation(
    first_raw: bytes,
    second_raw: bytes,
    mesh_id: bytes,
    *,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
) -> tuple[bool, str]:
    """Check that two envelopes' bytes prove an equivocation in the mesh ``mesh_id``.

    Returns ``(True, "equivocation: ...")`` when both decode, both are validly signed by their
    author, in this mesh, by the same author, for the same epoch and seq, and differ (different
    ids). Otherwise ``(False, reason)`` where ``reason`` starts with a stable code:
    ``first: <reason code>`` or ``second: <reason code>`` (a :class:`~memmesh.errors.Reason`
    value: the envelope does not decode, is not signed by its author, or is of another mesh),
    ``different_authors``, ``different_epochs``, ``different_seqs`` or ``same_envelope``,
    followed by a detail. Never raises for bad input.
    """
    envelopes: list[Envelope] = []
    for name, raw in (("first", first_raw), ("second", second_raw)):
        try:
            envelopes.append(open_envelope(bytes(raw), mesh_id=mesh_id, limits=limits))
        except Rejected as exc:
            return False, f"{name}: {exc.reason.value}: {exc.detail}"
    a, b = envelopes
    if a.author != b.author:
        return False, (
            f"different_authors: {short_id(a.author)} and {short_id(b.author)} signed them"
        )
    if a.epoch != b.epoch:
        return False, f"different_epochs: epochs {a.epoch} and {b.epoch} are two logs"
    if a.seq != b.seq:
        return False, f"different_seqs: seqs {a.seq} and {b.seq}"
    if a.id == b.id:
        return False, f"same_envelope: both are {short_id(a.id)}"
    return True, (
        f"equivocation: {short_id(a.author)} signed {short_id(a.id)} and {short_id(b.id)} "
        f"for epoch {a.epoch} seq {a.seq}"
    )
