"""Offline verification of an attestation: :func:`verify_attestation`.

**Without a bundle**: the DSSE JSON and the statement decode strictly; the statement's signer
signed the PAE (and, when ``pubkey`` is given, the signer *is* that key); every other signature
(a witness co-signature) is valid; the chain fields are sane (``prev`` is the zero id exactly
for seq 1); the top root is the root over the listed log entries; the counts agree with each
other.

**With a bundle**, additionally: the bundle carries the same statement and a genesis of the
statement's mesh; its envelopes are exactly the attested set (each log's chain from seq 1 to its
head, found by following ``prev`` from the head, plus the evidence ids, nothing else); every
envelope's and every claim's signature verifies (timed separately, see below); replaying them
from nothing into ``Admission(MemoryStore(), genesis)`` (:mod:`memmesh.attest.replay`) accepts
every one; the replayed frontier, every log root, the top root, the evidence, the claims digest
and the counts equal the statement's. The resolution digest is recomputed from a
:class:`~memmesh.memory.view.View` of the replay when every rule the statement names is
installed here at the same code version (the report says whether it was).

**Reason codes** (``Failure.code``; ``<log>`` is ``<author hex>@<epoch>``, ids are full hex):

- unusable input (exit code 2): ``malformed:dsse``, ``malformed:payload_type``,
  ``malformed:statement``, ``malformed:pubkey``, ``malformed:bundle``, ``malformed:bundle_dsse``,
  ``malformed:genesis``, ``malformed:envelope:<index>``, ``malformed:duplicate:<id>``;
- invalid (exit code 1): ``signature`` (no valid signature by the statement's signer),
  ``signer_mismatch`` (``pubkey`` is not the statement's signer), ``witness_signature:<key>``,
  ``chain``, ``top_root``, ``counts:<name>``, ``bundle_statement`` (the bundle attests something
  else), ``mesh`` (the genesis is another mesh's), ``closure:<log>`` (the bundle lacks part of
  a log's chain), ``evidence_missing:<id>``, ``closure_extra:<id>`` (an envelope outside the
  attested set), ``envelope_signature:<id>``, ``envelope_payload:<id>`` (the payload breaks the
  grammar), ``claim:<claim id>`` (a claim that does not decode), ``claim_signature:<claim id>``,
  ``replay:<id>`` (admission refused or never admitted it), ``frontier:<log>``,
  ``log_root:<log>``, ``evidence``, ``claims_digest``, ``policies`` (the rules that decided
  conflicts differ from the statement's list), ``resolution_digest``.

**Timing**: ``signature_seconds`` is the time spent in Ed25519 verification (the DSSE, every
envelope, every claim) in the signature pass; ``total_seconds`` is the whole call. When that
pass found every signature good, the replay tells admission so (``signatures_checked``) and
runs every other check without verifying them again; otherwise it verifies them as for any
remote envelope. This module is the only one of the package that reads a (monotonic) timer, and
only for the report.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..admission import Admission, claims_digest
from ..claims import Claim, decode_claim, signature_ok
from ..collector import fewer_collections
from ..envelope import Envelope, decode_envelope, verify_envelope
from ..errors import Rejected
from ..ids import ZERO_ID
from ..membership import Genesis, decode_genesis
from ..memory.view import View
from ..merkle import merkle_root
from ..policy import DEFAULT_REGISTRY, RuleLoadError
from ..ydecode import GrammarItem, client_id, decode_update
from .build import resolution_of
from .bundle import Bundle, decode_bundle
from .dsse import PAYLOAD_TYPE, DsseEnvelope, decode_dsse
from .errors import BundleError, DsseError, StatementError
from .replay import replay
from .statement import LogEntry, PolicyVersion, Statement, decode_statement, log_label, top_root_of

__all__ = ["EXIT_CODES", "Failure", "Report", "Verdict", "policies_match", "verify_attestation"]


class Verdict(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNUSABLE = "unusable"


EXIT_CODES = {Verdict.VALID: 0, Verdict.INVALID: 1, Verdict.UNUSABLE: 2}


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    verdict: Verdict
    failures: tuple[Failure, ...]
    statement: Statement | None
    witnesses: tuple[bytes, ...]
    """Keys whose co-signatures verified (the signer's own signature is not a witness)."""
    bundle_checked: bool
    resolution_checked: bool
    resolution_note: str
    envelopes_verified: int
    claims_verified: int
    signature_seconds: float
    total_seconds: float

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.failures]

    @property
    def attestation_id(self) -> bytes | None:
        return None if self.statement is None else self.statement.id


def policies_match(policies: tuple[PolicyVersion, ...]) -> tuple[bool, str]:
    """Whether every rule named is installed here at the same code version (0: not installed)."""
    for policy in policies:
        try:
            impl = DEFAULT_REGISTRY.get(policy.name)
        except RuleLoadError:
            impl = None
        local = 0 if impl is None else impl.version
        if local != policy.version:
            return False, f"rule {policy.name!r} is version {local} here, {policy.version} there"
    return True, "every rule that decided a conflict is installed here at the same version"


@dataclass(slots=True)
class _Run:
    timer: Callable[[], float]
    failures: list[Failure] = field(default_factory=list)
    statement: Statement | None = None
    witnesses: list[bytes] = field(default_factory=list)
    bundle_checked: bool = False
    resolution_checked: bool = False
    resolution_note: str = "no bundle: nothing to recompute"
    envelopes: int = 0
    claims: int = 0
    signature_seconds: float = 0.0

    def fail(self, code: str, detail: str = "") -> None:
        if all(f.code != code for f in self.failures):
            self.failures.append(Failure(code, detail))

    def timed(self, check: Callable[[], bool]) -> bool:
        start = self.timer()
        try:
            return check()
        finally:
            self.signature_seconds += self.timer() - start


def verify_attestation(
    dsse_bytes: bytes,
    *,
    bundle: bytes | None,
    pubkey: bytes | None,
    timer: Callable[[], float] = time.perf_counter,
) -> Report:
    """Check an attestation offline; see the module doc for what is checked and the codes."""
    started = timer()
    run = _Run(timer)
    with fewer_collections():  # a large bundle's objects all live to the end of the check
        _verify(run, dsse_bytes, bundle, pubkey)
    if any(f.code.startswith("malformed:") for f in run.failures):
        verdict = Verdict.UNUSABLE
    elif run.failures:
        verdict = Verdict.INVALID
    else:
        verdict = Verdict.VALID
    return Report(
        verdict=verdict,
        failures=tuple(run.failures),
        statement=run.statement,
        witnesses=tuple(run.witnesses),
        bundle_checked=run.bundle_checked,
        resolution_checked=run.resolution_checked,
        resolution_note=run.resolution_note,
        envelopes_verified=run.envelopes,
        claims_verified=run.claims,
        signature_seconds=run.signature_seconds,
        total_seconds=timer() - started,
    )


def _verify(run: _Run, dsse_bytes: bytes, bundle: bytes | None, pubkey: bytes | None) -> None:
    try:
        envelope = decode_dsse(dsse_bytes)
    except DsseError as exc:
        run.fail("malformed:dsse", str(exc))
        return
    if envelope.payload_type != PAYLOAD_TYPE:
        run.fail("malformed:payload_type", f"payloadType {envelope.payload_type[:80]!r}")
        return
    try:
        statement = decode_statement(envelope.payload)
    except StatementError as exc:
        run.fail("malformed:statement", str(exc))
        return
    run.statement = statement
    if pubkey is not None and len(pubkey) != 32:
        run.fail("malformed:pubkey", f"a public key is 32 bytes, not {len(pubkey)}")
        return
    _check_signatures(run, envelope, statement, pubkey)
    _check_statement(run, statement)
    if bundle is not None:
        _check_bundle(run, envelope, statement, bundle)


def _check_signatures(
    run: _Run, envelope: DsseEnvelope, statement: Statement, pubkey: bytes | None
) -> None:
    own = envelope.signature_by(statement.signer)
    if own is None or not run.timed(lambda: envelope.valid(own)):
        run.fail("signature", "no valid signature by the statement's signer")
    if pubkey is not None and pubkey != statement.signer:
        run.fail(
            "signer_mismatch",
            f"the statement names signer {statement.signer.hex()}, not {pubkey.hex()}",
        )
    for sig in envelope.signatures:
        if sig.keyid == statement.signer:
            continue
        if run.timed(functools.partial(envelope.valid, sig)):
            run.witnesses.append(sig.keyid)
        else:
            run.fail(f"witness_signature:{sig.keyid.hex()}", "co-signature does not verify")


def _check_statement(run: _Run, statement: Statement) -> None:
    if (statement.seq == 1) != (statement.prev == ZERO_ID):
        run.fail("chain", "prev must be the zero id exactly for seq 1")
    if top_root_of(statement.logs) != statement.top_root:
        run.fail("top_root", "the top root is not the root over the listed logs")
    counts = statement.counts
    on_logs = sum(e.size for e in statement.logs)
    if counts.envelopes != on_logs + len(statement.evidence):
        run.fail("counts:envelopes", "envelopes is not the logs' sizes plus the evidence")
    if counts.live_claims > counts.claims:
        run.fail("counts:live_claims", "more live claims than claims")
    if counts.conflicts_open > counts.subjects:
        run.fail("counts:conflicts_open", "more open conflicts than subjects")


def _check_bundle(run: _Run, envelope: DsseEnvelope, statement: Statement, data: bytes) -> None:
    try:
        bundle = decode_bundle(data)
    except BundleError as exc:
        run.fail("malformed:bundle", str(exc))
        return
    try:
        carried = decode_dsse(bundle.dsse)
    except DsseError as exc:
        run.fail("malformed:bundle_dsse", str(exc))
        return
    if (carried.payload, carried.payload_type) != (envelope.payload, envelope.payload_type):
        run.fail("bundle_statement", "the bundle carries another attestation")
    try:
        genesis = decode_genesis(bundle.genesis)
    except Rejected as exc:
        run.fail("malformed:genesis", str(exc))
        return
    if genesis.mesh_id != statement.mesh_id:
        run.fail("mesh", "the bundle's genesis founds another mesh")
        return
    envelopes = _decode_envelopes(run, bundle)
    if envelopes is None:
        return
    run.bundle_checked = True
    on_log = _closure(run, statement, envelopes)
    decoded = _check_envelope_signatures(run, statement, envelopes)
    if on_log is None:
        run.resolution_note = "the bundle does not hold the attested set: nothing replayed"
        return
    _check_replay(run, statement, genesis, envelopes, on_log, decoded=decoded)


def _decode_envelopes(run: _Run, bundle: Bundle) -> dict[bytes, Envelope] | None:
    out: dict[bytes, Envelope] = {}
    for index, raw in enumerate(bundle.envelopes):
        try:
            env = decode_envelope(raw)
        except Rejected as exc:
            run.fail(f"malformed:envelope:{index}", str(exc))
            continue
        if env.id in out:
            run.fail(f"malformed:duplicate:{env.id.hex()}", "the bundle holds it twice")
        out[env.id] = env
    return None if run.failures and _malformed(run) else out


def _malformed(run: _Run) -> bool:
    return any(f.code.startswith("malformed:") for f in run.failures)


def _closure(
    run: _Run, statement: Statement, envelopes: dict[bytes, Envelope]
) -> set[bytes] | None:
    """The ids on their logs (each log's chain back from its head); None if incomplete."""
    on_log: set[bytes] = set()
    complete = True
    for entry in statement.logs:
        env_id = entry.head
        for seq in range(entry.size, 0, -1):
            env = envelopes.get(env_id)
            if env is None or env.log != entry.log or env.seq != seq:
                run.fail(f"closure:{log_label(entry.log)}", f"seq {seq} is missing")
                complete = False
                break
            on_log.add(env_id)
            env_id = env.prev
    for env_id in statement.evidence:
        if env_id not in envelopes:
            run.fail(f"evidence_missing:{env_id.hex()}", "an evidence envelope is missing")
            complete = False
    named = on_log | set(statement.evidence)
    for env_id in sorted(envelopes):
        if env_id not in named:
            run.fail(f"closure_extra:{env_id.hex()}", "outside the attested set")
            complete = False
    return on_log if complete else None


def _check_envelope_signatures(
    run: _Run, statement: Statement, envelopes: dict[bytes, Envelope]
) -> dict[bytes, tuple[list[GrammarItem], list[Claim]]]:
    """Every envelope's and claim's signature (timed); the payloads decoded on the way, by
    envelope id, for the replay (those whose every claim decoded)."""
    decoded: dict[bytes, tuple[list[GrammarItem], list[Claim]]] = {}
    for env in envelopes.values():
        run.envelopes += 1
        if not run.timed(functools.partial(_envelope_ok, env)):
            run.fail(f"envelope_signature:{env.id.hex()}", "not signed by its author")
        try:
            items = decode_update(
                env.payload, client=client_id(env.author, env.epoch), start_clock=None
            )
        except Rejected as exc:
            run.fail(f"envelope_payload:{env.id.hex()}", str(exc))
            continue
        claims: list[Claim] = []
        for item in items:
            try:
                claim = decode_claim(
                    item.value,
                    mesh_id=statement.mesh_id,
                    verify_signature=False,
                    claim_id=item.claim_id,  # the grammar has just hashed it
                )
            except Rejected as exc:
                run.fail(f"claim:{item.claim_id.hex()}", str(exc))
                continue
            claims.append(claim)
            run.claims += 1
            if not run.timed(functools.partial(signature_ok, claim)):
                run.fail(f"claim_signature:{claim.id.hex()}", "not signed by its agent")
        if len(claims) == len(items):
            decoded[env.id] = (items, claims)
    return decoded


def _envelope_ok(env: Envelope) -> bool:
    try:
        verify_envelope(env)
    except Rejected:
        return False
    return True


def _check_replay(
    run: _Run,
    statement: Statement,
    genesis: Genesis,
    envelopes: dict[bytes, Envelope],
    on_log: set[bytes],
    *,
    decoded: dict[bytes, tuple[list[GrammarItem], list[Claim]]],
) -> None:
    # Every signature was verified in the timed pass above; replay then checks everything
    # else, and only when that pass found no bad signature is admission told to skip them
    # (and given the payloads that pass decoded, so none is decoded twice).
    signed = not any(
        f.code.startswith(("envelope_signature:", "claim_signature:")) for f in run.failures
    )
    result = replay(
        genesis, list(envelopes.values()), on_log, signatures_checked=signed, decoded=decoded
    )
    for env_id, outcome in result.refused:
        run.fail(f"replay:{env_id.hex()}", f"{outcome.status}: {outcome.reason}: {outcome.detail}")
    for env_id in result.unadmitted:
        run.fail(f"replay:{env_id.hex()}", "never admitted (its causal past or admit is missing)")
    admission = result.admission
    _check_logs(run, statement, admission)
    evidence = tuple(sorted(env_id for env_id, r in admission.records.items() if r.side))
    if evidence != statement.evidence:
        run.fail("evidence", "the replay keeps other envelopes off their logs")
    live = admission.live_claims()  # once: the digest and the count both need it
    if claims_digest(claim.id for claim in live) != statement.claims_digest:
        run.fail("claims_digest", "the live claims differ")
    records = admission.records
    view = View.build(admission)
    recomputed = {
        "envelopes": len(records),
        "claims": sum(len(r.claims) for r in records.values()),
        "live_claims": len(live),
        "subjects": len(view.subjects),
    }
    matched, note = policies_match(statement.policies)
    if matched:
        resolution = resolution_of(view)
        recomputed["conflicts_open"] = resolution.conflicts_open
        if resolution.policies != statement.policies:
            run.fail("policies", "other rules decided the conflicts")
        if resolution.digest != statement.resolution_digest:
            run.fail("resolution_digest", "the resolved view differs")
    run.resolution_checked = matched
    run.resolution_note = note
    stated = statement.counts.as_dict()
    for name, value in recomputed.items():
        if stated[name] != value:
            run.fail(f"counts:{name}", f"statement says {stated[name]}, replay gives {value}")


def _check_logs(run: _Run, statement: Statement, admission: Admission) -> None:
    replayed = dict(admission.frontier())
    entries: list[LogEntry] = []
    for entry in statement.logs:
        head = replayed.get(entry.log)
        if head is None or (head.seq, head.id) != (entry.size, entry.head):
            run.fail(f"frontier:{log_label(entry.log)}", "the replayed head differs")
        ids = admission.logs.get(entry.log, [])
        root = merkle_root(ids)
        if root != entry.root:
            run.fail(f"log_root:{log_label(entry.log)}", "the log's root differs")
        if ids:
            entries.append(LogEntry(entry.author, entry.epoch, len(ids), ids[-1], root))
    stated = {entry.log for entry in statement.logs}
    for log in sorted(set(replayed) - stated):
        run.fail(f"frontier:{log_label(log)}", "the replay holds a log not attested")
    if top_root_of(entries) != statement.top_root:
        run.fail("top_root", "the recomputed top root differs")
