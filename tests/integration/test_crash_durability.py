"""Every acknowledged write survives SIGKILL; no seq is ever reused.

A real writer process (``crash_writer.py``) appends to an LMDB store and acknowledges each
envelope on stdout after its commit returns. We kill it with SIGKILL after a random number of
acknowledgements (so at a random point of its commit loop), reopen the store, and check every
acknowledgement ever made. The number of kills is ``MEMMESH_CRASH_KILLS`` (30 in ``make test``,
1,000 in ``make soak``); the seed is ``MEMMESH_CRASH_SEED`` or random, and is printed on failure.

SIGKILL loses the process, not the OS page cache, so this proves atomicity and ordering of
commits and acknowledgements; fsync against power loss is LMDB's ``sync=True`` (asserted by the
flags test), which a process kill cannot exercise.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from memmesh.envelope import open_envelope
from memmesh.ids import LogId
from memmesh.store import LmdbStore
from memmesh.testing import fixed_mesh_id, seeded_key

WRITER = Path(__file__).with_name("crash_writer.py")


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    kills = int(os.environ.get("MEMMESH_CRASH_KILLS", "30"))
    seed = int(os.environ.get("MEMMESH_CRASH_SEED", str(random.SystemRandom().randrange(1 << 32))))
    rng = random.Random(seed)
    repro = f"MEMMESH_CRASH_SEED={seed} MEMMESH_CRASH_KILLS={kills}"
    path = tmp_path / "store"
    log = LogId(seeded_key("crash-writer").public_key, 1)
    acked: dict[int, bytes] = {}
    verified_to = 0
    prev_id = b""
    for round_no in range(kills):
        acks_before_kill = rng.choice([0, 1, rng.randint(2, 40), rng.randint(40, 400)])
        lines = _run_and_kill(path, rng.randrange(1 << 32), acks_before_kill)
        for line in lines:
            _, seq_text, id_hex = line.split()
            seq, env_id = int(seq_text), bytes.fromhex(id_hex)
            assert acked.get(seq, env_id) == env_id, f"seq {seq} reused (round {round_no}); {repro}"
            acked[seq] = env_id
        with LmdbStore(path, map_size_bytes=1 << 20) as store:
            head = store.head(log)
            top = max(acked, default=0)
            assert head is not None or top == 0, f"round {round_no}: log lost; {repro}"
            assert head is None or head.seq >= top, f"round {round_no}: {head} < {top}; {repro}"
            # Every acknowledged seq holds the acknowledged envelope...
            for seq, env_id in acked.items():
                if seq > verified_to:
                    assert store.get_log_entry(log, seq) == env_id, f"seq {seq} lost; {repro}"
            # ...and the log is whole: contiguous, hash-chained, every envelope intact and signed.
            for seq, env_id in store.iter_log(log, verified_to + 1):
                raw = store.get_log_envelope(log, seq)
                assert raw is not None, f"seq {seq} indexed without its envelope; {repro}"
                env = open_envelope(raw, mesh_id=fixed_mesh_id())
                assert (env.seq, env.id) == (seq, env_id), repro
                assert seq == 1 or env.prev == prev_id, f"chain broken at {seq}; {repro}"
                prev_id = env.id
                verified_to = seq
            assert head is None or verified_to == head.seq, repro
    print(f"{kills} kills, {len(acked)} acknowledged envelopes, log head {verified_to}")
    assert len(acked) > kills, f"too few writes to mean anything: {len(acked)}; {repro}"


def _run_and_kill(path: Path, writer_seed: int, acks_before_kill: int) -> list[str]:
    """Start a writer, SIGKILL it after ``acks_before_kill`` acks, return every complete ACK."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(writer_seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready = proc.stdout.readline()
        assert ready == "READY\n", f"writer failed to start: {ready!r} {proc.stderr.read()}"
        acks: list[str] = []
        while len(acks) < acks_before_kill:
            line = proc.stdout.readline()
            assert line.endswith("\n"), f"writer stopped early: {proc.stderr.read()}"
            acks.append(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # Acks the writer printed before it died are acknowledged too; a torn last line is not.
        acks.extend(line for line in proc.stdout.read().splitlines(keepends=True))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return [line for line in acks if line.endswith("\n") and line.startswith("ACK ")]
