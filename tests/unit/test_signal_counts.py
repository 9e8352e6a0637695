"""The structures the operating signals read without walking the node's history: settle times
kept sorted as conflicts settle and reopen, and histograms built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memmesh.admission import Admission
from memmesh.memory import View
from memmesh.memory.types import DECISION, RECEIPT, RECEIPT_NAMESPACE, SYSTEM_PREFIX
from memmesh.memory.view import SettleTimes
from memmesh.runtime.attestations import AttestationService
from memmesh.runtime.signals import (
    PROPAGATION_BUCKETS_S,
    RESOLUTION_BUCKETS_S,
    Histogram,
    Traceability,
)
from memmesh.store import LmdbStore, MemoryStore
from memmesh.testing import MeshFixture, scaled

times = st.lists(st.integers(-5, 90_000_000), max_size=60)


@given(times, st.data())
def test_settle_times_hold_what_was_added_and_not_removed(
    values: list[int], data: st.DataObject
) -> None:
    settled = SettleTimes()
    for v in values:
        settled.add(v)
    gone = data.draw(st.lists(st.sampled_from(values), unique_by=lambda x: x)) if values else []
    kept = list(values)
    for v in gone:
        settled.remove(v)
        kept.remove(v)
    kept.sort()
    assert list(settled) == kept
    assert len(settled) == len(kept)
    assert settled.total_ms == sum(kept)
    assert settled.median() == (kept[len(kept) // 2] if kept else None)


def test_removing_a_time_never_added_is_an_error() -> None:
    settled = SettleTimes()
    settled.add(5)
    with pytest.raises(ValueError, match="no settle time of 6 ms"):
        settled.remove(6)
    assert list(settled) == [5]


@given(times, st.sampled_from([RESOLUTION_BUCKETS_S, PROPAGATION_BUCKETS_S]))
def test_histogram_of_counts_equals_observing_every_value(
    values: list[int], buckets: tuple[float, ...]
) -> None:
    """Bucket edges included: a value of exactly a bound's milliseconds lands in that bound."""
    settled = SettleTimes()
    for v in values:
        settled.add(v)
    observed = Histogram.of(buckets, (v / 1000 for v in values))
    counted = Histogram.of_counts(buckets, settled.at_most, len(settled), settled.total_ms / 1000)
    assert counted.counts == observed.counts
    assert counted.count == observed.count
    assert counted.total == pytest.approx(observed.total)


def test_a_value_on_a_bound_counts_in_that_bound() -> None:
    settled = SettleTimes()
    for v in (1, 2, 10, 11, 500, 501):
        settled.add(v)
    assert settled.at_most(0.001) == 1
    assert settled.at_most(0.01) == 3
    assert settled.at_most(0.5) == 5
    assert settled.at_most(0.0025) == 2  # 2.5 ms: 1 and 2


# -- traceability: the count kept as things arrive equals walking every decision -----------------

REFS = tuple(bytes([i]) * 32 for i in range(6))
"""A few ids decisions cite and that become (or stop being) nameable: receipts or attestations."""


class TraceMachine(RuleBasedStateMachine):
    """Decisions citing a few ids arrive among receipts issued (two remembered at most),
    recorded, replicated as claims and attestations held, in any order; after every step the
    kept count equals the count walked from nothing."""

    @initialize()
    def start(self) -> None:
        self.mesh = MeshFixture("trace", nodes=1, writers=1)
        self.trace = Traceability(issued_max=2)

    @rule(cited=st.lists(st.sampled_from(REFS), max_size=3, unique=True), system=st.booleans())
    def decision(self, cited: list[bytes], system: bool) -> None:
        namespace = (SYSTEM_PREFIX, "x") if system else ("team",)
        claim = self.mesh.claim(self.mesh.writers[0], "d", "go", type=DECISION,
                                namespace=namespace, based_on=tuple(sorted(cited)))  # fmt: skip
        self.trace.integrated([claim])
        self.trace.integrated([claim])  # the same claim again counts once

    @rule(ref=st.sampled_from(REFS))
    def issue(self, ref: bytes) -> None:
        self.trace.issue(ref)

    @rule(ref=st.sampled_from(REFS))
    def record(self, ref: bytes) -> None:
        self.trace.record(ref)

    @rule(ref=st.sampled_from(REFS))
    def attest(self, ref: bytes) -> None:
        self.trace.attest(ref)

    @rule(ref=st.sampled_from(REFS), hex_key=st.booleans())
    def replicated_receipt(self, ref: bytes, hex_key: bool) -> None:
        key = ref.hex() if hex_key else "not-hex"
        claim = self.mesh.claim(self.mesh.writers[0], key, {}, type=RECEIPT,
                                namespace=RECEIPT_NAMESPACE)  # fmt: skip
        self.trace.integrated([claim])

    @invariant()
    def kept_count_equals_walking(self) -> None:
        trace = getattr(self, "trace", None)
        if trace is not None:
            assert trace.traceable == trace.count_by_walking()
            assert len(trace.issued) <= 2


TraceMachine.TestCase.settings = settings(max_examples=scaled(150), stateful_step_count=40)
test_the_traceable_count_equals_walking_the_decisions = TraceMachine.TestCase


def test_a_forgotten_receipt_stops_counting_unless_named_elsewhere() -> None:
    mesh = MeshFixture("trace-forget", nodes=1, writers=1)
    trace = Traceability(issued_max=1)
    first, second = REFS[0], REFS[1]
    claim = mesh.claim(mesh.writers[0], "d", "go", type=DECISION, namespace=("team",),
                       based_on=(first,))  # fmt: skip
    trace.issue(first)
    trace.integrated([claim])
    assert trace.traceable == 1
    trace.issue(second)  # the first is forgotten: nothing else names it
    assert trace.traceable == 0
    trace.attest(first)
    assert trace.traceable == 1


def test_the_attestation_service_names_each_attestation_it_comes_to_hold_once(
    tmp_path: Path,
) -> None:
    """The node's traceable count learns attestations through ``on_new``: those it creates,
    those of others it keeps, and at start those in its store."""
    mesh = MeshFixture("trace-attest", nodes=2, writers=1)
    told: list[bytes] = []
    with LmdbStore(tmp_path / "store") as store:
        admission = Admission(store, mesh.genesis)
        admission.write_local(mesh.nodes[0], [mesh.claim(mesh.writers[0], "k", 1)], hlc=1)
        view = View.build(admission)
        service = AttestationService(admission, view, store, mesh.nodes[0], on_new=told.append)
        own = service.create(hlc=2)
        other = AttestationService(admission, view, MemoryStore(), mesh.nodes[1]).create(hlc=2)
        service.remember(other.statement, other.dsse)
        service.remember(other.statement, other.dsse)  # held already: not told again
        assert told == [own.statement.id, other.statement.id]
        reloaded: list[bytes] = []
        AttestationService(admission, view, store, mesh.nodes[0], on_new=reloaded.append)
        assert sorted(reloaded) == sorted(told)
