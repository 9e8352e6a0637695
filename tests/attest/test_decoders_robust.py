"""Every attestation decoder, fed mutations of valid inputs: it returns or raises its own typed
error with a reason code, nothing else, and quickly. (The subprocess fuzz harness with a memory
limit and a committed corpus covers the older decoders; these formats join it in the hardening
issue.)"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.attest import (
    AttestationBuilder,
    AttestationError,
    decode_bundle,
    decode_consistency,
    decode_dsse,
    decode_proof,
    decode_statement,
    make_bundle,
    prove_claim,
    prove_consistency,
    verify_attestation,
    verify_proof,
)
from memmesh.testing import scaled

from .conftest import NS, Net


def _samples() -> dict[str, bytes]:
    net = Net.make("robust", nodes=2, writers=2)
    for i in range(6):
        net.write(i % 2, [net.mesh.claim(net.mesh.writers[i % 2], f"k{i}", {"n": i}, namespace=NS)])
    net.sync()
    node = net.nodes[0]
    builder = AttestationBuilder(node.admission, node.view)
    key = net.mesh.nodes[0]
    first, dsse = builder.attest(key, hlc=1 << 16, previous=None)
    claim = next(iter(node.admission.records.values())).claims[0].id
    proof = prove_claim(builder, first, claim).to_bytes()
    net.write(0, [net.mesh.claim(net.mesh.writers[0], "later", 1, namespace=NS)])
    second, _ = builder.attest(key, hlc=2 << 16, previous=first)
    return {
        "dsse": dsse,
        "statement": first.to_bytes(),
        "bundle": make_bundle(node.admission, dsse),
        "proof": proof,
        "consistency": prove_consistency(builder, first, second).to_bytes(),
    }


SAMPLES = _samples()
SAMPLES["proof_bytes"] = SAMPLES["proof"]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, value in edits:
        if not out:
            out.append(value)
            continue
        i = at % len(out)
        if kind == 0:
            out[i] ^= 1 << (value % 8)
        elif kind == 1:
            out[i] = value
        elif kind == 2:
            del out[i:]
        elif kind == 3:
            out.insert(i, value)
        else:
            del out[i]
    return bytes(out)


_edits = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 1 << 30), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def _statement_then_proof(data: bytes) -> None:
    statement = decode_statement(SAMPLES["statement"])
    verify_proof(statement, data)


DECODERS = {
    "dsse": decode_dsse,
    "statement": decode_statement,
    "bundle": decode_bundle,
    "proof": _statement_then_proof,
    "proof_bytes": decode_proof,
    "consistency": decode_consistency,
}


@settings(max_examples=scaled(300), deadline=None)
@given(name=st.sampled_from(sorted(DECODERS)), edits=_edits)
def test_mutated_inputs_are_refused_with_a_code_or_accepted(
    name: str, edits: list[tuple[int, int, int]]
) -> None:
    data = _mutate(SAMPLES[name], edits)
    started = time.perf_counter()
    try:
        DECODERS[name](data)
    except AttestationError as exc:
        assert exc.code and isinstance(exc.code, str)
    assert time.perf_counter() - started < 1.0


@settings(max_examples=scaled(100), deadline=None)
@given(edits=_edits, with_bundle=st.booleans())
def test_the_verifier_reports_and_never_raises(
    edits: list[tuple[int, int, int]], with_bundle: bool
) -> None:
    """Whatever bytes it is given, ``verify_attestation`` answers with a verdict."""
    target = "bundle" if with_bundle else "dsse"
    data = _mutate(SAMPLES[target], edits)
    if with_bundle:
        report = verify_attestation(SAMPLES["dsse"], bundle=data, pubkey=None)
    else:
        report = verify_attestation(data, bundle=None, pubkey=None)
    if data == SAMPLES[target]:
        assert report.ok
    else:
        assert report.verdict.value in ("valid", "invalid", "unusable")
        assert report.ok or report.failures
