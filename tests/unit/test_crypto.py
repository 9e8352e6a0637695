"""Ed25519 signatures with domain separation, and key files (docs/PROTOCOL.md §2.3 and §4).

Tests run as root, so permission-denied cases cannot be produced with chmod and are not tested.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from memmesh import crypto
from memmesh.crypto import (
    PUBLIC_KEY_BYTES,
    SEED_BYTES,
    SIGNATURE_BYTES,
    SigningKey,
    read_key_file,
    verify,
    write_key_file,
)
from memmesh.errors import KeyFileError, LocalError

SEED = bytes(range(32))
KEY = SigningKey(SEED)
DOMAIN = b"memmesh/test/v1\x00"
MESSAGE = b"attack at dawn"
# The order of the Ed25519 group.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- signatures ---------------------------------------------------------------------------------


def test_sign_and_verify() -> None:
    signature = KEY.sign(DOMAIN, MESSAGE)
    assert len(signature) == SIGNATURE_BYTES
    assert len(KEY.public_key) == PUBLIC_KEY_BYTES
    assert verify(KEY.public_key, DOMAIN, MESSAGE, signature) is True
    assert KEY.sign(DOMAIN, MESSAGE) == signature  # deterministic


def test_signature_is_over_domain_then_message() -> None:
    signature = KEY.sign(DOMAIN, MESSAGE)
    # The signed bytes are exactly domain + message.
    assert verify(KEY.public_key, b"", DOMAIN + MESSAGE, signature) is True
    assert verify(KEY.public_key, DOMAIN[:-1], DOMAIN[-1:] + MESSAGE, signature) is True


@pytest.mark.parametrize(
    "other_domain",
    [b"", b"memmesh/test/v2\x00", b"memmesh/test/v1", b"memmesh/envelope/v1\x00", DOMAIN + b"x"],
)
def test_signature_under_one_domain_does_not_verify_under_another(other_domain: bytes) -> None:
    signature = KEY.sign(DOMAIN, MESSAGE)
    assert verify(KEY.public_key, other_domain, MESSAGE, signature) is False
    assert verify(KEY.public_key, other_domain, MESSAGE, KEY.sign(other_domain, MESSAGE)) is True


def test_wrong_message_or_key_does_not_verify() -> None:
    signature = KEY.sign(DOMAIN, MESSAGE)
    assert verify(KEY.public_key, DOMAIN, MESSAGE + b"!", signature) is False
    other = SigningKey(bytes([7] * 32))
    assert verify(other.public_key, DOMAIN, MESSAGE, signature) is False


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        (b"", bytes(64)),
        (bytes(31), bytes(64)),
        (bytes(33), bytes(64)),
        (KEY.public_key, b""),
        (KEY.public_key, bytes(63)),
        (KEY.public_key, bytes(65)),
        (KEY.public_key[:-1], KEY.sign(DOMAIN, MESSAGE)),
        (KEY.public_key + b"\x00", KEY.sign(DOMAIN, MESSAGE)),
        (KEY.public_key, KEY.sign(DOMAIN, MESSAGE)[:-1]),
        (KEY.public_key, KEY.sign(DOMAIN, MESSAGE) + b"\x00"),
        (KEY.public_key, bytes(64)),
        (KEY.public_key, b"\xff" * 64),
    ],
)
def test_malformed_keys_and_signatures_are_just_invalid(
    public_key: bytes, signature: bytes
) -> None:
    assert verify(public_key, DOMAIN, MESSAGE, signature) is False


IDENTITY_POINT = (1).to_bytes(32, "little")  # y = 1: the neutral element, order 1


@pytest.mark.parametrize(
    "public_key",
    [
        bytes(32),  # y = 0: a point of order 4
        IDENTITY_POINT,
        b"\xff" * 32,  # not a canonical encoding
        b"\xec" + b"\xff" * 30 + b"\x7f",  # y = p - 1: a point of order 2
    ],
)
def test_small_order_and_invalid_public_keys_verify_nothing(public_key: bytes) -> None:
    # With a small-order key A, the signature R = identity, S = 0 satisfies the verification
    # equation [S]B = R + [k]A for any message; strict verification must refuse it.
    forged = IDENTITY_POINT + bytes(32)
    for message in (b"", MESSAGE):
        assert verify(public_key, DOMAIN, message, forged) is False
        assert verify(public_key, DOMAIN, message, bytes(64)) is False
        assert verify(public_key, DOMAIN, message, KEY.sign(DOMAIN, message)) is False


def test_non_canonical_s_is_refused() -> None:
    """S + L is the same scalar mod L: accepting it would make signatures malleable."""
    signature = KEY.sign(DOMAIN, MESSAGE)
    s = int.from_bytes(signature[32:], "little")
    assert s < GROUP_ORDER
    malleated = signature[:32] + (s + GROUP_ORDER).to_bytes(32, "little")
    assert malleated != signature
    assert verify(KEY.public_key, DOMAIN, MESSAGE, malleated) is False


def test_signing_key_from_seed() -> None:
    assert KEY.seed == SEED
    assert SigningKey(SEED).public_key == KEY.public_key
    assert SigningKey(bytes([7] * 32)).public_key != KEY.public_key
    generated = SigningKey.generate()
    assert len(generated.seed) == SEED_BYTES
    assert SigningKey(generated.seed).public_key == generated.public_key
    assert KEY.public_key[:6].hex() in repr(KEY)
    assert SEED.hex() not in repr(KEY)
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="32 bytes"):
            SigningKey(bad)


# --- key files ----------------------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def test_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    assert _mode(path) == 0o600
    assert path.read_bytes() == base64.b64encode(SEED) + b"\n"
    assert len(path.read_bytes()) == 45
    loaded = read_key_file(path)
    assert loaded.seed == SEED
    assert loaded.public_key == KEY.public_key


def test_key_file_is_0600_even_with_a_permissive_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    assert _mode(path) == 0o600
    assert read_key_file(path).seed == SEED


def test_key_file_write_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    before = path.read_bytes()
    other = SigningKey(bytes([7] * 32))
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path, other)
    assert path.read_bytes() == before
    write_key_file(path, other, overwrite=True)
    assert read_key_file(path).seed == other.seed


def test_overwrite_tightens_the_mode_of_an_existing_file(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"x" * 100)
    path.chmod(0o644)
    write_key_file(path, KEY, overwrite=True)
    assert _mode(path) == 0o600
    assert path.read_bytes() == base64.b64encode(SEED) + b"\n"  # truncated, not appended to
    assert read_key_file(path).seed == SEED


def test_write_into_a_missing_directory_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        write_key_file(tmp_path / "missing" / "node.key", KEY)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o601, 0o610, 0o700])
def test_read_refuses_loose_modes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    path.chmod(mode)
    if mode & 0o077:
        with pytest.raises(KeyFileError, match="chmod 600") as info:
            read_key_file(path)
        assert isinstance(info.value, LocalError)
        assert str(path) in str(info.value)
    else:
        assert read_key_file(path).seed == SEED  # owner bits are the owner's business


def test_read_only_for_owner_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    path.chmod(0o400)
    assert read_key_file(path).seed == SEED


def _key_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def test_read_accepts_a_file_without_the_trailing_newline(tmp_path: Path) -> None:
    path = _key_file(tmp_path, base64.b64encode(SEED))
    assert read_key_file(path).seed == SEED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds 0 bytes"),
        (b"\n", "holds 0 bytes"),
        (base64.b64encode(SEED) + b"\n" + base64.b64encode(SEED) + b"\n", "one line"),
        (base64.b64encode(SEED) + b"\n\n", "one line"),
        (base64.b64encode(SEED) + b"\r\n", "one line"),
        (b"not base64 at all!!\n", "base64"),
        (base64.b64encode(SEED).rstrip(b"=") + b"\n", "base64"),  # missing padding
        (b" " + base64.b64encode(SEED) + b"\n", "base64"),
        (base64.b64encode(SEED) + b" \n", "base64"),
        (base64.urlsafe_b64encode(b"\xfb" * 32) + b"\n", "base64"),  # wrong alphabet
        (base64.b64encode(bytes(31)) + b"\n", "holds 31 bytes"),
        (base64.b64encode(bytes(33)) + b"\n", "holds 33 bytes"),
        (base64.b64encode(bytes(64)) + b"\n", "holds 64 bytes"),
        (b"A" * 300 + b"\n", "too large"),
        (base64.b64encode(bytes(200)) + b"\n", "too large"),
    ],
)
def test_read_refuses_malformed_content(tmp_path: Path, content: bytes, message: str) -> None:
    path = _key_file(tmp_path, content)
    with pytest.raises(KeyFileError, match=message):
        read_key_file(path)


def test_read_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        read_key_file(tmp_path / "absent.key")


def test_read_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "node.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key_file(directory)


def test_shared_verification_remembers_answers_only_inside_its_block() -> None:
    key = SigningKey(b"\x07" * 32)
    good = key.sign(b"d", b"message")
    bad = bytes([good[0] ^ 1]) + good[1:]
    with crypto.shared_verification():
        assert verify(key.public_key, b"d", b"message", good)
        assert not verify(key.public_key, b"d", b"message", bad)
        assert crypto._shared.answers == {
            (key.public_key, good, b"d", b"message"): True,
            (key.public_key, bad, b"d", b"message"): False,
        }
        # Remembered answers are the same answers; another message is checked afresh.
        assert verify(key.public_key, b"d", b"message", good)
        assert not verify(key.public_key, b"d", b"message", bad)
        assert not verify(key.public_key, b"d", b"other", good)
    assert crypto._shared.answers is None
    assert verify(key.public_key, b"d", b"message", good)
    assert not verify(key.public_key, b"d", b"message", bad)
