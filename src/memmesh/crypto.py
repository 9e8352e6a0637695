"""Ed25519 keys (PyNaCl), domain-separated signatures, and key files.

A key file holds one line: the base64 of the 32-byte Ed25519 seed, then a newline. It is created
with mode 0600 and refused when group or others may read or write it, the way ``ssh`` treats
private keys. Exceptions from PyNaCl never leave this module: callers see ``KeyFileError`` or a
boolean from :func:`verify`.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import stat
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .errors import KeyFileError
from .files import write_file_atomically
from .ids import short_id
from .memo import SharedMemo

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "SigningKey",
    "read_key_file",
    "shared_verification",
    "verify",
    "write_key_file",
]

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_KEY_FILE_BYTES_MAX = 256
"""A valid key file is 45 bytes; anything much larger is not a key file, so we stop reading."""


class SigningKey:
    """An Ed25519 private key. Every signature is over ``domain + message``."""

    __slots__ = ("_key", "_secret", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._secret: bytes = secret
        self.public_key: bytes = public

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(SEED_BYTES))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """Return the 64-byte signature of ``domain + message``."""
        # The binding directly: PyNaCl's SigningKey.sign wraps the same call in a SignedMessage.
        signed: bytes = nacl.bindings.crypto_sign(domain + message, self._secret)
        return signed[:SIGNATURE_BYTES]

    def __repr__(self) -> str:
        return f"SigningKey(public={short_id(self.public_key)})"


def verify(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``domain + message``.

    Any malformed key or signature is simply invalid; libsodium's strict checks (canonical S,
    small-order keys refused) make signatures non-malleable.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    key = (public_key, signature, domain, message)
    known = _shared.get(key)
    if known is not None:
        return known
    try:
        # The binding directly (crypto_sign_open, libsodium's strict checks): PyNaCl's VerifyKey
        # would only add a key object and one more copy of the message.
        nacl.bindings.crypto_sign_open(signature + domain + message, public_key)
        valid = True
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        valid = False
    _shared.put(key, valid)
    return valid


_shared: SharedMemo[tuple[bytes, bytes, bytes, bytes], bool] = SharedMemo(1 << 17)


def shared_verification() -> contextlib.AbstractContextManager[None]:
    """Within this block :func:`verify` remembers its answers (at most 131,072, then it starts
    over): for the simulator (:mod:`memmesh.memo`). A node never uses it: it checks each
    signature it is given."""
    return _shared.sharing()


def write_key_file(path: Path, key: SigningKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600, atomically and durably.

    The key goes to a temporary file in the same directory first, which is fsynced and then
    linked into place (refusing an existing file) or, with ``overwrite``, renamed over it: a crash
    leaves either the old file or the new one, never a torn key.
    """
    try:
        write_file_atomically(
            path, binascii.b2a_base64(key.seed, newline=True), mode=0o600, overwrite=overwrite
        )
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write key file: {exc.strerror}") from None


def read_key_file(path: Path) -> SigningKey:
    """Read a key file, refusing modes that let group or others read or write it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        loose = stat.S_IMODE(info.st_mode) & 0o077
        if loose:
            raise KeyFileError(
                f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users access this "
                f"private key; run `chmod 600 {path}`"
            )
        data = os.read(fd, _KEY_FILE_BYTES_MAX + 1)
    finally:
        os.close(fd)
    return SigningKey(_parse_key_line(path, data))


def _parse_key_line(path: Path, data: bytes) -> bytes:
    if len(data) > _KEY_FILE_BYTES_MAX:
        raise KeyFileError(f"{path}: too large to be a key file")
    body = data[:-1] if data.endswith(b"\n") else data
    if b"\n" in body or b"\r" in body:
        raise KeyFileError(f"{path}: a key file holds exactly one line")
    try:
        seed = binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        raise KeyFileError(f"{path}: not valid base64") from None
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{path}: holds {len(seed)} bytes, an Ed25519 seed is {SEED_BYTES}")
    return seed
