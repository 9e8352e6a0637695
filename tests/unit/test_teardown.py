"""``memmesh.teardown``: a command that asked ends at once, with its output and status; one
that did not ends as Python always does."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import atexit, sys
from memmesh.teardown import exit_now_if_asked, skip_teardown
atexit.register(lambda: print("freed at exit", flush=True))
if sys.argv[1] == "asked":
    skip_teardown()
sys.stdout.write("the report\\n")  # buffered: the fast exit must flush it
try:
    sys.exit(eval(sys.argv[2]))
except SystemExit as exc:
    exit_now_if_asked(exc.code)
    raise
"""


def _run(mode: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode, code],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("code", "status"), [("None", 0), ("0", 0), ("3", 3), ("'bad'", 1)])
def test_an_asked_exit_keeps_output_and_status_and_skips_the_teardown(
    code: str, status: int
) -> None:
    done = _run("asked", code)
    assert done.returncode == status, done.stderr
    assert done.stdout == "the report\n"  # no "freed at exit": the interpreter was not torn down
    if code == "'bad'":
        assert done.stderr.strip() == "bad"  # as sys.exit("bad") prints it


def test_without_asking_the_process_ends_as_usual() -> None:
    done = _run("not", "3")
    assert done.returncode == 3
    assert done.stdout == "the report\nfreed at exit\n"
