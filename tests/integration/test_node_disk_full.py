"""A real node whose disk fills up: writers get a clean ``StorageFull`` (HTTP 507), reads go on,
writes resume once space is freed (same process, no restart), and every acknowledged write is
there after the node stops. The data dir sits on a small tmpfs; where mounting is not allowed
the test is skipped (the store-level test in ``test_lmdb_store.py`` covers the same refusal)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from memmesh.admission import Admission
from memmesh.membership import decode_genesis
from memmesh.runtime.swarm import SWARM_FILE, swarm_down, swarm_up
from memmesh.store import LmdbStore

from .test_lmdb_store import _small_tmpfs

VALUE = "x" * 4000  # a claim of about 4 KB


def _put(api: str, key: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"namespace": "fill", "key": key, "value": VALUE}).encode()
    request = urllib.request.Request(api + "/v1/store/items", data=body, method="PUT")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(api: str, key: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{api}/v1/store/items?namespace=fill&key={key}") as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_a_full_disk_refuses_writes_cleanly_and_they_resume_when_space_returns(
    tmp_path: Path,
) -> None:
    with _small_tmpfs(tmp_path / "mnt", "6m") as mnt:
        swarm = mnt / "swarm"
        node = swarm_up(1, swarm, extra_config={"log_format": "json"})["nodes"][0]
        api = node["api"]
        ballast = mnt / "ballast"
        acked: dict[str, str] = {}
        try:
            ballast.write_bytes(os.urandom(1 << 20))  # the operator will free it later
            refusal: dict[str, Any] = {}
            for i in range(5000):
                status, answer = _put(api, f"k{i}")
                if status == 201:
                    acked[f"k{i}"] = answer["claim_id"]
                    continue
                refusal = {"status": status, **answer}
                break
            assert refusal, "the disk never filled"
            assert refusal["status"] == 507 and refusal["error"] == "StorageFull", refusal
            assert "disk full" in refusal["detail"] or "map" in refusal["detail"]
            assert len(acked) > 100

            # Reads go on, and the node still answers as ready.
            for key in (min(acked), max(acked)):
                assert _get(api, key)["claim_id"] == acked[key]
            with urllib.request.urlopen(api + "/readyz") as response:
                assert response.status == 200

            # Space comes back: the same process writes again, continuing its log.
            ballast.unlink()
            for i in range(5000, 5020):
                status, answer = _put(api, f"k{i}")
                assert status == 201, answer
                acked[f"k{i}"] = answer["claim_id"]
        finally:
            if (swarm / SWARM_FILE).exists():
                swarm_down(swarm, grace_s=10)

        # Stopped: every acknowledged claim is in the store, and nothing else of "fill".
        data_dir = Path(node["data_dir"])
        genesis = decode_genesis((data_dir / "genesis.bin").read_bytes())
        with LmdbStore(data_dir / "store") as store:
            admission = Admission.open(store, genesis)
            held = {c.key: c.id.hex() for c in admission.live_claims() if c.namespace == ("fill",)}
        assert held == acked
