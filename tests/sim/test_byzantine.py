"""Byzantine nodes in the simulator: each kind attacks real honest ``MeshCore`` nodes, and every
run must still keep every property for the honest nodes (same frontier and claims digest after
the final heal, nothing to reject held, everything to exclude excluded, no core raising), with
the rejections and exclusions each attack should cause actually seen.

The default suite runs 5 small seeds per kind (4 honest nodes and the Byzantine one, 3 virtual
seconds, a little loss, duplication and reordering); the soak runs 50 swarm seeds per kind
(every fault of a campaign drawn from the seed, 3-9 honest nodes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from memmesh.admission import Admission
from memmesh.cli_sim import sim_campaign, sim_run
from memmesh.envelope import decode_envelope, seal
from memmesh.evidence import verify_equivocation
from memmesh.ids import ZERO_ID
from memmesh.sim import SimOptions, run_sim, swarm_options
from memmesh.sim.byzantine import CRASHERS
from memmesh.sim.campaign import byzantine_totals, run_campaign
from memmesh.sim.checker import Checker, SafetyViolation
from memmesh.sim.options import KINDS, parse_kinds
from memmesh.sim.report import make_report
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture, fixed_mesh_id, seeded_key

SEEDS = range(5)
SOAK_SEEDS = range(2_000_000, 2_000_050)
JOBS = min(2, os.cpu_count() or 1)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pycrdt-crashers"

EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "forger": ({"bad_signature", "bad_claim_signature"}, set()),
    "replayer": ({"wrong_mesh", "duplicate_claim"}, set()),
    "equivocator": (set(), {"equivocation"}),
    "spoofer": ({"wrong_client"}, set()),
    "eraser": ({"foreign_key", "has_deletes"}, set()),
    "poisoner": (
        {
            "truncated",  # the first pycrdt crasher
            "wrong_client",  # the second
            "nested_type",
            "second_root",
            "trailing_bytes",
            "clock_gap",
            "bad_varint",
            "bad_claim",
            "bad_claims_root",
        },
        set(),
    ),
    "revoked": (set(), {"revoked"}),
    "flooder": (set(), set()),
}
"""Per kind, the rejection and exclusion reasons its seeds must show (together)."""


def small(seed: int, *kinds: str, **overrides: Any) -> SimOptions:
    options: dict[str, Any] = {
        "seed": seed,
        "nodes": 4,
        "updates": 12,
        "duration_ms": 3_000,
        "loss": 0.02,
        "duplicate": 0.05,
        "reorder": 0.05,
        "byzantine": kinds,
    }
    return SimOptions(**{**options, **overrides})


def _sum(into: dict[str, int], counts: dict[str, int]) -> None:
    for reason, count in counts.items():
        into[reason] = into.get(reason, 0) + count


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_rejected_or_excluded_and_the_honest_nodes_converge(kind: str) -> None:
    rejected: dict[str, int] = {}
    excluded: dict[str, int] = {}
    for seed in SEEDS:
        run = run_sim(small(seed, kind))
        assert run.ok, f"{run.failure_kind}: {run.failure}\nreproduce: {run.options.command()}"
        assert run.converged_us is not None
        entry = run.checker.byzantine_report()[kind]
        _sum(rejected, entry["rejected"])  # type: ignore[arg-type]
        _sum(excluded, entry["excluded"])  # type: ignore[arg-type]
        assert entry["delivered_to_honest"], "the attack reached no honest node"
        if kind == "flooder":
            assert entry["held_live"] >= 4 * 250  # ~300 valid envelopes on every honest node
            # Pushed past its budget (50 a second here; it pushes 100 a second on each of its
            # links): hundreds dropped by the honest nodes it reaches, and fetched later all
            # the same (the held_live figure above).
            honest = [n.index for n in run.cluster.nodes if n.byzantine is None]
            assert sum(run.cluster.stats.throttled.get(i, 0) for i in honest) >= 300
    want_rejected, want_excluded = EXPECTED[kind]
    assert want_rejected <= rejected.keys(), rejected
    assert want_excluded <= excluded.keys(), excluded
    if not want_rejected:
        assert not rejected, rejected
    assert excluded.keys() <= want_excluded, excluded


def test_the_equivocation_evidence_checks_offline() -> None:
    checked = 0
    for seed in SEEDS:
        run = run_sim(small(seed, "equivocator"))
        assert run.ok, run.failure
        mesh_id = run.cluster.mesh.mesh_id
        byzantine = run.cluster.nodes[-1].key.public_key
        assert run.checker.byz_evidence
        pairs = list(run.checker.byz_evidence.values())
        for node in run.cluster.nodes:  # and what every honest node keeps in its store
            if node.byzantine is None and node.core is not None:
                assert node.core.admission.evidence
                pairs.extend(node.core.admission.evidence.values())
        for first, second in pairs:
            ok, reason = verify_equivocation(first, second, mesh_id)
            assert ok, reason
            assert reason.startswith("equivocation:")
            assert verify_equivocation(second, first, mesh_id)[0]
            checked += 1
        assert verify_equivocation(*pairs[0], fixed_mesh_id())[1].startswith("first: wrong_mesh")
        assert all(seal_author(raw) == byzantine for pair in pairs for raw in pair)
    assert checked >= 5


def seal_author(raw: bytes) -> bytes:
    return decode_envelope(raw).author


def test_verify_equivocation_refuses_what_is_not_a_proof() -> None:
    mesh = fixed_mesh_id()
    key, other = seeded_key("evidence/a"), seeded_key("evidence/b")

    def env(k: Any = key, seq: int = 1, payload: bytes = b"x", epoch: int = 1) -> bytes:
        prev = ZERO_ID if seq == 1 and epoch == 1 else b"\x01" * 32
        return seal(k, mesh_id=mesh, epoch=epoch, seq=seq, prev=prev, hlc=1, payload=payload).raw

    assert verify_equivocation(env(), env(payload=b"y"), mesh)[0]
    forged = env(payload=b"y")
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    cases = {
        "different_authors": (env(), env(other, payload=b"y")),
        "different_seqs": (env(seq=2), env(seq=3, payload=b"y")),
        "different_epochs": (env(seq=2), env(seq=2, epoch=2, payload=b"y")),
        "same_envelope": (env(), env()),
        "second: bad_signature": (env(), forged),
        "first: truncated": (b"garbage", env()),
    }
    for code, (first, second) in cases.items():
        ok, reason = verify_equivocation(first, second, mesh)
        assert not ok and reason.startswith(code), (code, reason)
    assert verify_equivocation(env(), env(payload=b"y"), b"\x09" * 32)[1].startswith(
        "first: wrong_mesh"
    )


def test_every_kind_at_once_is_one_trace_per_seed() -> None:
    options = small(7, *KINDS, duration_ms=2_000)
    first = run_sim(options)
    assert first.ok, first.failure
    assert run_sim(options).trace_hash == first.trace_hash
    script = (
        "from memmesh.sim import SimOptions, run_sim\n"
        f"print(run_sim(SimOptions(**{options.as_dict()!r})).trace_hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == first.trace_hash
    report = make_report(first, flood_limit=None)["byzantine"]
    assert report["kinds"] == list(KINDS)
    assert sorted(report["by_kind"]) == sorted(KINDS)


def test_the_checker_fails_a_held_envelope_to_reject_or_a_live_one_to_exclude() -> None:
    mesh = MeshFixture("byz-checker", nodes=2, writers=1)
    admission = Admission(MemoryStore(), mesh.genesis)
    env = admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "k")], hlc=1)
    checker = Checker()
    checker.byz_expect[env.id] = ("forger", "reject")
    with pytest.raises(SafetyViolation, match="must reject"):
        checker.check_byzantine([(0, admission)], 0)
    checker.byz_expect[env.id] = ("revoked", "exclude")
    with pytest.raises(SafetyViolation, match="must exclude"):
        checker.check_byzantine([(0, admission)], 0)
    checker.byz_expect[env.id] = ("flooder", "valid")
    checker.check_byzantine([(0, admission)], 0)
    assert checker.byz_live == {"flooder": 1}


def test_the_poisoner_carries_the_known_pycrdt_crashers() -> None:
    assert FIXTURES.is_dir()
    assert sorted(CRASHERS) == sorted(p.read_bytes() for p in FIXTURES.glob("*.bin"))


def test_kinds_parse_and_show_in_the_command() -> None:
    assert parse_kinds("forger, equivocator,") == ("forger", "equivocator")
    with pytest.raises(ValueError, match="unknown Byzantine kinds"):
        parse_kinds("forger,liar")
    with pytest.raises(ValueError, match="unknown Byzantine kinds"):
        SimOptions(seed=1, byzantine=("liar",))
    assert small(3, "forger", "revoked").command().endswith("--byzantine forger,revoked")
    swarm = swarm_options(3, byzantine=("flooder",))
    assert swarm.command() == "memmesh sim run --swarm --seed 3 --byzantine flooder"


def test_sim_run_byzantine_prints_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    sim_run(nodes=4, updates=8, seed=2, duration=2.0, flood_updates=0, as_json=True,
            byzantine="forger,revoked,flooder")  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["ok"]
    by_kind = report["byzantine"]["by_kind"]
    assert by_kind["forger"]["rejected"]["bad_signature"] > 0
    assert by_kind["revoked"]["excluded"]["revoked"] > 0
    assert report["faults"]["pushes_throttled"] > 0  # the flooder, past its push budget
    with pytest.raises(typer.BadParameter):
        sim_run(nodes=4, updates=8, seed=2, as_json=True, byzantine="nobody")


def test_a_byzantine_campaign_sums_reasons_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    results = run_campaign(range(3), jobs=1, byzantine=("spoofer", "equivocator"))
    assert all(r["ok"] for r in results), [r["failure"] for r in results]
    totals = byzantine_totals(results)
    assert totals["spoofer"]["seeds"] == 3
    assert totals["spoofer"]["rejected"]["wrong_client"] > 0
    assert totals["equivocator"]["excluded"]["equivocation"] > 0
    sim_campaign(seeds=2, first=0, jobs=1, byzantine="eraser", as_json=True)
    summary = json.loads(capsys.readouterr().out)
    assert summary["failures"] == 0
    assert summary["byzantine"]["eraser"]["rejected"]["has_deletes"] > 0


@pytest.mark.soak
@pytest.mark.parametrize("kind", KINDS)
def test_soak_byzantine_campaign(kind: str) -> None:
    results = run_campaign(SOAK_SEEDS, jobs=JOBS, byzantine=(kind,))
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n".join(
        f"seed {r['seed']} ({r['failure_kind']}): {(r['failure'] or '').splitlines()[0]}\n"
        f"  reproduce: {r['command']}"
        for r in failed
    )
    totals = byzantine_totals(results)[kind]
    want_rejected, want_excluded = EXPECTED[kind]
    assert want_rejected <= totals["rejected"].keys()
    assert want_excluded <= totals["excluded"].keys()
