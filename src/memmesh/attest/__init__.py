"""Attestations: signed statements of what a node knew, checkable offline (DESIGN §7).

- :mod:`.statement`: the :class:`Statement` and its strict canonical-JSON codec;
- :mod:`.dsse`: the DSSE v1 envelope that signs it (and witness co-signatures);
- :mod:`.build`: statements from an admission and its view, incrementally;
- :mod:`.bundle`: the statement with the genesis and every attested envelope, in one file;
- :mod:`.verify`: :func:`verify_attestation`, with or without a bundle;
- :mod:`.proof`: claim inclusion proofs and consistency between two statements;
- :mod:`.evidence`: split-view evidence from two statements of one signer;
- :mod:`.asof`: the view at an attestation's frontier, rebuilt from the log.

The Merkle machinery (RFC 9162 inclusion and consistency proofs, the incremental tree) lives in
:mod:`memmesh.merkle`. Formats and reason codes: ``docs/attestations.md``.
"""

from .asof import AsOfError, rebuild_at, rebuild_at_statement
from .build import AttestationBuilder, build_statement, resolution_of
from .bundle import Bundle, BundleLimits, decode_bundle, encode_bundle, make_bundle
from .dsse import PAYLOAD_TYPE, DsseEnvelope, cosign, decode_dsse, pae, sign_statement
from .errors import (
    AttestationError,
    BundleError,
    ConsistencyError,
    DsseError,
    ProofError,
    StatementError,
)
from .evidence import Divergence, EvidenceError, SplitView, divergence_proof, split_view
from .proof import (
    ClaimProof,
    ProvenClaim,
    StatementConsistency,
    check_consistency,
    decode_consistency,
    decode_proof,
    prove_claim,
    prove_consistency,
    verify_proof,
)
from .statement import Counts, LogEntry, PolicyVersion, Statement, decode_statement
from .verify import Failure, Report, Verdict, verify_attestation

__all__ = [
    "PAYLOAD_TYPE",
    "AsOfError",
    "AttestationBuilder",
    "AttestationError",
    "Bundle",
    "BundleError",
    "BundleLimits",
    "ClaimProof",
    "ConsistencyError",
    "Counts",
    "Divergence",
    "DsseEnvelope",
    "DsseError",
    "EvidenceError",
    "Failure",
    "LogEntry",
    "PolicyVersion",
    "ProofError",
    "ProvenClaim",
    "Report",
    "SplitView",
    "Statement",
    "StatementConsistency",
    "StatementError",
    "Verdict",
    "build_statement",
    "check_consistency",
    "cosign",
    "decode_bundle",
    "decode_consistency",
    "decode_dsse",
    "decode_proof",
    "decode_statement",
    "divergence_proof",
    "encode_bundle",
    "make_bundle",
    "pae",
    "prove_claim",
    "prove_consistency",
    "rebuild_at",
    "rebuild_at_statement",
    "resolution_of",
    "sign_statement",
    "split_view",
    "verify_attestation",
    "verify_proof",
]
