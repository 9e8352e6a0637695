"""``memmesh demo``: a customer-success workflow on a local swarm of four node processes.

Four agents, each beside its own node: **intake** (node0), **analysis** (node1), **escalation**
(node2) and **contract** (node3). The swarm starts split in two islands ({intake, analysis} and
{escalation, contract}); agents write facts with provenance; analysis and contract write
contradicting renewal dates for the same contract while they cannot see each other; the islands
join, every node lists the same conflict and the policy settles it the same way, with its
explanation; escalation reads the settled value, records the read's receipt and writes a decision
citing it; an auditor has contract's node attest (the three others co-sign), exports the bundle
and a proof of the decision, the swarm stops, and a separate process verifies it all offline.
The demo ends with the four operating signals of every node.

Every step checks what it claims (``DemoFailed`` otherwise), so ``make demo`` is also an
end-to-end test. The artefacts stay in the output folder: the attestation, the bundle, the
decision's proof, the signals, the swarm's data dirs and a README saying how to check them.

This is the runtime edge: it reads the wall clock and talks to real processes over loopback.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .runtime.swarm import SWARM_FILE, swarm_down, swarm_up

__all__ = ["DemoFailed", "run_demo"]

ROLES = ("intake", "analysis", "escalation", "contract")
NS = "cs.acme"
CONTRACT_NS = "cs.acme.contract"
WAIT_S = 30.0


class DemoFailed(Exception):
    """A step of the demo did not behave as the demo says it does."""


def run_demo(console: Console, out_dir: Path | None = None) -> Path:
    """Run the story; its artefacts stay in ``out_dir`` (default ``./memmesh-demo/run-<UTC>``).
    Returns the folder."""
    if out_dir is None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("run-%Y%m%dT%H%M%SZ")
        out_dir = Path.cwd() / "memmesh-demo" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise DemoFailed(f"{out_dir} is not empty: give the demo a fresh folder")
    started = time.monotonic()
    swarm = out_dir / "swarm"
    console.rule("[bold]Memory Mesh: a customer-success swarm")
    console.print(f"artefacts: {out_dir}")
    nodes = swarm_up(4, swarm, no_peers=True)["nodes"]
    try:
        story = _Story(console, nodes, out_dir)
        story.run()
    finally:
        if (swarm / SWARM_FILE).exists():
            swarm_down(swarm, grace_s=10)
    console.print("[green]✓[/] the swarm is down: every node process has stopped")
    _verify_offline(console, out_dir, story)
    _readme(out_dir, story)
    console.rule(f"[bold green]demo complete in {time.monotonic() - started:.1f} s")
    return out_dir


class _Story:
    def __init__(self, console: Console, nodes: list[dict[str, Any]], out: Path) -> None:
        self.console, self.nodes, self.out = console, nodes, out
        self.api = {role: node["api"] for role, node in zip(ROLES, nodes, strict=True)}
        self.claims: dict[str, str] = {}
        self.attestation_id = ""
        self.signer = nodes[3]["pubkey"]

    def say(self, text: str) -> None:
        self.console.print(text)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise DemoFailed(what)
        self.say(f"[green]✓[/] {what}")

    def run(self) -> None:
        table = Table("agent", "node", "API", "node key", title="four agents, four nodes")
        for role, node in zip(ROLES, self.nodes, strict=True):
            table.add_row(role, node["name"], node["api"], node["pubkey"][:16])
        self.console.print(table)
        self._islands()
        self._facts()
        self._contradiction()
        self._heal()
        self._decision()
        self._audit()
        self._signals()

    # -- the steps ------------------------------------------------------------------------------

    def _islands(self) -> None:
        self.console.rule("1. two islands")
        self._connect("intake", "analysis")
        self._connect("escalation", "contract")
        self._wait(
            lambda: self._active("intake") == 1 and self._active("contract") == 1,
            "both islands connected",
        )
        self.check(True, "{intake, analysis} and {escalation, contract} cannot see each other")

    def _facts(self) -> None:
        self.console.rule("2. facts, with where they came from")
        customer = self._put(
            "intake",
            NS,
            "customer",
            {"name": "Acme Corp", "plan": "enterprise", "seats": 120},
            source="crm:account/4411",
        )
        self._put(
            "intake",
            NS,
            "ticket",
            {"id": "T-8812", "subject": "pricing question before renewal"},
            source="helpdesk:T-8812",
            derived_from=[customer],
        )
        usage = self._put(
            "analysis",
            NS,
            "usage",
            {"active_seats": 71, "trend_30d": "-40%"},
            type="observation",
            source="analytics:usage-dashboard",
            derived_from=[customer],
        )
        self.claims["usage"] = usage
        self._put(
            "escalation",
            NS,
            "owner",
            {"account_manager": "Sam Lee"},
            source="crm:account/4411/owner",
        )

    def _contradiction(self) -> None:
        self.console.rule("3. two agents disagree, apart")
        self.claims["crm_date"] = self._put(
            "analysis", CONTRACT_NS, "renewal_date", "2027-01-31", source="crm:contract-fields"
        )
        time.sleep(0.01)  # the PDF is read a moment later: the later claim, for lww
        self.claims["pdf_date"] = self._put(
            "contract",
            CONTRACT_NS,
            "renewal_date",
            "2026-12-31",
            source="contract-pdf:MSA-2024-117 §9.2",
        )
        seen = [self._get(role, CONTRACT_NS, "renewal_date")["value"] for role in ROLES[1::2]]
        told = "analysis reads 2027-01-31, contract reads 2026-12-31: neither knows"
        self.check(seen == ["2027-01-31", "2026-12-31"], told)

    def _heal(self) -> None:
        self.console.rule("4. the islands join; the policy settles it, the same everywhere")
        self._connect("analysis", "escalation")
        self._wait(self._all_in_sync, "every node holds every envelope")
        self._wait(
            lambda: all(len(self._conflicts(r)) == 1 for r in ROLES),
            "every node lists the conflict",
        )
        listed = [self._conflicts(role)[0] for role in ROLES]
        first = listed[0]
        same = all(
            (c["id"], c["decision"], [x["claim_id"] for x in c["candidates"]])
            == (first["id"], first["decision"], [x["claim_id"] for x in first["candidates"]])
            for c in listed
        )
        self.check(same, f"all four nodes list conflict {first['id'][:16]} with the same decision")
        table = Table("candidate", "value", "agent", "source", title="the conflict")
        for candidate in first["candidates"]:
            agent = candidate["agent"]
            role = next(
                (r for r, n in zip(ROLES, self.nodes, strict=True) if n["agent"] == agent),
                agent[:12],
            )
            table.add_row(
                candidate["claim_id"][:16],
                json.dumps(candidate["value"]),
                role,
                candidate.get("source") or "",
            )
        self.console.print(table)
        decision = first["decision"]
        why = decision["explanation"].get("why", json.dumps(decision["explanation"]))
        self.say(f"policy [bold]{decision['rule']}[/] v{decision['version']}: {decision['status']}")
        self.say(f"  why: {why}")
        values = {self._get(role, CONTRACT_NS, "renewal_date")["value"] for role in ROLES}
        self.check(values == {"2026-12-31"}, "every agent now reads 2026-12-31 (the later claim)")

    def _decision(self) -> None:
        self.console.rule("5. a decision that cites what it read")
        read = self._get("escalation", CONTRACT_NS, "renewal_date")
        receipt = read["receipt"]
        recorded = self._call(
            "escalation", "POST", "/v1/receipts", {"receipt": receipt, "replicate": True}
        )
        told = f"escalation's read receipt {receipt['id'][:16]} is recorded for every replica"
        self.check(recorded["id"] == receipt["id"], told)
        self.claims["decision"] = self._put(
            "escalation",
            NS,
            "next_step",
            {
                "action": "escalate to the account manager",
                "renewal": read["value"],
                "why": "renewal in five weeks with usage down 40%",
            },
            type="decision",
            based_on=[receipt["id"]],
            derived_from=[self.claims["usage"]],
        )
        self._wait(self._all_in_sync, "the decision reached every node")

    def _audit(self) -> None:
        self.console.rule("6. the auditor: an attestation, co-signed, exported")
        witnesses = [self.api[r] for r in ROLES[:3]]
        made = self._call("contract", "POST", "/v1/attestations", {"witnesses": witnesses})
        self.attestation_id = made["id"]
        self.check(
            len(made["witnesses"]) == 3 and not made["refusals"],
            f"contract's node attests ({made['id'][:16]}, seq {made['seq']}); "
            "the three other nodes checked their own replicas and co-signed",
        )
        att = self.out / "attestation.json"
        att.write_text(json.dumps(made["dsse"], indent=2))
        bundle = _fetch(self.api["contract"] + f"/v1/attestations/{made['id']}/bundle")
        (self.out / "bundle.bin").write_bytes(bundle)
        path = f"/v1/attestations/{made['id']}/proof?claim={self.claims['decision']}"
        proof = _fetch(self.api["contract"] + path)
        (self.out / "decision.proof").write_bytes(proof)
        counts = made["counts"]
        self.say(
            f"attestation.json, bundle.bin ({len(bundle)} bytes: {counts['envelopes']} "
            f"envelopes, {counts['live_claims']} live claims) and decision.proof "
            f"({len(proof)} bytes) written"
        )

    def _signals(self) -> None:
        self.console.rule("7. the four operating signals")
        table = Table(
            "node",
            "provenance",
            "conflicts (resolved / open)",
            "decisions traceable",
            "incidents per read",
            title="per node",
        )
        signals = {}
        for role in ROLES:
            s = self._call(role, "GET", "/v1/state")["signals"]
            signals[role] = s
            table.add_row(
                role,
                f"{_pct(s['provenance_share'])} of {s['entries']}",
                f"{s['conflicts_detected']} ({s['conflicts_resolved']} / {s['conflicts_open']})",
                f"{_pct(s['traceable_share'])} of {s['decisions']}",
                f"{_pct(s['incidents_per_read'])} of {s['reads']}",
            )
        self.console.print(table)
        (self.out / "signals.json").write_text(json.dumps(signals, indent=2))
        escalation = signals["escalation"]
        self.check(
            escalation["decisions_traceable"] == escalation["decisions"] == 1,
            "the one decision is traceable to the read it rested on",
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, role: str, method: str, path: str, body: Any = None) -> Any:
        return _call(self.api[role], method, path, body)

    def _put(self, role: str, ns: str, key: str, value: Any, **fields: Any) -> str:
        written = self._call(
            role, "PUT", "/v1/store/items", {"namespace": ns, "key": key, "value": value, **fields}
        )
        where = f"{ns}:{key}"
        extra = f"  [dim]source {fields['source']}[/]" if fields.get("source") else ""
        self.say(f"[cyan]{role:>10}[/] wrote {where} = {json.dumps(value)}{extra}")
        return str(written["claim_id"])

    def _get(self, role: str, ns: str, key: str) -> dict[str, Any]:
        return self._call(role, "GET", f"/v1/store/items?namespace={ns}&key={key}")  # type: ignore[no-any-return]

    def _conflicts(self, role: str) -> list[dict[str, Any]]:
        return self._call(role, "GET", "/v1/conflicts")["conflicts"]  # type: ignore[no-any-return]

    def _connect(self, a: str, b: str) -> None:
        gossip = self.nodes[ROLES.index(b)]["gossip"]
        self._call(a, "POST", "/v1/peers", {"url": gossip})

    def _active(self, role: str) -> int:
        return int(self._call(role, "GET", "/v1/state")["active_peers"])

    def _all_in_sync(self) -> bool:
        states = [self._call(role, "GET", "/v1/state") for role in ROLES]
        return (
            len({json.dumps(s["frontier"]) for s in states}) == 1
            and len({s["claims_digest"] for s in states}) == 1
        )

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise DemoFailed(f"timed out after {WAIT_S:.0f} s waiting until {what}")


def _verify_offline(console: Console, out: Path, story: _Story) -> None:
    console.rule("8. verified offline, by a process that runs no node")
    command = [
        sys.executable,
        "-m",
        "memmesh",
        "verify",
        str(out / "attestation.json"),
        "--bundle",
        str(out / "bundle.bin"),
        "--proof",
        str(out / "decision.proof"),
        "--pubkey",
        story.signer,
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    if done.returncode != 0:
        raise DemoFailed(f"offline verification failed: {done.stdout}{done.stderr}")
    report = json.loads(done.stdout)
    ok = report["valid"] and report["proof"]["valid"] and len(report["witnesses"]) == 3
    if not ok:
        raise DemoFailed(f"offline verification: {report}")
    console.print(
        f"[green]✓[/] memmesh verify: valid. {report['envelopes_verified']} envelopes and "
        f"{report['claims_verified']} claims re-verified, replayed from nothing, every Merkle "
        f"root and the claims digest recomputed; resolution "
        f"{'checked' if report['resolution_checked'] else 'not checked'}; 3 witnesses"
    )
    console.print(
        f"[green]✓[/] the decision {story.claims['decision'][:16]} is in the attested state "
        f"(its proof checks against the attestation alone): who knew what, and when, is proven"
    )


def _readme(out: Path, story: _Story) -> None:
    (out / "README.txt").write_text(
        f"""Memory Mesh demo artefacts

attestation.json  the attestation (DSSE, signed by node {story.signer[:16]}, co-signed by 3)
bundle.bin        every envelope it covers, with the mesh genesis
decision.proof    the inclusion proof of the escalation decision {story.claims["decision"]}
signals.json      the four operating signals of each node at the end
swarm/            the four nodes' data dirs (stopped)

Check it again, with no node running:

  memmesh verify attestation.json --bundle bundle.bin --proof decision.proof
"""
    )


def _call(base: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise DemoFailed(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
        return bytes(response.read())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
