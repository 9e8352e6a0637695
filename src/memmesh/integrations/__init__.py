"""Adapters that let agent frameworks use a Memory Mesh node as their memory.

- :mod:`memmesh.integrations.langgraph`: :class:`~memmesh.integrations.langgraph.MeshStore`, a
  LangGraph ``BaseStore`` backed by one node's local API (needs the ``langgraph`` extra).

Nothing here is imported eagerly: each adapter imports its framework only when it is used.
"""

from __future__ import annotations

__all__: list[str] = []
