"""One printed seed derives everything: sub-seeds per subsystem, never Python's ``hash()``.

A sub-seed is the first 8 bytes of SHA-256 over the seed and a name, so adding a subsystem or
drawing more numbers in one never shifts the numbers another draws, and the result does not
depend on ``PYTHONHASHSEED`` or the platform.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["SEED_MAX", "derive", "rng_for"]

SEED_MAX = (1 << 64) - 1


def derive(seed: int, name: str) -> int:
    """The sub-seed of subsystem ``name`` under ``seed``."""
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"a seed is an integer in 0..{SEED_MAX}, got {seed}")
    digest = hashlib.sha256(f"memmesh-sim/v1/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rng_for(seed: int, name: str) -> random.Random:
    """A generator of its own for subsystem ``name`` (seeded with an int: stable everywhere)."""
    return random.Random(derive(seed, name))
