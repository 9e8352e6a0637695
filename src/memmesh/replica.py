"""The pycrdt document and guarded integration.

Only payloads that passed the strict grammar reach :meth:`Replica.integrate`, so pycrdt never sees
unsigned or malformed bytes (DESIGN §4 rule 3). Integration still catches ``BaseException``: yrs
panics surface as ``pyo3_runtime.PanicException``, which ``except Exception`` does not catch, and
a panic can leave the document half-applied or poisoned, so after one the replica marks itself
unusable and its owner rebuilds it from the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import pycrdt

from .errors import MemmeshError
from .ydecode import ROOT_NAME

__all__ = ["IntegrationFailed", "Replica"]


class IntegrationFailed(MemmeshError):
    """pycrdt refused or panicked on a payload the grammar accepted (a bug in one of them).
    ``at``: the payload's position in what :meth:`Replica.integrate_many` was given."""

    def __init__(self, message: str, *, at: int = 0) -> None:
        super().__init__(message)
        self.at = at


class Replica:
    """A pycrdt document holding the ``claims`` root map. It never writes through pycrdt."""

    __slots__ = ("_claims", "doc", "poisoned")

    def __init__(self, client_id: int) -> None:
        # The client id is the node's own derived one (DESIGN §4 rule 1); pycrdt never writes with
        # it, because local writes are encoded by ydecode.encode_update and integrated like any.
        self.doc: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc(client_id=client_id)
        self._claims: pycrdt.Map[bytes] = self.doc.get(ROOT_NAME, type=pycrdt.Map)
        self.poisoned = False

    def integrate(self, payload: bytes) -> None:
        self.integrate_many((payload,))

    def integrate_many(self, payloads: Sequence[bytes]) -> None:
        """Integrate ``payloads`` in order in one pycrdt transaction (a transaction costs about
        as much as a small update). ``IntegrationFailed`` names the first one pycrdt refused or
        panicked on (``at``); the document is then poisoned until rebuilt."""
        if self.poisoned:
            raise IntegrationFailed("the document was poisoned by an earlier panic; rebuild it")
        at = 0
        try:
            with self.doc.transaction():
                for at, payload in enumerate(payloads):  # noqa: B007 - read after a failure
                    self.doc.apply_update(payload)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - yrs panics derive from BaseException
            self.poisoned = True
            raise IntegrationFailed(
                f"pycrdt refused an update: {type(exc).__name__}: {exc}", at=at
            ) from None

    def __len__(self) -> int:
        return len(self._claims)

    def get(self, key: str) -> bytes | None:
        value = self._claims.get(key)
        return None if value is None else bytes(value)

    def keys(self) -> list[str]:
        return sorted(self._claims.keys())

    def encode_state(self) -> bytes:
        """The whole document as one Yjs v1 update (loadable by any Yjs implementation)."""
        state: bytes = self.doc.get_update()
        return state

    def state_vector(self) -> bytes:
        vector: bytes = self.doc.get_state()
        return vector
