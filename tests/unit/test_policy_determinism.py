"""Acceptance (issue 7): 1,000 random conflict sets evaluated in 3 processes with different
``PYTHONHASHSEED``, time zones and locales give identical output bytes.

The sets (candidates with colliding HLCs, agents and values, and a random rule with random and
sometimes invalid params, custom rules included) come from a seeded ``random.Random``, so every
process builds the same ones. Run as a script, this file evaluates them and prints one JSON line:
the count, the sha256 of the decision bytes, and which rules, statuses, reasons and tie-breaks
occurred. The test compares three such runs and checks the sets exercise every rule both ways.

To show the comparison can fail, each run also evaluates the sets under a deliberately leaky
rule (its winner is the first member of a ``set`` of hex strings, whose order follows the hash
seed): its digests must differ between the processes.

    python tests/unit/test_policy_determinism.py SEED COUNT
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from memmesh.canonical import JsonValue
from memmesh.policy import Candidate, Context, Decision, Registry, Rule, decide

SEED = 7_2024
COUNT = 1_000
AGENTS = [hashlib.sha256(b"agent %d" % n).digest() for n in range(6)]
ROLES = ["admin", "writer", "resolver", "node", "reader"]
TYPES = ["fact", "observation", "decision", "instruction", "note", "retraction"]
VALUES: list[JsonValue] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    2**53,
    "",
    "x",
    "Zürich",
    "日本",
    [1, "x", None],
    {"b": 1, "a": [True, None]},
    {"é": {"z": 0, "a": ""}},
    {"\U00010000": 1, "\ue000": 2},  # UTF-16 member order differs from code point order
]
RULES = ["lww", "trust", "quorum", "priority", "manual", "by-confidence", "boom", "not-installed"]
PROCESSES = [
    {"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C"},
    {"PYTHONHASHSEED": "1", "TZ": "America/New_York", "LC_ALL": "C.UTF-8"},
    {"PYTHONHASHSEED": "4242", "TZ": "Asia/Kolkata", "LC_ALL": "C.UTF-8"},
]


class ByConfidence:
    """A custom rule: the highest confidence wins (then lww); escalate if nobody states one."""

    name = "by-confidence"
    version = 2

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        scored = [c for c in candidates if c.confidence is not None]
        if not scored:
            return Decision("escalated", None, self.name, self.version, {"reason": "no_confidence"})
        best = min(scored, key=lambda c: (-(c.confidence or 0), -c.hlc[0], -c.hlc[1], c.claim_id))
        detail: dict[str, JsonValue] = {"reason": "most_confident", "confidence": best.confidence}
        return Decision("resolved", best.claim_id, self.name, self.version, detail)


class Boom:
    """A custom rule that always raises."""

    name = "boom"
    version = 1

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        raise KeyError(f"nothing at {id(candidates):#x}")


class Leaky:
    """Breaks the contract on purpose: picks the first claim id a ``set`` yields."""

    name = "leaky"
    version = 1

    def decide(
        self, candidates: Sequence[Candidate], params: Mapping[str, JsonValue], ctx: Context
    ) -> Decision:
        first = next(iter({c.claim_id.hex() for c in candidates}))
        return Decision("resolved", bytes.fromhex(first), self.name, self.version, {})


def random_rule(rng: random.Random) -> Rule:
    name = rng.choice(RULES)
    bad = rng.random() < 0.12
    params: dict[str, JsonValue] = {}
    if name == "trust":
        roles: dict[str, JsonValue] = {r: rng.randint(-5, 100) for r in rng.sample(ROLES, 3)}
        agents: dict[str, JsonValue] = {
            a.hex(): rng.randint(0, 200) for a in rng.sample(AGENTS, rng.randint(0, 2))
        }
        if bad:
            roles["admin"] = "high"
        params = {"roles": roles, "agents": agents}
    elif name == "quorum":
        params = {"k": 0 if bad else rng.randint(1, 4)}
    elif name == "priority":
        types: list[JsonValue] = list(rng.sample(TYPES, rng.randint(0, len(TYPES))))
        if bad:
            types += ["fact", "fact"]
        params = {"types": types, "roles": list(rng.sample(ROLES, rng.randint(0, len(ROLES))))}
    elif name == "not-installed":
        params = {"any": rng.randint(0, 9)}
    elif bad:
        params = {"unexpected": True}
    return Rule(name, rng.randint(1, 9), params)


def conflict_sets(seed: int, count: int) -> list[tuple[list[Candidate], Rule]]:
    rng = random.Random(seed)
    sets = []
    for _ in range(count):
        size = 1 if rng.random() < 0.08 else rng.randint(2, 7)
        candidates = []
        for _ in range(size):
            kind = rng.choice(TYPES)
            value = rng.choice(VALUES)
            candidates.append(
                Candidate(
                    claim_id=rng.randbytes(32),
                    agent=rng.choice(AGENTS),
                    role=rng.choice([*ROLES, None]),
                    type=kind,
                    hlc=(1_700_000_000_000 + rng.randrange(3), rng.randrange(3)),
                    value=None if kind == "retraction" else value,
                    confidence=rng.choice([None, None, 0, 5_000, 10_000]),
                )
            )
        sets.append((candidates, random_rule(rng)))
    return sets


def evaluate(seed: int, count: int) -> dict[str, object]:
    registry = Registry(find=lambda name: [])
    for impl in (ByConfidence(), Boom(), Leaky()):
        registry.register(impl)
    outputs: list[bytes] = []
    leaky: list[bytes] = []
    kinds: set[str] = set()
    reasons: set[str] = set()
    decided_by: set[str] = set()
    for candidates, rule in conflict_sets(seed, count):
        decision = decide(candidates, rule, registry=registry)
        outputs.append(decision.to_bytes())
        kinds.add(f"{rule.name}:{decision.status}")
        reasons.add(str(decision.explanation["reason"]))
        detail = decision.explanation["detail"]
        if isinstance(detail, dict) and isinstance(detail.get("decided_by"), str):
            decided_by.add(f"{rule.name}:{detail['decided_by']}")
        if len(candidates) > 1:
            leaky.append(decide(candidates, Rule("leaky"), registry=registry).to_bytes())
    return {
        "count": len(outputs),
        "sha256": hashlib.sha256(b"\n".join(outputs)).hexdigest(),
        "kinds": sorted(kinds),
        "reasons": sorted(reasons),
        "decided_by": sorted(decided_by),
        "leaky_sha256": hashlib.sha256(b"\n".join(leaky)).hexdigest(),
        "utc_offset": time.strftime("%z", time.localtime(0)),
    }


def _run(env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, str(SEED), str(COUNT)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert isinstance(out, dict)
    return out


def test_random_conflict_sets_decide_identically_in_three_processes() -> None:
    with ThreadPoolExecutor(len(PROCESSES)) as pool:
        runs = list(pool.map(_run, PROCESSES))
    # The environments really differed ...
    assert [run["utc_offset"] for run in runs] == ["+0000", "-0500", "+0530"]
    assert len({run["leaky_sha256"] for run in runs}) > 1, "a hash-order leak went unnoticed"
    # ... and the decisions did not, here either (this process has its own hash seed).
    here = evaluate(SEED, COUNT)
    for run in runs:
        for member in ("count", "sha256", "kinds", "reasons", "decided_by"):
            assert run[member] == here[member], member
    assert here["count"] == COUNT
    # Every rule both resolved and escalated, for every kind of reason, with real ties.
    assert here["kinds"] == sorted(f"{r}:{s}" for r in RULES for s in ("resolved", "escalated"))
    assert set(here["reasons"]) >= {  # type: ignore[call-overload]
        "single_candidate",
        "latest_hlc",
        "highest_weight",
        "quorum_reached",
        "no_quorum",
        "highest_priority",
        "manual",
        "bad_params",
        "unknown_rule",
        "rule_error",
        "most_confident",
        "no_confidence",
    }
    assert set(here["decided_by"]) >= {  # type: ignore[call-overload]
        "lww:hlc",
        "lww:claim_id",
        "trust:weight",
        "trust:hlc",
        "trust:claim_id",
        "quorum:quorum",
        "quorum:backers",
        "quorum:hlc",
        "priority:type",
        "priority:role",
        "priority:hlc",
    }


if __name__ == "__main__":
    print(json.dumps(evaluate(int(sys.argv[1]), int(sys.argv[2])), sort_keys=True))
