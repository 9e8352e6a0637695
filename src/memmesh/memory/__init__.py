"""The memory model: claim types and validity, the derived view with its conflicts, and read
receipts (DESIGN §5). Pure: it reads admission's records and never does I/O."""

from .receipts import Receipt, frontier_hash
from .types import Invalid
from .view import Conflict, Entry, Subject, View, describe

__all__ = [
    "Conflict",
    "Entry",
    "Invalid",
    "Receipt",
    "Subject",
    "View",
    "describe",
    "frontier_hash",
]
