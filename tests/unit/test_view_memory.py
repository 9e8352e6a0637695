"""Building a view leaves no holes in the interpreter's memory.

A view is built in one ``View.apply`` of every claim at start. A version of it kept a short list
per subject until the call ended; freed then, those lists left their memory in holes between the
objects that stay (pymalloc returns a pool to the system only once all of it is free), and
``memmesh bench view`` measured ``rss_vs_doc`` 2.077 against its goal of 2.0. ``bench view`` is
not in ``make test``; this is: a child process builds a view of 10,000 subjects and reads
pymalloc's own count of free bytes inside its used pools (``sys._debugmallocstats``) before and
after. Measured: about -4 bytes a claim now, +62 with the lists.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HOLES_PER_CLAIM_MAX = 16

_CHILD = r"""
import gc, os, re, sys
from memmesh.admission import Admission
from memmesh.memory import View
from memmesh.store import MemoryStore
from memmesh.testing import MeshFixture

def free_in_pools():
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()  # written by C to the process's standard error
    finally:
        os.dup2(saved, 2)
        os.close(write)
    text = b""
    while chunk := os.read(read, 1 << 16):
        text += chunk
    os.close(read)
    found = re.search(rb"# bytes in available blocks\s*=\s*([\d,]+)", text)
    if found is None:  # an interpreter without pymalloc (PYTHONMALLOC=malloc, a debug build)
        print("no-pymalloc")
        sys.exit(0)
    return int(found.group(1).replace(b",", b""))

mesh = MeshFixture("view-memory", nodes=1, writers=1)
admission = Admission(MemoryStore(), mesh.genesis)
count = int(sys.argv[1])
for first in range(0, count, 256):
    batch = [
        mesh.claim(mesh.writers[0], f"k{i}", i, namespace=("holes",))
        for i in range(first, min(count, first + 256))
    ]
    admission.write_local(mesh.nodes[0], batch, hlc=first + 1)
gc.collect()
before = free_in_pools()
view = View.build(admission)
gc.collect()
assert len(view.subjects) >= count
print((free_in_pools() - before) / count)
"""


def test_building_a_view_leaves_no_holes_between_what_it_keeps() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "10000"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no-pymalloc":
        pytest.skip("this interpreter does not use pymalloc: nothing to count")
    holes_per_claim = float(done.stdout.strip())
    assert holes_per_claim <= HOLES_PER_CLAIM_MAX, holes_per_claim
