"""The checker fails runs that break a property: these tests break one on purpose."""

from __future__ import annotations

import pytest

from memmesh.core import Integrated, RejectedEnvelope, WriteAcked
from memmesh.errors import Reason
from memmesh.sim import SimOptions, run_sim
from memmesh.sim.checker import Checker, SafetyViolation
from memmesh.sim.disk import SimDisk
from memmesh.store import MemoryDisk
from memmesh.testing import LogWriter, fixed_mesh_id, seeded_key


def test_a_seq_signed_twice_is_caught_wherever_it_is_committed() -> None:
    key = seeded_key("checker/node")
    first = LogWriter(key, fixed_mesh_id()).next(b"one")
    second = LogWriter(key, fixed_mesh_id()).next(b"two")
    checker = Checker()
    checker.on_commit(0, key.public_key, [first], 0)
    checker.on_commit(1, b"\x01" * 32, [first], 1)  # the same envelope elsewhere: fine
    with pytest.raises(SafetyViolation, match="seq reused"):
        checker.on_commit(1, b"\x01" * 32, [second], 2)


def test_integrating_what_no_author_committed_is_caught() -> None:
    checker = Checker()
    with pytest.raises(SafetyViolation, match="no author committed"):
        checker.on_integrated(0, Integrated("p", (b"\x07" * 32,)), 0)


def test_a_rejected_honest_envelope_is_caught_but_a_full_buffer_is_counted() -> None:
    checker = Checker()
    checker.on_rejected(0, RejectedEnvelope("p", None, Reason.CAUSAL_BUFFER_FULL, "full"), 0)
    assert checker.refused_for_load == 1
    with pytest.raises(SafetyViolation, match="bad_signature"):
        checker.on_rejected(0, RejectedEnvelope("p", None, Reason.BAD_SIGNATURE, "x"), 0)


def test_two_acks_for_one_seq_are_caught() -> None:
    checker = Checker()
    checker.on_ack(0, WriteAcked(1, b"\x01" * 32, 1, ()), True, 0)
    with pytest.raises(SafetyViolation, match="not on its disk"):
        checker.on_ack(0, WriteAcked(2, b"\x02" * 32, 2, ()), False, 0)
    with pytest.raises(SafetyViolation, match="two envelopes at seq 1"):
        checker.on_ack(0, WriteAcked(3, b"\x03" * 32, 1, ()), True, 0)


def test_a_disk_that_forgets_acknowledged_writes_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk that comes back empty after a crash (what the model promises never happens)."""
    original = SimDisk.open

    def forgetful_open(self: SimDisk) -> object:
        if self.memory.envelopes:
            self.memory = MemoryDisk()
        return original(self)

    monkeypatch.setattr(SimDisk, "open", forgetful_open)
    run = run_sim(SimOptions(seed=3, nodes=3, updates=40, crashes=3, torn_commit=0.0))
    assert run.failure_kind == "safety"
    assert "lost acknowledged" in (run.failure or "")
    assert "memmesh sim run" in run.options.command()


def test_an_honest_run_passes_every_check() -> None:
    run = run_sim(SimOptions(seed=3, nodes=3, updates=40, crashes=3, torn_commit=0.0))
    assert run.ok, run.failure
    assert run.checker.checks > 40 * 3
    assert run.faults.counts.get("restarts", 0) >= 1
