"""The built-in rules: ``lww``, ``trust``, ``quorum``, ``priority``, ``manual`` (DESIGN §6).

Each rule ranks the candidates by explicit keys built from integers and bytes only, so the order
is total and the same everywhere; the final tie-break is always the smallest claim id. Every
explanation names the criterion that separated the winner from the runner-up (``decided_by``)
and the scores the rule looked at (``ranking``, best first).

``lww`` trusts the writers' clocks: a writer that stamps a claim with a future HLC wins every
``lww`` conflict until real time catches up. That is why ``trust``, ``quorum`` and ``manual``
exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..canonical import JsonValue
from ..ids import short_id, tagged_hash
from .model import ESCALATED, RESOLVED, Candidate, Context, Decision, is_int

__all__ = [
    "BUILTIN_RULES",
    "LWW",
    "MANUAL",
    "PRIORITY",
    "QUORUM",
    "TRUST",
    "Lww",
    "Manual",
    "Priority",
    "Quorum",
    "Trust",
]

BUILTIN_VERSION = 1
"""The version of the built-in rules' code, recorded in each decision as ``impl_version``."""
VALUE_HASH_TAG = b"policy-value/v1"
_AGENT_HEX_RE = re.compile(r"[0-9a-f]{64}")

Criterion = tuple[str, Callable[[Candidate], tuple[int, ...]]]
"""A named sort key; larger is better. Ties fall through to the next one, then to claim ids."""

_HLC: Criterion = ("hlc", lambda c: c.hlc)


def _rank(
    candidates: Sequence[Candidate], criteria: Sequence[Criterion]
) -> tuple[list[Candidate], str]:
    """The candidates best first, and the name of the criterion that put the first ahead of the
    second (``"claim_id"`` when every criterion tied: the smaller claim id wins)."""

    def key(c: Candidate) -> tuple[tuple[int, ...], bytes]:
        return tuple(-x for _, score in criteria for x in score(c)), c.claim_id

    ranked = sorted(candidates, key=key)
    first, second = ranked[0], ranked[1]
    for name, score in criteria:
        if score(first) != score(second):
            return ranked, name
    return ranked, "claim_id"


def _hlc_text(c: Candidate) -> str:
    return f"({c.hlc[0]}, {c.hlc[1]})"


def _resolved(
    impl: _Builtin, winner: Candidate, reason: str, why: str, detail: dict[str, JsonValue]
) -> Decision:
    explanation: dict[str, JsonValue] = {"reason": reason, "why": why, **detail}
    return Decision(RESOLVED, winner.claim_id, impl.name, impl.version, explanation)


def _escalated(impl: _Builtin, reason: str, why: str, detail: dict[str, JsonValue]) -> Decision:
    explanation: dict[str, JsonValue] = {"reason": reason, "why": why, **detail}
    return Decision(ESCALATED, None, impl.name, impl.version, explanation)


def _check_members(params: Mapping[str, JsonValue], allowed: Sequence[str], rule: str) -> None:
    unknown = sorted(name for name in params if name not in allowed)
    if unknown:
        raise ValueError(
            f"{rule} params: unknown member(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(map(repr, sorted(allowed))) or 'none'}"
        )


def _tie_note(decided_by: str) -> str:
    if decided_by == "claim_id":
        return "; everything else tied, so the smallest claim id won"
    if decided_by == "hlc":
        return "; the rule's own scores tied, so the latest HLC won"
    return ""


class _Builtin:
    name: str = ""
    version: int = BUILTIN_VERSION

    def __repr__(self) -> str:
        return f"<built-in rule {self.name} v{self.version}>"


class Lww(_Builtin):
    """Last writer wins: the highest HLC ``(physical_ms, logical)``; on equal HLCs, the smallest
    claim id. A writer whose clock runs ahead (or lies) wins."""

    name = "lww"

    def check_params(self, params: Mapping[str, JsonValue]) -> None:
        _check_members(params, (), "lww")

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        ranked, decided_by = _rank(candidates, [_HLC])
        winner = ranked[0]
        ranking: list[JsonValue] = [
            {"id": c.claim_id.hex(), "score": {"hlc": [c.hlc[0], c.hlc[1]]}} for c in ranked
        ]
        why = f"{short_id(winner.claim_id)} has the latest HLC {_hlc_text(winner)}" + _tie_note(
            decided_by
        )
        return _resolved(
            self, winner, "latest_hlc", why, {"ranking": ranking, "decided_by": decided_by}
        )


class Trust(_Builtin):
    """The highest integer weight wins; ties by ``lww``. An agent's own weight (``agents``, keyed
    by its public key in hex) overrides its role's (``roles``); anyone else weighs 0."""

    name = "trust"

    def check_params(self, params: Mapping[str, JsonValue]) -> None:
        _check_members(params, ("agents", "roles"), "trust")
        roles = params.get("roles", {})
        if not isinstance(roles, dict):
            raise ValueError("trust params: 'roles' must be an object mapping roles to weights")
        for role, weight in roles.items():
            if not role:
                raise ValueError("trust params: role names must not be empty")
            if not is_int(weight):
                raise ValueError(
                    f"trust params: the weight of role {role!r} must be an integer, not {weight!r}"
                )
        agents = params.get("agents", {})
        if not isinstance(agents, dict):
            raise ValueError(
                "trust params: 'agents' must be an object mapping agent keys (hex) to weights"
            )
        for agent, weight in agents.items():
            if not _AGENT_HEX_RE.fullmatch(agent):
                raise ValueError(
                    f"trust params: agent {agent[:70]!r} must be a public key as 64 lowercase "
                    "hex digits"
                )
            if not is_int(weight):
                raise ValueError(
                    f"trust params: the weight of agent {agent[:12]} must be an integer, "
                    f"not {weight!r}"
                )

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        roles = params.get("roles", {})
        agents = params.get("agents", {})
        assert isinstance(roles, dict) and isinstance(agents, dict)
        weights: dict[bytes, tuple[int, str]] = {}
        for c in candidates:
            agent_weight = agents.get(c.agent.hex())
            role_weight = None if c.role is None else roles.get(c.role)
            if isinstance(agent_weight, int):
                weights[c.claim_id] = (agent_weight, "agent")
            elif isinstance(role_weight, int):
                weights[c.claim_id] = (role_weight, "role")
            else:
                weights[c.claim_id] = (0, "default")
        ranked, decided_by = _rank(
            candidates, [("weight", lambda c: (weights[c.claim_id][0],)), _HLC]
        )
        winner = ranked[0]
        ranking: list[JsonValue] = [
            {
                "id": c.claim_id.hex(),
                "score": {
                    "weight": weights[c.claim_id][0],
                    "from": weights[c.claim_id][1],
                    "hlc": [c.hlc[0], c.hlc[1]],
                },
            }
            for c in ranked
        ]
        weight, source = weights[winner.claim_id]
        why = (
            f"{short_id(winner.claim_id)} has the highest weight {weight} (from its {source})"
            if source != "default"
            else f"{short_id(winner.claim_id)} has the highest weight {weight} (no weight given)"
        ) + _tie_note(decided_by)
        return _resolved(
            self, winner, "highest_weight", why, {"ranking": ranking, "decided_by": decided_by}
        )


class Quorum(_Builtin):
    """A value asserted by at least ``k`` distinct agents wins. Candidates are grouped by value
    (canonical bytes; a retraction asserts "deleted"); among groups that reach ``k``, the one with
    the most agents, then the one whose latest claim wins ``lww``; the winner is that latest
    claim. No group reaches ``k``: escalate."""

    name = "quorum"

    def check_params(self, params: Mapping[str, JsonValue]) -> None:
        _check_members(params, ("k",), "quorum")
        if "k" not in params:
            raise ValueError("quorum params: 'k' (the number of agreeing agents) is required")
        k = params["k"]
        if not (is_int(k) and isinstance(k, int) and k >= 1):
            raise ValueError(f"quorum params: 'k' must be an integer >= 1, not {k!r}")

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        k = params["k"]
        assert isinstance(k, int)
        members: dict[bytes, list[Candidate]] = {}  # insertion order: by smallest claim id
        for c in candidates:
            members.setdefault(c.value_key, []).append(c)
        groups = [_Group.of(group) for group in members.values()]
        groups.sort(
            key=lambda g: (-len(g.agents), tuple(-x for x in g.latest.hlc), g.latest.claim_id)
        )
        listing: list[JsonValue] = [g.to_json() for g in groups]
        reached = [g for g in groups if len(g.agents) >= k]
        detail: dict[str, JsonValue] = {"k": k, "groups": listing}
        if not reached:
            most = len(groups[0].agents)
            why = f"no value is backed by {k} distinct agent(s) (the most is {most})"
            return _escalated(self, "no_quorum", why, detail)
        best = reached[0]
        if len(reached) == 1:
            decided_by = "quorum"
        elif len(best.agents) != len(reached[1].agents):
            decided_by = "backers"
        elif best.latest.hlc != reached[1].latest.hlc:
            decided_by = "hlc"
        else:
            decided_by = "claim_id"
        detail["decided_by"] = decided_by
        what = "deletion" if best.latest.deleted else "value"
        why = (
            f"the {what} backed by {len(best.agents)} distinct agent(s) (k = {k}) wins, "
            f"by its latest claim {short_id(best.latest.claim_id)}"
        )
        if decided_by == "backers":
            why += "; it has the most backers"
        elif decided_by != "quorum":
            why += "; several values reached the quorum with as many backers" + _tie_note(
                decided_by
            )
        return _resolved(self, best.latest, "quorum_reached", why, detail)


@dataclass(frozen=True, slots=True)
class _Group:
    claims: tuple[Candidate, ...]
    agents: tuple[bytes, ...]
    latest: Candidate

    @classmethod
    def of(cls, claims: list[Candidate]) -> _Group:
        agents = tuple(sorted({c.agent for c in claims}))
        latest = min(claims, key=lambda c: (tuple(-x for x in c.hlc), c.claim_id))
        return cls(tuple(claims), agents, latest)

    def to_json(self) -> dict[str, JsonValue]:
        first = self.claims[0]
        value_hash = None if first.deleted else tagged_hash(VALUE_HASH_TAG, first.value_key).hex()
        return {
            "value_hash": value_hash,
            "deleted": first.deleted,
            "backers": len(self.agents),
            "agents": [agent.hex() for agent in self.agents],
            "claims": [c.claim_id.hex() for c in self.claims],
            "latest": self.latest.claim_id.hex(),
        }


class Priority(_Builtin):
    """Rank by the position of the claim's type in ``types`` (first = strongest), then of the
    author's role in ``roles``; anything unlisted ranks below everything listed; ties by
    ``lww``."""

    name = "priority"

    def check_params(self, params: Mapping[str, JsonValue]) -> None:
        _check_members(params, ("roles", "types"), "priority")
        for member in ("types", "roles"):
            names = params.get(member, [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"priority params: '{member}' must be a list of names, strongest first"
                )
            seen: list[str] = []
            for n in names:
                assert isinstance(n, str)
                if n in seen:
                    raise ValueError(f"priority params: {n!r} appears twice in '{member}'")
                seen.append(n)

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        types = params.get("types", [])
        roles = params.get("roles", [])
        assert isinstance(types, list) and isinstance(roles, list)

        def position(names: list[JsonValue], name: str | None) -> int | None:
            return names.index(name) if name is not None and name in names else None

        def strength(names: list[JsonValue], name: str | None) -> tuple[int]:
            at = position(names, name)
            return (-(len(names) if at is None else at),)

        ranked, decided_by = _rank(
            candidates,
            [
                ("type", lambda c: strength(types, c.type)),
                ("role", lambda c: strength(roles, c.role)),
                _HLC,
            ],
        )
        winner = ranked[0]
        ranking: list[JsonValue] = [
            {
                "id": c.claim_id.hex(),
                "score": {
                    "type_rank": position(types, c.type),
                    "role_rank": position(roles, c.role),
                    "hlc": [c.hlc[0], c.hlc[1]],
                },
            }
            for c in ranked
        ]
        why = (
            f"{short_id(winner.claim_id)} ({winner.type} by {winner.role or 'no role'}) ranks first"
        )
        if decided_by == "type":
            why += f": its type {winner.type!r} outranks the others"
        elif decided_by == "role":
            why += f": same type rank, and its author's role {winner.role!r} outranks the others"
        else:
            why += _tie_note(decided_by)
        return _resolved(
            self, winner, "highest_priority", why, {"ranking": ranking, "decided_by": decided_by}
        )


class Manual(_Builtin):
    """Always escalate: a ``resolution`` claim from a ``resolver``, superseding the candidates,
    settles the conflict (outside the policy)."""

    name = "manual"

    def check_params(self, params: Mapping[str, JsonValue]) -> None:
        _check_members(params, (), "manual")

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        why = "manual policy: waiting for a resolution claim from a resolver"
        return _escalated(self, "manual", why, {})


LWW = Lww()
TRUST = Trust()
QUORUM = Quorum()
PRIORITY = Priority()
MANUAL = Manual()
BUILTIN_RULES: Mapping[str, Lww | Trust | Quorum | Priority | Manual] = {
    rule.name: rule for rule in (LWW, TRUST, QUORUM, PRIORITY, MANUAL)
}
