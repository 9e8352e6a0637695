"""Errors of the attestation formats: one class per format, each with a stable reason code.

Every decoder in :mod:`memmesh.attest` refuses bad input with one of these; ``code`` is a short
machine-readable string (``unknown_field``, ``wrong_type``, ``too_large``, ``not_canonical``,
``bad_magic``...), ``detail`` is prose for people. They derive from
:class:`~memmesh.errors.RemoteError`: the bytes came from somewhere else.
"""

from __future__ import annotations

from ..errors import RemoteError

__all__ = [
    "AttestationError",
    "BundleError",
    "ConsistencyError",
    "DsseError",
    "ProofError",
    "StatementError",
]


class AttestationError(RemoteError):
    """Refused attestation input: ``code`` is stable, ``detail`` is for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class StatementError(AttestationError):
    """A statement payload that is not exactly a canonical, well-typed statement."""


class DsseError(AttestationError):
    """A DSSE envelope that is not well-formed JSON of the expected shape."""


class BundleError(AttestationError):
    """A bundle file that does not frame correctly or exceeds a limit."""


class ProofError(AttestationError):
    """A claim inclusion proof that does not decode or does not verify."""


class ConsistencyError(AttestationError):
    """A consistency proof between two statements that does not decode."""
