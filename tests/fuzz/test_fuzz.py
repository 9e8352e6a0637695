"""Fuzzing every decoder fed from the network or from disk (``memmesh.fuzz``).

Each target runs in a child process under a 512 MiB address-space limit, two at a time (the
machines have two cores). ``MEMMESH_FUZZ_RUNS`` sets the inputs per target (10,000 by default;
``make soak`` runs 1,000,000) and ``MEMMESH_FUZZ_SEED`` the seed (random by default, printed in
every failure with the command that reproduces it).

A fuzzer that refuses everything at the first byte tests nothing, so each campaign must also
reach deep rejections (behind the signature checks, thanks to re-signed mutations) and accept
mutated inputs. And a harness that cannot fail proves nothing, so deliberately broken toy targets
(registered below; the child loads this file as a plugin) must be reported: an exception, a
process that aborts, a runaway allocation, a hang and a slow input.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from memmesh import fuzz
from memmesh.errors import Reason, Rejected

RUNS = int(os.environ.get("MEMMESH_FUZZ_RUNS", "10000"))
SEED = int(os.environ.get("MEMMESH_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
MEMORY_LIMIT = 512 * 2**20
CORPUS = Path(__file__).parents[1] / "fuzz_corpus"
PLUGIN = Path(__file__)
CRASHERS = Path(__file__).parents[1] / "fixtures" / "pycrdt-crashers"

# Slowest first, so the two workers finish together.
TARGETS = [
    "config",
    "admission",
    "membership_op",
    "envelope",
    "dsse",
    "bundle",
    "genesis",
    "claim",
    "admit_chain",
    "grammar",
    "canonical_json",
    "consistency",
    "messages",
    "statement",
    "proof",
    "key_file",
]

# Reasons each campaign must reach at 10,000 runs (every one was hit with 8 seeds out of 8).
DEEP_REASONS: dict[str, set[Reason]] = {
    "envelope": {
        Reason.BAD_SIGNATURE,
        Reason.BAD_SEQ,
        Reason.BAD_PREV,
        Reason.BAD_DEPS,
        Reason.NOT_CANONICAL,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.TRAILING_BYTES,
        Reason.TOO_LARGE,
    },
    "grammar": {
        Reason.WRONG_CLIENT,
        Reason.CLAIM_ID_MISMATCH,
        Reason.CLOCK_GAP,
        Reason.DUPLICATE_CLAIM,
        Reason.FOREIGN_KEY,
        Reason.HAS_ORIGIN,
        Reason.NESTED_TYPE,
        Reason.SECOND_ROOT,
        Reason.BAD_VARINT,
        Reason.TRAILING_BYTES,
    },
    "claim": {
        Reason.BAD_CLAIM,
        Reason.BAD_CLAIM_SIGNATURE,
        Reason.BAD_JSON,
        Reason.NOT_CANONICAL,
        Reason.TRUNCATED,
    },
    "canonical_json": {Reason.BAD_JSON, Reason.NOT_CANONICAL, Reason.TOO_LARGE},
    "genesis": {Reason.BAD_GENESIS, Reason.BAD_SIGNATURE, Reason.BAD_JSON, Reason.TRUNCATED},
    "membership_op": {Reason.BAD_MEMBERSHIP_OP, Reason.BAD_JSON, Reason.NOT_CANONICAL},
    # decode_message has only these two reasons (PROTOCOL.md §13.1).
    "messages": {Reason.BAD_MESSAGE, Reason.TOO_LARGE},
    "admission": {
        # envelope framing and authentication
        Reason.BAD_SIGNATURE,
        Reason.WRONG_MESH,
        Reason.BAD_PREV,
        # the grammar, behind a valid signature
        Reason.WRONG_CLIENT,
        Reason.CLAIM_ID_MISMATCH,
        Reason.FOREIGN_KEY,
        # claims, the claims root and membership operations inside a valid payload
        Reason.BAD_CLAIM,
        Reason.BAD_CLAIMS_ROOT,
        Reason.BAD_MEMBERSHIP_OP,
        # the log: clock range and claims already held
        Reason.CLOCK_OVERLAP,
        Reason.DUPLICATE_CLAIM,
    },
    # The attestation decoders, key files, the config file and the admit chain: their own
    # codes map to the closest Reason (docs/operations.md, "Fuzzing"); DEEP_CODES names them.
    # Every one was hit with 20 seeds out of 20 (MEMMESH_FUZZ_SEED 100 to 119; 40 of 40 for
    # proof, whose rarer grammar reasons, such as nested_type, are left out).
    "dsse": {
        Reason.BAD_JSON,
        Reason.NOT_CANONICAL,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.BAD_SIGNATURE,
    },
    "statement": {Reason.BAD_JSON, Reason.NOT_CANONICAL},
    "bundle": {
        Reason.BAD_VERSION,
        Reason.TRUNCATED,
        Reason.TRAILING_BYTES,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.LENGTH_EXCEEDS_LIMIT,
    },
    "proof": {
        # framing
        Reason.BAD_VERSION,
        Reason.TRUNCATED,
        Reason.TRAILING_BYTES,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.LENGTH_EXCEEDS_LIMIT,
        # the envelope body it carries
        Reason.BAD_PREV,
        Reason.BAD_DEPS,
        Reason.UNKNOWN_KIND,
        # the payload's grammar
        Reason.CLAIM_ID_MISMATCH,
        Reason.FOREIGN_KEY,
        Reason.SECOND_ROOT,
        Reason.BAD_KEY,
        # the three trees and the statement
        Reason.WRONG_MESH,
        Reason.BAD_CLAIMS_ROOT,
        Reason.WRONG_CLIENT,
        Reason.BAD_SEQ,
        Reason.BAD_SIGNATURE,
    },
    "consistency": {
        Reason.BAD_VERSION,
        Reason.TRUNCATED,
        Reason.TRAILING_BYTES,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.NOT_CANONICAL,
        Reason.BAD_PREV,
    },
    "key_file": {
        Reason.TOO_LARGE,
        Reason.TRAILING_BYTES,
        Reason.NOT_CANONICAL,
        Reason.TRUNCATED,
        Reason.LENGTH_EXCEEDS_LIMIT,
    },
    "admit_chain": {
        Reason.TRUNCATED,
        Reason.TRAILING_BYTES,
        Reason.BAD_VERSION,
        Reason.BAD_JSON,
        Reason.NOT_CANONICAL,
        Reason.BAD_CLAIM,
        Reason.BAD_CLAIM_SIGNATURE,
    },
    "config": {
        Reason.TOO_LARGE,
        Reason.BAD_JSON,
        Reason.COUNT_EXCEEDS_LIMIT,
        Reason.LENGTH_EXCEEDS_LIMIT,
    },
}

# The decoders' own codes (and verifier verdicts) each campaign must reach at 10,000 runs, by
# the target's notes (``code:<code>``; ``statement:`` for the statement inside a DSSE, ``claim:``
# for a claim of the admit chain, ``check:`` for check_consistency); 20 seeds out of 20.
DEEP_CODES: dict[str, set[str]] = {
    "dsse": {
        "code:bad_json",
        "code:bad_base64",
        "code:bad_value",
        "code:wrong_type",
        "code:missing_field",
        "code:unknown_field",
        "code:count_exceeds_limit",
        "code:duplicate_keyid",
        "code:signer_signature",
        "statement:bad_value",
        "statement:wrong_type",
        "statement:not_sorted",
        "verdict:valid",
        "verdict:invalid",
        "verdict:unusable",
    },
    "statement": {
        "code:bad_json",
        "code:not_canonical",
        "code:bad_value",
        "code:wrong_type",
        "code:missing_field",
        "code:unknown_field",
        "code:not_sorted",
    },
    "bundle": {
        "code:bad_magic",
        "code:bad_version",
        "code:truncated",
        "code:length_exceeds_limit",
        "verdict:valid",
        "verdict:invalid",
        "verdict:unusable",
    },
    "proof": {
        "code:bad_magic",
        "code:bad_envelope",
        "code:bad_payload",
        "code:bad_index",
        "code:claims_root",
        "code:unknown_log",
        "code:log_root",
        "code:top_root",
        "code:wrong_mesh",
    },
    "consistency": {"code:bad_magic", "code:not_sorted", "check:log_consistency"},
    "key_file": {
        "code:too_large",
        "code:not_one_line",
        "code:bad_base64",
        "code:short_seed",
        "code:long_seed",
    },
    "admit_chain": {
        "code:truncated",
        "code:trailing_bytes",
        "claim:bad_claim",
        "claim:bad_claim_signature",
    },
    "config": {
        "code:too_large",
        "code:not_utf8",
        "code:not_toml",
        "code:unknown_setting",
        "code:config_file",
        "code:greater_than_equal",
        "code:less_than_equal",
        "code:string_too_short",
        "code:literal_error",
        "code:int_type",
        "code:value_error",
        "code:cross_field",
    },
}


def _how(report: dict[str, Any]) -> str:
    return (
        f"seed {SEED}, {RUNS} runs; reproduce with MEMMESH_FUZZ_SEED={SEED} "
        f"MEMMESH_FUZZ_RUNS={RUNS} pytest tests/fuzz -k {report['target']}, or: "
        f"{report.get('command', '')}"
    )


def _findings(report: dict[str, Any]) -> str:
    lines = [f"{report['findings_total']} findings, {report['process_deaths']} process deaths"]
    for finding in report["findings"]:
        lines += [
            f"- {finding['error']}",
            f"  input ({len(finding['input_hex']) // 2} bytes): {finding['input_hex'][:2000]}",
            f"  {finding['traceback'][-3000:]}",
        ]
    lines.append(f"child stderr: {report.get('stderr_tail', '')[-2000:]}")
    return "\n".join(lines)


# -- the campaigns --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaigns(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[dict[str, Any]]]]:
    """Start the selected targets' campaigns, two child processes at a time."""
    selected = {
        item.callspec.params["target"]
        for item in request.session.items
        if item.path == PLUGIN
        and getattr(item, "originalname", "") == "test_fuzz_target"
        and hasattr(item, "callspec")
    }
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fuzz") as pool:
        futures = {
            target: pool.submit(
                fuzz.run_isolated,
                target,
                RUNS,
                SEED,
                memory_limit_bytes=MEMORY_LIMIT,
                timeout_s=300 + RUNS / 20,
                corpus_dir=CORPUS,
            )
            for target in TARGETS
            if target in selected
        }
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, campaigns: dict[str, Future[dict[str, Any]]]) -> None:
    report = campaigns[target].result()
    how = _how(report)
    assert report["findings_total"] == 0, f"{_findings(report)}\n{how}"
    assert report["process_deaths"] == 0, f"{_findings(report)}\n{how}"
    assert report["runs"] == RUNS, how
    assert report["slowest_s"] < 1.0, f"slowest input {report['slowest_s']} s\n{how}"
    # The child's own peak (VmHWM), not ru_maxrss: that survives exec, so it starts at the RSS
    # of the pytest process that spawned the child (gigabytes after a 20,000-example soak).
    peak = report["peak_rss_kib"]
    assert peak is not None and peak * 1024 < MEMORY_LIMIT, f"peak RSS {peak} KiB"
    print(
        f"\n{target}: {report['runs']} runs in {report['wall_s']} s "
        f"({report['inputs_per_s']} inputs/s), {report['accepted']} accepted, "
        f"reasons {report['reasons_hit']}, peak RSS {report['peak_rss_kib']} KiB"
    )
    if RUNS < 10_000:
        return  # too few inputs to demand depth
    hit = {Reason(r) for r in report["reasons_hit"]}
    missing = DEEP_REASONS[target] - hit
    assert not missing, f"{target} never reached {sorted(missing)}; hit {sorted(hit)}\n{how}"
    mutated_accepted = report["by_method"].get("structured", {}).get("accepted", 0)
    assert mutated_accepted > 0, f"no mutated input was accepted: {report['by_method']}\n{how}"
    codes = DEEP_CODES.get(target, set()) - set(report["notes"])
    assert not codes, f"{target} never reached {sorted(codes)}; notes {report['notes']}\n{how}"
    if target == "grammar":
        assert report["notes"]["pycrdt_applied"] > 0, report["notes"]
    if target == "admission":
        notes = report["notes"]
        for status in ("integrated", "waiting_causal", "duplicate"):
            assert notes.get(f"status:{status}", 0) > 0, f"no {status} outcome: {notes}\n{how}"
        assert report["finish"]["replica_encode_ok"], report["finish"]


# -- the committed corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_without_findings(target: str) -> None:
    files = fuzz.corpus_files(target, CORPUS)
    report = fuzz.replay_corpus(target, CORPUS)
    assert report["findings_total"] == 0, _findings({**report, "process_deaths": 0})
    assert report["corpus_size"] >= len(files)
    direct = fuzz.replay(target, [f.read_bytes() for f in files], CORPUS)
    assert direct["findings"] == [], direct


def test_corpus_holds_the_pycrdt_crashers_named_by_their_hash() -> None:
    crashers = {f.read_bytes() for f in CRASHERS.glob("*.bin")}
    assert len(crashers) == 2
    for target in ("grammar", "admission"):
        held = {f.read_bytes() for f in fuzz.corpus_files(target, CORPUS)}
        assert crashers <= held, f"{target} corpus lacks a pycrdt crasher"
    for path in CORPUS.rglob("*"):
        if path.is_file():
            assert path.parent.name in fuzz.TARGETS, f"{path}: not a target's folder"
            assert path.name == hashlib.sha256(path.read_bytes()).hexdigest()[:16], path


def test_every_registered_target_is_fuzzed() -> None:
    builtin = {name for name in fuzz.TARGETS if not name.startswith("toy_")}
    assert builtin == set(TARGETS) == set(DEEP_REASONS)
    assert set(DEEP_CODES) <= builtin


def test_a_str_that_is_not_utf8_is_a_rejection_not_a_crash() -> None:
    """The committed ``messages`` input: msgspec lets invalid UTF-8 out as UnicodeDecodeError."""
    files = fuzz.corpus_files("messages", CORPUS)
    assert bytes.fromhex("9307a2c328a0") in {f.read_bytes() for f in files}
    report = fuzz.replay("messages", [f.read_bytes() for f in files], CORPUS)
    assert report["findings"] == [], report
    assert report["outcomes"] == {Reason.BAD_MESSAGE.value: len(files)}, report


def test_signed_poison_is_rejected_by_the_grammar() -> None:
    """The crashers, validly signed by a member node, stop at the grammar: pycrdt never sees
    them and the live document still encodes."""
    report = fuzz.replay_corpus("admission", CORPUS)
    assert report["findings_total"] == 0
    grammar_reasons = {Reason.TRUNCATED.value, Reason.WRONG_CLIENT.value}
    assert grammar_reasons & set(report["rejected"]), report["rejected"]
    assert report["finish"]["replica_encode_ok"]


# -- the harness can fail ------------------------------------------------------------------------


def _toy_index_error(_corpus: Path | None) -> fuzz.FuzzTarget:
    def check(data: bytes) -> None:
        if len(data) > 3 and data[3] == 0xFF:
            raise IndexError("toy: byte 3 is 0xff")
        if not data or data[0]:
            raise Rejected(Reason.TRUNCATED, "toy: refused")

    return fuzz.FuzzTarget(check=check, seeds=[bytes(8)])


def _toy_abort(_corpus: Path | None) -> fuzz.FuzzTarget:
    def check(data: bytes) -> None:
        if data == b"ABORT":
            os.abort()

    return fuzz.FuzzTarget(check=check, seeds=[b"fine", b"ABORT", b"never reached"])


def _toy_memory_hog(_corpus: Path | None) -> fuzz.FuzzTarget:
    def check(data: bytes) -> None:
        if data == b"hog":
            hog = bytearray(768 * 2**20)  # more than the whole address-space limit
            hog[-1] = 1

    return fuzz.FuzzTarget(check=check, seeds=[b"fine", b"hog"])


def _toy_spin(seconds: float, trigger: bytes) -> fuzz.TargetFactory:
    def factory(_corpus: Path | None) -> fuzz.FuzzTarget:
        def check(data: bytes) -> None:
            if data == trigger:
                deadline = time.thread_time() + seconds  # CPU seconds, as the harness measures
                while time.thread_time() < deadline:  # busy: a hang in native code looks alike
                    pass

        return fuzz.FuzzTarget(check=check, seeds=[b"fine", trigger])

    return factory


for _name, _factory in (
    ("toy_index_error", _toy_index_error),
    ("toy_abort", _toy_abort),
    ("toy_memory_hog", _toy_memory_hog),
    ("toy_hang", _toy_spin(60.0, b"hang")),
    ("toy_slow", _toy_spin(0.3, b"slow")),
):
    fuzz.register_target(_name, _factory)


def test_an_exception_found_by_mutation_is_a_finding() -> None:
    report = fuzz.run_isolated("toy_index_error", 3000, 1, corpus_dir=None, plugins=[PLUGIN])
    assert report["process_deaths"] == 0, report
    assert report["findings_total"] > 0, report
    for finding in report["findings"]:
        assert "IndexError: toy: byte 3 is 0xff" in finding["error"]
        assert bytes.fromhex(finding["input_hex"])[3] == 0xFF
        assert "raise IndexError" in finding["traceback"]
    assert report["rejected"][Reason.TRUNCATED.value] > 0


def test_a_dying_child_is_reported_with_the_input_that_killed_it() -> None:
    report = fuzz.run_isolated("toy_abort", 10, 1, corpus_dir=None, plugins=[PLUGIN])
    assert report["process_deaths"] == 1, report
    [finding] = report["findings"]
    assert bytes.fromhex(finding["input_hex"]) == b"ABORT"
    assert "SIGABRT" in finding["error"]


def test_a_runaway_allocation_hits_the_memory_limit() -> None:
    report = fuzz.run_isolated(
        "toy_memory_hog", 2, 1, memory_limit_bytes=MEMORY_LIMIT, corpus_dir=None, plugins=[PLUGIN]
    )
    assert report["process_deaths"] == 0, report
    [finding] = report["findings"]
    assert bytes.fromhex(finding["input_hex"]) == b"hog"
    assert "MemoryError" in finding["error"]


def test_a_hang_is_killed_and_reported() -> None:
    started = time.monotonic()
    report = fuzz.run_isolated(
        "toy_hang", 2, 1, hang_timeout_s=2.0, corpus_dir=None, plugins=[PLUGIN]
    )
    assert time.monotonic() - started < 30
    assert report["process_deaths"] == 1, report
    [finding] = report["findings"]
    assert bytes.fromhex(finding["input_hex"]) == b"hang"
    assert "hang" in finding["error"]


def test_a_slow_input_is_a_finding() -> None:
    report = fuzz.run("toy_slow", 2, 1, time_limit_s_per_input=0.1, corpus_dir=None)
    [finding] = report["findings"]
    assert bytes.fromhex(finding["input_hex"]) == b"slow"
    assert finding["error"].startswith("slow input")
    assert report["slowest_s"] >= 0.25  # CPU seconds of a 0.3 s busy loop
