"""Answers of a pure function, shared by every caller in the process inside one block.

For the simulator, which runs many replicas of a mesh in one process: each replica checks the
same signed bytes again, and checking once is the same run, faster. Outside :meth:`sharing`
nothing is remembered; a node never enters it, so it checks everything it is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["SharedMemo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedMemo(Generic[K, V]):
    """At most ``entries_max`` answers, kept only while :meth:`sharing` is open (then it starts
    over); the caller makes sure the key names everything the answer depends on."""

    def __init__(self, entries_max: int) -> None:
        self.entries_max = entries_max
        self.answers: dict[K, V] | None = None

    def get(self, key: K) -> V | None:
        return None if self.answers is None else self.answers.get(key)

    def put(self, key: K, value: V) -> None:
        answers = self.answers
        if answers is None:
            return
        if len(answers) >= self.entries_max:
            answers.clear()
        answers[key] = value

    @contextlib.contextmanager
    def sharing(self) -> Iterator[None]:
        """Remember answers within this block (nested blocks share the outer one's)."""
        outer = self.answers
        self.answers = {} if outer is None else outer
        try:
            yield
        finally:
            self.answers = outer
