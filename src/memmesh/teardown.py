"""Ending a command whose heap is large without freeing it object by object.

At exit CPython frees every object still alive, one by one: after a 1,000-node simulation
(3.2 GB, tens of millions of objects) that took 17.6 s of a 238 s command, for memory the
operating system takes back at once anyway. A command that holds nothing needing cleanup
(no open store, no child process, its output written) calls :func:`skip_teardown`; the
console entry point (:func:`memmesh.cli.main`) then flushes the standard streams and the
logging handlers and ends the process with :func:`os._exit` and the same exit status.
Called in-process (tests, ``CliRunner``), nothing changes: only ``main`` acts on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

__all__ = ["exit_now_if_asked", "skip_teardown"]

_asked = False


def skip_teardown() -> None:
    """Ask the console entry point to end the process without freeing the heap."""
    global _asked  # noqa: PLW0603 - one flag for the process, like sys.exit's status
    _asked = True


def exit_now_if_asked(code: object) -> None:
    """End the process at once with ``code`` (a ``SystemExit`` code) if a command asked."""
    if not _asked:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # Closed or gone: nothing more can be written anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits 1
        print(code, file=sys.stderr, flush=True)
        status = 1
    os._exit(status)
