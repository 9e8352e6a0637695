"""Attestations on real node processes, checked by a verifier that runs no node.

One node attests (a peer co-signs), the bundle is exported with the CLI, every node is stopped,
and ``memmesh verify`` in a fresh process finds it valid; one changed byte anywhere (the
statement, a signature, any envelope of the bundle) makes it invalid with the reason naming what
failed; a statement signed by another key is invalid; a second statement of the same seq is
split-view evidence. ``as_of`` an attestation reads exactly what reads returned then, after many
later writes and conflicts; a claim's inclusion proof verifies against the attestation alone.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh.attest import decode_bundle, decode_dsse, decode_statement, encode_bundle
from memmesh.attest.bundle import Bundle
from memmesh.attest.dsse import sign_payload
from memmesh.crypto import read_key_file
from memmesh.runtime.swarm import SWARM_FILE, swarm_down, swarm_up

from .test_memory_api import call, wait_until

NS = "deals.acme"


def memmesh(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter (so ``verify`` shares nothing with any node)."""
    return subprocess.run(
        [sys.executable, "-m", "memmesh", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def verify(*args: str) -> tuple[int, dict[str, Any]]:
    done = memmesh("verify", *args, "--json")
    assert done.stdout.strip().startswith("{"), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory)["nodes"]
    try:
        yield nodes, directory
    finally:
        if (directory / SWARM_FILE).exists():  # the test may have stopped it already
            swarm_down(directory, grace_s=5)


def _put(api: str, key: str, value: object) -> dict[str, Any]:
    return call(api, "/v1/store/items", "PUT", {"namespace": NS, "key": key, "value": value})  # type: ignore[no-any-return]


def _same_everywhere(apis: list[str], count: int) -> None:
    wait_until(
        lambda: all(
            len(call(api, f"/v1/store/items?namespace={NS}")["items"]) == count for api in apis
        ),
        20,
        f"{count} items on every node",
    )


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def test_attest_export_stop_and_verify_offline(
    swarm: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    nodes, directory = swarm
    a, b = nodes[0]["api"], nodes[1]["api"]
    for i in range(6):
        _put(a if i % 2 else b, f"k{i}", {"n": i})
    _same_everywhere([a, b], 6)

    att, bundle = tmp_path / "att.json", tmp_path / "bundle.bin"
    done = memmesh("attest", "--node", a, "--witness", b, "-o", str(att), "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["witnesses"] == [nodes[1]["pubkey"]] and made["refusals"] == {}
    done = memmesh("export", "--attestation", str(att), "-o", str(bundle), "--node", a)
    assert done.returncode == 0, done.stderr
    # Written a part at a time: a HEAD gets the length and no body, and the same connection
    # then serves the bundle again, byte for byte.
    url = f"{a}/v1/attestations/{made['id']}/bundle"
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(a).netloc, timeout=30)
    try:
        connection.request("HEAD", urllib.parse.urlsplit(url).path)
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b""
        assert int(head.headers["Content-Length"]) == len(bundle.read_bytes())
        connection.request("GET", urllib.parse.urlsplit(url).path)
        again = connection.getresponse()
        assert again.status == 200 and again.read() == bundle.read_bytes()
    finally:
        connection.close()

    # A second statement with the same seq, signed by the same node key: split-view evidence.
    statement = decode_statement(decode_dsse(att.read_bytes()).payload)
    node_key = read_key_file(Path(nodes[0]["data_dir"]) / "node.key")
    payload = json.loads(statement.to_bytes())
    payload["hlc"][1] += 1
    forged = decode_statement(json.dumps(payload, separators=(",", ":")).encode())
    other = sign_payload(forged.to_bytes(), node_key).to_json()
    answer = call(b, "/v1/attestations/verify", "POST", {"dsse": json.loads(other)})
    assert answer["valid"] and [e["reason"] for e in answer["evidence"]] == ["same_seq"]
    listed = call(b, "/v1/attestations")["evidence"]
    assert {listed[0]["first"], listed[0]["second"]} == {statement.id.hex(), forged.id.hex()}

    swarm_down(directory, grace_s=5)  # every node stops: what follows needs none

    code, report = verify(str(att), "--bundle", str(bundle), "--pubkey", nodes[0]["pubkey"])
    assert (code, report["verdict"], report["failures"]) == (0, "valid", [])
    assert report["bundle_checked"] and report["witnesses"] == [nodes[1]["pubkey"]]
    assert report["claims_verified"] == 6

    dsse = json.loads(att.read_text())
    raw_payload = base64.b64decode(dsse["payload"])
    # One byte of the payload: a hex digit of the claims digest, replaced by another hex digit
    # so it still decodes (flipping a bit of 'a' or 'f' would not: 1 run in 8 failed so).
    at = raw_payload.index(b'"claims_digest":"') + len(b'"claims_digest":"')
    digit = b"1" if raw_payload[at : at + 1] == b"0" else b"0"
    changed_payload = raw_payload[:at] + digit + raw_payload[at + 1 :]
    changed = dict(dsse, payload=base64.b64encode(changed_payload).decode())
    (tmp_path / "payload.json").write_text(json.dumps(changed))
    code, report = verify(str(tmp_path / "payload.json"), "--bundle", str(bundle))
    assert code == 1 and "signature" in [f["code"] for f in report["failures"]]

    # One byte of the signature.
    sig = base64.b64decode(dsse["signatures"][0]["sig"])
    signatures = [dict(dsse["signatures"][0], sig=base64.b64encode(_flip(sig, 10)).decode())]
    (tmp_path / "sig.json").write_text(json.dumps(dict(dsse, signatures=signatures)))
    code, report = verify(str(tmp_path / "sig.json"))
    assert code == 1 and "signature" in [f["code"] for f in report["failures"]]

    # The right signature, but checked against another key than the one expected.
    code, report = verify(str(att), "--pubkey", nodes[1]["pubkey"])
    assert code == 1 and "signer_mismatch" in [f["code"] for f in report["failures"]]

    # A statement naming node1 as signer, signed with node0's key.
    payload = json.loads(statement.to_bytes())
    payload["signer"] = nodes[1]["pubkey"]
    wrong = decode_statement(json.dumps(payload, separators=(",", ":")).encode())
    (tmp_path / "wrong.json").write_bytes(sign_payload(wrong.to_bytes(), node_key).to_json())
    code, report = verify(str(tmp_path / "wrong.json"))
    assert code == 1 and report["failures"], report

    # One byte of any envelope of the bundle: each is found, and named.
    parsed = decode_bundle(bundle.read_bytes())
    for index in range(len(parsed.envelopes)):
        envelopes = list(parsed.envelopes)
        envelopes[index] = _flip(envelopes[index], len(envelopes[index]) // 2)
        damaged = tmp_path / f"damaged{index}.bin"
        damaged.write_bytes(encode_bundle(Bundle(parsed.dsse, parsed.genesis, tuple(envelopes))))
        code, report = verify(str(att), "--bundle", str(damaged))
        assert code in (1, 2) and report["failures"], (index, report)
        assert report["verdict"] != "valid"


def test_as_of_reads_what_reads_returned_then_and_proofs_verify_alone(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "swarm"
    nodes = swarm_up(2, directory, no_peers=True)["nodes"]
    try:
        a, b = nodes[0]["api"], nodes[1]["api"]
        for i in range(5):
            _put(a, f"k{i}", i)
        _put(b, "k0", "other")  # apart: a conflict once they connect
        call(a, "/v1/peers", "POST", {"url": nodes[1]["gossip"]})
        wait_until(lambda: len(call(a, "/v1/conflicts")["conflicts"]) == 1, 20, "the conflict")
        before = {
            key: call(a, f"/v1/store/items?namespace={NS}&key={key}") for key in ("k0", "k1", "k4")
        }
        listing = call(a, f"/v1/store/items?namespace={NS}")
        att = call(a, "/v1/attestations", "POST", {})

        # Many later writes and conflicts: updates, new keys, another conflict, a deletion.
        for i in range(5, 25):
            _put(a if i % 2 else b, f"k{i}", i)
        _put(a, "k1", "changed")
        call(a, "/v1/store/items", "DELETE", {"namespace": NS, "key": "k4"})
        call(a, "/v1/peers", "DELETE", {"url": nodes[1]["gossip"]})
        _put(a, "k2", "left")
        _put(b, "k2", "right")

        for key, then in before.items():
            now = call(a, f"/v1/store/items?namespace={NS}&key={key}&as_of={att['id']}")
            assert now == then, key
        again = call(a, f"/v1/store/items?namespace={NS}&as_of={att['id']}")
        assert again == listing
        assert before["k0"]["conflict"] is not None  # the conflict is part of what is compared
        assert call(a, f"/v1/store/items?namespace={NS}&key=k1")["value"] == "changed"

        # The CLI reads as of the attestation file the same way.
        att_file = tmp_path / "att.json"
        att_file.write_text(json.dumps(att["dsse"]))
        done = memmesh("get", NS, "k1", "--as-of", str(att_file), "--api", a, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["value"] == before["k1"]["value"]

        # A claim's proof, made by the node, checked with the attestation alone.
        claim = before["k1"]["claim_id"]
        proof = tmp_path / "k1.proof"
        done = memmesh("prove", "--attestation", str(att_file), "--claim", claim,
                       "-o", str(proof), "--node", a)  # fmt: skip
        assert done.returncode == 0, done.stderr
        code, report = verify(str(att_file), "--proof", str(proof))
        assert code == 0 and report["proof"]["claim"] == claim
        flipped = tmp_path / "flipped.proof"
        flipped.write_bytes(_flip(proof.read_bytes(), len(proof.read_bytes()) - 5))
        code, report = verify(str(att_file), "--proof", str(flipped))
        assert code == 1 and not report["proof"]["valid"]
    finally:
        swarm_down(directory, grace_s=5)
