"""``memmesh bench attest`` at a small size, through the CLI: every figure is measured and
consistent with the others."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys


def test_the_attest_bench_measures_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memmesh", "bench", "attest", "--claims", "2000",
         "--new-claims", "100", "--json"],
        check=False, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for name in ("attest_first_ms", "attest_ms", "verify_full_s", "signatures_s",
                 "verify_vs_bound"):  # fmt: skip
        value = figures[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert figures["envelopes"] == 2000 + 5 * 100 + 1  # the group envelope of the last proof
    assert figures["signatures_verified"] == 2 * (2000 + 5 * 100) + 1
    # Full verification does at least the signature work it is measured against.
    assert figures["verify_full_s"] >= figures["verify_signature_pass_s"]
    assert (
        abs(figures["verify_vs_bound"] - figures["verify_full_s"] / figures["signatures_s"]) < 0.01
    )
    before, after = figures["signatures_s_runs"]  # the bound, around the full verification
    assert abs(figures["signatures_s"] - (before + after) / 2) < 0.002
    assert figures["resolution_checked"] is True
    assert 0 < figures["inclusion_proof_bytes"] < figures["inclusion_proof_bytes_64"]
