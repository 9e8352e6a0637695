"""The data a policy works on and gives back: candidates, rules, decisions (DESIGN §6).

Everything here is plain, immutable data with one canonical JSON form, so a decision is the same
bytes on every node. Nothing reads a clock, iterates a set or hashes with ``hash()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ..canonical import JSON_INT_MAX, JsonValue, canonical_bytes

if TYPE_CHECKING:
    from ..claims import Claim

__all__ = [
    "ESCALATED",
    "RESOLVED",
    "RETRACTION",
    "Candidate",
    "Context",
    "Decision",
    "Rule",
    "RuleImpl",
    "Status",
]

Status = Literal["resolved", "escalated"]
RESOLVED: Status = "resolved"
ESCALATED: Status = "escalated"
RETRACTION = "retraction"
"""The claim type that deletes a subject: its candidate's value is ``None``, meaning "deleted"."""

ID_BYTES = 32
RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_VERSION_MAX = JSON_INT_MAX


def is_int(value: object) -> bool:
    """An integer of the canonical subset (``bool`` is not one, although Python says so)."""
    return type(value) is int and -JSON_INT_MAX <= value <= JSON_INT_MAX


@dataclass(frozen=True, slots=True)
class Candidate:
    """One live claim of a conflicting subject, as a policy sees it.

    ``role`` is the author's member role (``None`` if it has none); ``value`` is a canonical JSON
    value, ``None`` for a ``retraction`` (which means "deleted", unlike a fact whose value is
    ``null``). ``value_key`` is derived: the bytes two candidates share exactly when they assert
    the same thing (canonical value bytes, or a marker no JSON text equals for a retraction).
    """

    claim_id: bytes
    agent: bytes
    role: str | None
    type: str
    hlc: tuple[int, int]
    value: JsonValue
    confidence: int | None = None
    value_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("claim_id", "agent"):
            raw = getattr(self, name)
            if type(raw) is not bytes or len(raw) != ID_BYTES:
                raise ValueError(f"candidate {name} must be {ID_BYTES} bytes")
        for name in ("role", "type"):
            text = getattr(self, name)
            if text is None and name == "role":
                continue
            if not isinstance(text, str) or not text:
                raise ValueError(f"candidate {name} must be a non-empty string")
            object.__setattr__(self, name, str(text))  # a StrEnum member (Role) as plain text
        hlc = self.hlc
        if not (
            type(hlc) is tuple and len(hlc) == 2 and all(is_int(part) and part >= 0 for part in hlc)
        ):
            raise ValueError(
                "candidate hlc must be a tuple (physical_ms, logical) of integers >= 0"
            )
        if self.confidence is not None and not (is_int(self.confidence) and self.confidence >= 0):
            raise ValueError("candidate confidence must be None or an integer >= 0")
        if self.type == RETRACTION:
            if self.value is not None:
                raise ValueError("a retraction candidate has the value None")
            key = b"\x00retraction"  # no canonical JSON text starts with NUL
        else:
            key = canonical_bytes(self.value)  # ValueError outside the canonical subset
        object.__setattr__(self, "value_key", key)

    def __hash__(self) -> int:  # the value may be a dict; equal candidates share an id
        return hash(self.claim_id)

    @classmethod
    def from_claim(cls, claim: Claim, role: str | None) -> Candidate:
        """The candidate for ``claim``, whose author holds ``role`` (``None``: no role)."""
        return cls(
            claim_id=claim.id,
            agent=claim.agent,
            role=role,
            type=claim.type,
            hlc=claim.hlc,
            value=None if claim.type == RETRACTION else claim.value,
            confidence=claim.confidence,
        )

    @property
    def deleted(self) -> bool:
        return self.type == RETRACTION

    def to_json(self) -> dict[str, JsonValue]:
        """The candidate as the explanation lists it (the value is left out: the view has it)."""
        return {
            "id": self.claim_id.hex(),
            "agent": self.agent.hex(),
            "role": self.role,
            "type": self.type,
            "hlc": [self.hlc[0], self.hlc[1]],
            "confidence": self.confidence,
        }


def _empty_params() -> dict[str, JsonValue]:
    return {}


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as a policy names it: the rule's name, the policy's version, and its params.

    ``version`` is the version of this policy entry (what the meta-rule orders concurrent policy
    claims by, and what every decision records); the version of the code that applies the rule
    is recorded separately, as ``impl_version``. ``params`` must be a canonical JSON object;
    whether it suits the rule is checked by :func:`~memmesh.policy.parse_policy_value` (and again
    by :func:`~memmesh.policy.decide`, which escalates with ``bad_params``).
    """

    name: str
    version: int = 1
    params: Mapping[str, JsonValue] = field(default_factory=_empty_params)

    def __post_init__(self) -> None:
        if type(self.name) is not str or not RULE_NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"rule name {str(self.name)[:70]!r} must match {RULE_NAME_RE.pattern} "
                "(lowercase letter, then up to 63 of a-z 0-9 _ . -)"
            )
        if not (is_int(self.version) and 1 <= self.version <= _VERSION_MAX):
            raise ValueError(f"rule version must be an integer >= 1, got {self.version!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError("rule params must be a JSON object")
        canonical_bytes(dict(self.params))  # ValueError outside the canonical subset

    def __hash__(self) -> int:  # params is a dict: hash its canonical bytes instead
        return hash((self.name, self.version, canonical_bytes(dict(self.params))))

    def to_json(self) -> dict[str, JsonValue]:
        return {"rule": self.name, "version": self.version, "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may know besides the candidates and its params: the subject they are for.

    The built-in rules ignore it; custom rules may use it (it is the same on every node).
    Membership data the built-ins need (the author's role) is in each :class:`Candidate`.
    """

    namespace: tuple[str, ...] = ()
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's verdict on one conflict: a winner with an explanation, or an escalation.

    ``explanation`` is canonical JSON data (see ``docs/policies.md`` for its members).
    :meth:`to_bytes` is the decision's canonical encoding, identical on every node.
    """

    status: Status
    winner: bytes | None
    rule: str
    version: int
    explanation: Mapping[str, JsonValue]

    def __post_init__(self) -> None:
        if self.status not in (RESOLVED, ESCALATED):
            raise ValueError(
                f"decision status must be 'resolved' or 'escalated', not {self.status!r}"
            )
        if (self.status == RESOLVED) != (self.winner is not None):
            raise ValueError("a resolved decision names a winner, an escalated one none")
        if self.winner is not None and (
            type(self.winner) is not bytes or len(self.winner) != ID_BYTES
        ):
            raise ValueError(f"decision winner must be a {ID_BYTES}-byte claim id")
        if not isinstance(self.explanation, Mapping):
            raise ValueError("decision explanation must be a JSON object")

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "status": self.status,
            "winner": None if self.winner is None else self.winner.hex(),
            "rule": self.rule,
            "version": self.version,
            "explanation": dict(self.explanation),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (RFC 8785 subset) of the whole decision, ids in lowercase hex."""
        return canonical_bytes(self.to_json())


@runtime_checkable
class RuleImpl(Protocol):
    """The code of a rule: what a built-in is and what a ``memmesh.policies`` entry point gives.

    ``decide`` gets at least two candidates, sorted by claim id, and the policy's params; it
    returns a :class:`Decision` whose ``rule`` and ``version`` are stamped over by the engine,
    and whose explanation may hold ``reason`` and ``why`` strings and any other canonical JSON
    (kept as ``detail``). It must be a pure function of its arguments (see ``docs/policies.md``).
    An implementation may also define ``check_params(params) -> None``, raising ``ValueError``.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    def decide(
        self,
        candidates: Sequence[Candidate],
        params: Mapping[str, JsonValue],
        ctx: Context,
    ) -> Decision: ...
