"""``memmesh demo``: what exists so far, end to end, checking itself as it goes.

Keys made, envelopes signed and hash-chained, group-committed to LMDB, the store reopened, every
envelope verified again, and forgeries refused with their reason codes; then three replicas of
one mesh admit each other's writes, refuse a map-key erasure and a delete, isolate an
equivocation as evidence, and end with one claims digest (``demo_mesh``). The demo exits
non-zero if any step does not behave as shown, so ``make demo`` is also a smoke test.

This is the runtime edge, so it may read the wall clock (for HLC timestamps); the core never does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .crypto import SigningKey, read_key_file, write_key_file
from .demo_mesh import MeshDemoFailed, run_mesh_demo
from .envelope import SIGNATURE_DOMAIN, Envelope, EnvelopeLimits, encode_body, open_envelope, seal
from .errors import KeyFileError, LogConflict, Rejected
from .hlc import HybridClock
from .ids import ZERO_ID, LogId, short_id, tagged_hash
from .store import LmdbStore, WriteBatch

__all__ = ["run_demo"]

_CLAIMS = [
    {"ns": ["research", "acme"], "key": "ceo", "value": "Ada Park", "agent": "scout"},
    {"ns": ["research", "acme"], "key": "hq", "value": "Lisbon", "agent": "scout"},
    {"ns": ["research", "acme"], "key": "hq", "value": "Porto", "agent": "verifier"},
    {"ns": ["plan"], "key": "next", "value": "call the Porto office", "agent": "planner"},
    {"ns": ["plan"], "key": "owner", "value": "planner", "agent": "planner"},
]


class DemoFailed(Exception):
    """A step of the demo did not behave as the demo says it does."""


def run_demo(console: Console, data_dir: Path | None = None) -> None:
    """Run the demo in ``data_dir`` (a fresh temporary directory by default)."""
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="memmesh-demo-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    try:
        _run(console, root)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _run(console: Console, root: Path) -> None:
    console.rule("[bold]Memory Mesh demo: signed, chained, durable envelopes")
    console.print(f"data dir: {root}")

    # 1. Keys.
    key_path = root / "node.key"
    write_key_file(key_path, SigningKey.generate())
    key = read_key_file(key_path)
    mode = key_path.stat().st_mode & 0o777
    console.print(
        f"[green]✓[/] node key written to {key_path.name} (mode {mode:04o}), "
        f"public key {short_id(key.public_key)}"
    )
    loose = root / "loose.key"
    shutil.copy(key_path, loose)
    loose.chmod(0o644)
    try:
        read_key_file(loose)
        raise DemoFailed("a key file readable by others was accepted")
    except KeyFileError as exc:
        console.print(f"[green]✓[/] a copy with mode 0644 is refused: [dim]{exc}[/]")

    # 2. Envelopes, signed and hash-chained. (Mesh genesis and the Yjs claim grammar arrive
    # with the admission layer; the payload here is the claim's JSON, carried opaquely.)
    mesh_id = tagged_hash(b"demo/mesh", b"memmesh demo mesh")
    clock = HybridClock(drift_max_ms=60_000)
    envelopes = []
    prev = ZERO_ID
    for seq, claim in enumerate(_CLAIMS, start=1):
        env = seal(
            key,
            mesh_id=mesh_id,
            epoch=1,
            seq=seq,
            prev=prev,
            hlc=clock.tick(time.time_ns() // 1_000_000),
            payload=json.dumps(claim, sort_keys=True).encode(),
        )
        envelopes.append(env)
        prev = env.id

    # 3. One durable group commit, then close.
    store_dir = root / "store"
    with LmdbStore(store_dir) as store:
        store.commit(WriteBatch(envelopes=envelopes))
    table = Table("seq", "id", "prev", "bytes", "claim", title="group-committed in one fsync")
    for env in envelopes:
        claim = json.loads(env.payload)
        table.add_row(
            str(env.seq),
            short_id(env.id),
            short_id(env.prev),
            str(len(env.raw)),
            f"{'/'.join(claim['ns'])}:{claim['key']} = {claim['value']!r}",
        )
    console.print(table)

    # 4. Reopen and verify everything from the bytes at rest.
    log = LogId(key.public_key, 1)
    with LmdbStore(store_dir) as store:
        head = store.head(log)
        prev = ZERO_ID
        for seq, env_id in store.iter_log(log):
            raw = store.get_envelope(env_id)
            if raw is None:
                raise DemoFailed(f"seq {seq} missing after reopen")
            env = open_envelope(raw, mesh_id=mesh_id)
            if env.prev != prev or env.id != env_id:
                raise DemoFailed(f"chain broken at seq {seq}")
            prev = env.id
    if head is None or head.seq != len(envelopes):
        raise DemoFailed(f"head after reopen is {head}")
    console.print(
        f"[green]✓[/] reopened: head seq {head.seq} ({short_id(head.id)}), "
        f"{head.seq} signatures and the hash chain verified from disk"
    )

    # 5. Forgeries, each refused with a reason code.
    _forgeries(console, key, mesh_id, envelopes, store_dir)
    try:
        run_mesh_demo(console, root / "mesh")
    except MeshDemoFailed as exc:
        raise DemoFailed(str(exc)) from exc
    console.rule("[bold green]demo complete")


def _forgeries(
    console: Console,
    key: SigningKey,
    mesh_id: bytes,
    envelopes: list[Envelope],
    store_dir: Path,
) -> None:
    target = envelopes[2]
    flipped = bytearray(target.raw)
    flipped[-70] ^= 0x01  # a payload byte
    impostor = SigningKey.generate()
    stolen = seal(impostor, mesh_id=mesh_id, epoch=1, seq=1, prev=ZERO_ID, hlc=1, payload=b"fake")
    as_author = stolen.raw[:34] + key.public_key + stolen.raw[66:]  # claims to be our node
    lying_body = encode_body(
        kind=1,
        mesh_id=mesh_id,
        author=key.public_key,
        epoch=1,
        seq=9,
        prev=target.id,
        deps=[],
        hlc=1,
        claims_root=ZERO_ID,
        payload=b"x" * 10,
        payload_len=11,
    )
    lying = lying_body + key.sign(SIGNATURE_DOMAIN, lying_body)
    other_mesh = seal(
        key,
        mesh_id=tagged_hash(b"demo/mesh", b"another mesh"),
        epoch=1,
        seq=1,
        prev=ZERO_ID,
        hlc=1,
        payload=b"replayed",
    )
    cases: list[tuple[str, bytes, str]] = [
        ("one payload byte flipped", bytes(flipped), "bad_signature"),
        ("truncated by 10 bytes", target.raw[:-10], "truncated"),
        ("signed by another key, claims our author", as_author, "bad_signature"),
        ("validly signed, payload length lies", lying, "truncated"),
        ("valid, but for another mesh", other_mesh.raw, "wrong_mesh"),
        ("2 MiB of zeros", bytes(2 << 20), "too_large"),
    ]
    table = Table("forgery", "refused with", title="forged input never reaches the store")
    for label, data, expected in cases:
        try:
            open_envelope(data, mesh_id=mesh_id, limits=EnvelopeLimits())
            raise DemoFailed(f"forgery accepted: {label}")
        except Rejected as exc:
            if exc.reason.value != expected:
                raise DemoFailed(f"{label}: refused as {exc.reason}, expected {expected}") from exc
            table.add_row(label, f"[red]{exc.reason.value}[/]")
    # A validly signed second envelope for a taken seq: the store never reuses a seq.
    fork = seal(
        key,
        mesh_id=mesh_id,
        epoch=1,
        seq=3,
        prev=envelopes[1].id,
        hlc=1,
        payload=b"a different seq 3",
    )
    with LmdbStore(store_dir) as store:
        try:
            store.commit(WriteBatch(envelopes=[fork]))
            raise DemoFailed("the store accepted a second envelope for seq 3")
        except LogConflict:
            table.add_row("our own key signs a different seq 3", "[red]log_conflict[/] (store)")
        if store.get_log_entry(LogId(key.public_key, 1), 3) != envelopes[2].id:
            raise DemoFailed("seq 3 changed")
    console.print(table)
