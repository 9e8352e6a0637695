"""Durable storage: the ``Store`` protocol, an in-memory and an LMDB implementation."""

from ._base import Store, WriteBatch
from .lmdb import LmdbStore
from .memory import MemoryDisk, MemoryStore

__all__ = ["LmdbStore", "MemoryDisk", "MemoryStore", "Store", "WriteBatch"]
