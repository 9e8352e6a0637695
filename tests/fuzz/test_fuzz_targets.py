"""The targets of the attestation decoders, key files, the config file and the admit chain
(``memmesh.fuzz``), and the ``memmesh fuzz`` command. The campaigns themselves run in
``test_fuzz.py``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from memmesh import cli_fuzz, fuzz
from memmesh.attest import ProofError, StatementError
from memmesh.errors import Reason

CORPUS = Path(__file__).parents[1] / "fuzz_corpus"
NEW_TARGETS = (
    "dsse",
    "statement",
    "bundle",
    "proof",
    "consistency",
    "key_file",
    "config",
    "admit_chain",
)


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_the_built_in_seeds_are_accepted(target: str) -> None:
    """The valid samples each campaign starts from decode (so mutations start from depth)."""
    report = fuzz.replay_corpus(target, None)
    assert report["findings_total"] == 0, report["findings"]
    assert report["accepted"] >= 2, report


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("too_large", Reason.TOO_LARGE),
        ("bad_magic", Reason.BAD_VERSION),
        ("unknown_field", Reason.BAD_JSON),
        ("not_sorted", Reason.NOT_CANONICAL),
        ("log_root", Reason.BAD_SIGNATURE),
        ("beyond_frontier", Reason.BAD_SEQ),
        ("wrong_client", Reason.WRONG_CLIENT),  # a Reason value passes through
        ("brand_new_code", Reason.BAD_MESSAGE),
    ],
)
def test_an_attestation_code_maps_to_a_reason_and_is_noted(code: str, reason: Reason) -> None:
    notes: Counter[str] = Counter()
    rejected = fuzz._attest_rejection(StatementError(code, "detail"), notes)
    assert rejected.reason is reason
    assert notes[f"code:{code}"] == 1
    assert (notes[f"unmapped:{code}"] == 1) == (code == "brand_new_code")


def test_a_wrapped_proof_code_maps_to_the_inner_reason() -> None:
    notes: Counter[str] = Counter()
    exc = ProofError("bad_payload", "foreign_key: an item of another client")
    assert fuzz._attest_rejection(exc, notes).reason is Reason.FOREIGN_KEY
    assert notes == Counter({"code:bad_payload": 1, "bad_payload:foreign_key": 1})


def test_a_home_of_no_user_is_a_config_error_not_a_crash() -> None:
    """Found by the ``config`` target: ``Path.expanduser`` raises RuntimeError for ``~user``
    naming no user, and it escaped ``load_settings`` (committed in ``fuzz_corpus/config``)."""
    report = fuzz.replay("config", [b'data_dir = "~nosuchuser-memmesh"\n'])
    assert report["findings"] == [], report["findings"][0]["traceback"]
    assert report["outcomes"] == {Reason.BAD_JSON.value: 1}


def test_a_key_file_is_read_from_a_file_holding_the_input() -> None:
    line = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    report = fuzz.replay("key_file", [line, line[:-1], line + b"\n", line[:-2] + b"\n"])
    assert report["findings"] == []
    assert report["outcomes"] == {
        "accepted": 2,
        Reason.TRAILING_BYTES.value: 1,
        Reason.NOT_CANONICAL.value: 1,
    }


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """memmesh"""

    cli_fuzz.register(app)
    return app


def test_the_fuzz_command_runs_a_campaign_in_a_child() -> None:
    result = CliRunner().invoke(
        _app(), ["fuzz", "--target", "key_file", "--runs", "300", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["target"], report["runs"], report["seed"]) == ("key_file", 300, 3)
    assert report["findings_total"] == 0 and report["process_deaths"] == 0
    assert report["accepted"] > 0


def test_the_fuzz_command_lists_and_refuses_unknown_targets() -> None:
    runner = CliRunner()
    listed = runner.invoke(_app(), ["fuzz", "--list"])
    assert listed.exit_code == 0
    assert set(NEW_TARGETS) <= set(listed.stdout.split())
    unknown = runner.invoke(_app(), ["fuzz", "--target", "nope", "--runs", "1"])
    assert unknown.exit_code == 2
