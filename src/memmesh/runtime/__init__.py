"""The runtime edge (DESIGN §2): asyncio, aiohttp websockets, LMDB; the only layer doing I/O."""

from .node import NodeRuntime, WriteRefused, read_admit_chain, write_admit_chain

__all__ = ["NodeRuntime", "WriteRefused", "read_admit_chain", "write_admit_chain"]
