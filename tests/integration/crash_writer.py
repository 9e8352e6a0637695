"""A writer process for the crash test: appends to one log until it is killed.

Usage: python crash_writer.py DATA_DIR SEED. Prints ``READY`` once the store is open, then one
``ACK <seq> <id hex>`` line per envelope, each only after the commit that holds it returned.
Batches of 1-8 envelopes exercise group commit; payload sizes vary so pages split differently.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from memmesh.ids import LogId
from memmesh.store import LmdbStore, WriteBatch
from memmesh.testing import LogWriter, fixed_mesh_id, seeded_key

ENVELOPES_MAX = 200_000
"""A bound so a writer that is never killed (a broken test) still stops by itself."""


def main() -> None:
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    store = LmdbStore(path, map_size_bytes=1 << 20)  # small: map growth happens under the kills
    key = seeded_key("crash-writer")
    log_writer = LogWriter(key, fixed_mesh_id(), head=store.head(LogId(key.public_key, 1)))
    out = sys.stdout
    out.write("READY\n")
    out.flush()
    written = 0
    while written < ENVELOPES_MAX:
        batch = [
            log_writer.next(os.urandom(rng.randint(1, 3000))) for _ in range(rng.randint(1, 8))
        ]
        store.commit(WriteBatch(envelopes=batch, meta={"last_batch": str(batch[-1].seq).encode()}))
        out.write("".join(f"ACK {env.seq} {env.id.hex()}\n" for env in batch))
        out.flush()
        written += len(batch)


if __name__ == "__main__":
    main()
