"""The sync handshake's proof of key (DESIGN §3): each side signs both nonces and both keys.

Each side sends ``Hello`` (its key, a fresh nonce, its admit chain), then ``Auth``: its signature,
under :data:`AUTH_DOMAIN`, over ``version u8 | mesh id | signer key | signer nonce | peer key |
peer nonce``. A side checks the peer's ``Auth`` with the roles swapped. Both nonces make the proof
fresh for both sides; both keys bind it to this pair, so it cannot be replayed to a third node.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto import SigningKey, verify

__all__ = ["AUTH_DOMAIN", "Transcript"]

AUTH_DOMAIN = b"memmesh/sync-auth/v1\x00"


@dataclass(frozen=True, slots=True)
class Transcript:
    """What ``signer`` signs for one handshake with ``peer``."""

    version: int
    mesh_id: bytes
    signer: bytes
    signer_nonce: bytes
    peer: bytes
    peer_nonce: bytes

    @property
    def message(self) -> bytes:
        return (
            bytes([self.version])
            + self.mesh_id
            + self.signer
            + self.signer_nonce
            + self.peer
            + self.peer_nonce
        )

    def sign(self, key: SigningKey) -> bytes:
        assert key.public_key == self.signer, "a transcript is signed by its signer"
        return key.sign(AUTH_DOMAIN, self.message)

    def verify(self, signature: bytes) -> bool:
        return verify(self.signer, AUTH_DOMAIN, self.message, signature)
