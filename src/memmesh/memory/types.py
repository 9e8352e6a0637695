"""Claim types and what makes a claim valid in the memory model (DESIGN §5).

Admission decides whether an envelope is accepted; this module decides whether each claim in it
counts in the view. A claim that fails here is still stored, replicated and digested like any
other (its bytes were valid and signed), but the view marks it with the reason and leaves it
out. Every rule is a pure function of the claim, its author's role and its envelope's causal
past (:mod:`memmesh.memory.causal`), so a reason, once given, is the same on every replica.

- **Built-in types** carry any JSON value, except: ``retraction`` (value ``null``, supersedes
  what it deletes), ``resolution`` (value ``{"winner": <claim id>}``, the winner among what it
  supersedes; by a resolver or an admin), ``policy``, ``schema`` and ``receipt`` (system claims
  in their ``_mesh`` namespace, see below).
- **Custom types** are registered by an admin with a ``schema`` claim (namespace
  ``_mesh.types``, key the type name, value ``{"schema": <JSON Schema 2020-12>, "version": n}``).
  A custom-typed claim is checked against the registration of highest version (then smallest
  claim id) in its envelope's causal past: what its writer saw.
- **Namespaces** starting with ``_mesh`` hold only system claims.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..canonical import JsonValue
from ..claims import Claim
from ..membership import ADMIT, MEMBERSHIP_NAMESPACE, REVOKE, Role
from .receipts import receipt_claim_ok

__all__ = [
    "BUILTIN_TYPES",
    "POLICY_NAMESPACE",
    "RECEIPT_NAMESPACE",
    "SYSTEM_PREFIX",
    "TYPES_NAMESPACE",
    "Invalid",
    "SchemaCache",
    "check_shape",
    "parse_schema_value",
]

SYSTEM_PREFIX = "_mesh"
POLICY_NAMESPACE = (SYSTEM_PREFIX, "policies")
TYPES_NAMESPACE = (SYSTEM_PREFIX, "types")
RECEIPT_NAMESPACE = (SYSTEM_PREFIX, "receipts")
FACT, OBSERVATION, DECISION, INSTRUCTION, NOTE = (
    "fact",
    "observation",
    "decision",
    "instruction",
    "note",
)
RETRACTION, RESOLUTION, POLICY, RECEIPT, SCHEMA = (
    "retraction",
    "resolution",
    "policy",
    "receipt",
    "schema",
)
VALUE_TYPES = frozenset({FACT, OBSERVATION, DECISION, INSTRUCTION, NOTE})
"""Types whose value is the agent's content, unconstrained."""
BUILTIN_TYPES = VALUE_TYPES | {RETRACTION, RESOLUTION, POLICY, RECEIPT, SCHEMA, ADMIT, REVOKE}
SYSTEM_TYPES: Mapping[str, tuple[str, ...]] = {
    POLICY: POLICY_NAMESPACE,
    SCHEMA: TYPES_NAMESPACE,
    RECEIPT: RECEIPT_NAMESPACE,
    ADMIT: MEMBERSHIP_NAMESPACE,
    REVOKE: MEMBERSHIP_NAMESPACE,
}
"""System types and the one namespace each lives in."""
_HEX_ID = re.compile(r"[0-9a-f]{64}")
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class Invalid(enum.StrEnum):
    """Why a stored claim is left out of the view."""

    UNKNOWN_TYPE = "unknown_type"
    """A custom type with no registration in the claim's causal past."""
    SCHEMA_VIOLATION = "schema_violation"
    RESERVED_NAMESPACE = "reserved_namespace"
    """A content claim in a ``_mesh`` namespace, or a system claim outside its own."""
    BAD_VALUE = "bad_value"
    """The value does not have the shape its built-in type requires."""
    ROLE_NOT_ALLOWED = "role_not_allowed"
    """A policy, schema or resolution by an agent without the role for it."""
    SUPERSEDES_UNSEEN = "supersedes_unseen"
    """``supersedes`` names a claim outside the writer's causal past (or unknown)."""
    SUPERSEDES_OTHER_SUBJECT = "supersedes_other_subject"


def check_shape(claim: Claim, role: Role | None) -> Invalid | None:
    """The checks that need only the claim and its author's role (not the causal past)."""
    system = bool(claim.namespace) and claim.namespace[0] == SYSTEM_PREFIX
    home = SYSTEM_TYPES.get(claim.type)
    if home is not None:
        if claim.namespace != home:
            return Invalid.RESERVED_NAMESPACE
    elif system:
        return Invalid.RESERVED_NAMESPACE
    if claim.type in (POLICY, SCHEMA) and role is not Role.ADMIN:
        return Invalid.ROLE_NOT_ALLOWED
    if claim.type == RESOLUTION and role not in (Role.RESOLVER, Role.ADMIN):
        return Invalid.ROLE_NOT_ALLOWED
    if claim.type == RETRACTION and (claim.value is not None or not claim.supersedes):
        return Invalid.BAD_VALUE
    if claim.type == RESOLUTION:
        winner = _winner(claim.value)
        if winner is None or winner not in claim.supersedes:
            return Invalid.BAD_VALUE
    if claim.type == SCHEMA and parse_schema_value(claim.key, claim.value) is None:
        return Invalid.BAD_VALUE
    if claim.type == RECEIPT and not receipt_claim_ok(claim.key, claim.value):
        return Invalid.BAD_VALUE
    return None


def resolution_winner(claim: Claim) -> bytes | None:
    return _winner(claim.value) if claim.type == RESOLUTION else None


def _winner(value: JsonValue) -> bytes | None:
    if not isinstance(value, dict) or set(value) != {"winner"}:
        return None
    winner = value["winner"]
    if not isinstance(winner, str) or not _HEX_ID.fullmatch(winner):
        return None
    return bytes.fromhex(winner)


def parse_schema_value(type_name: str, value: JsonValue) -> tuple[int, dict[str, Any]] | None:
    """``(version, schema)`` of a ``schema`` claim's value, or None when it is not a valid
    registration: a custom type name (not built in), ``{"schema": {...}, "version": n}`` with a
    schema that is itself valid JSON Schema 2020-12."""
    if not _TYPE_NAME.fullmatch(type_name) or type_name in BUILTIN_TYPES:
        return None
    if not isinstance(value, dict) or set(value) != {"schema", "version"}:
        return None
    schema, version = value["schema"], value["version"]
    if not isinstance(schema, dict) or not isinstance(version, int) or isinstance(version, bool):
        return None
    if version < 1:
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    return version, schema


class SchemaCache:
    """Compiled validators by registration claim id (a registration never changes)."""

    def __init__(self) -> None:
        self._validators: dict[bytes, Draft202012Validator] = {}

    def violation(self, registration: Claim, value: JsonValue) -> str | None:
        """The first error of ``value`` against ``registration``'s schema, or None."""
        validator = self._validators.get(registration.id)
        if validator is None:
            parsed = parse_schema_value(registration.key, registration.value)
            assert parsed is not None, "only valid registrations are looked up"
            validator = Draft202012Validator(parsed[1])
            self._validators[registration.id] = validator
        errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
        if not errors:
            return None
        first = errors[0]
        where = "/".join(map(str, first.path)) or "(root)"
        return f"{where}: {first.message}"[:300]
