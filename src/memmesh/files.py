"""Writing small files atomically and durably (key files, the genesis, ``memmesh.toml``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_file_atomically"]


def write_file_atomically(
    path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = False
) -> None:
    """Put ``data`` at ``path`` with ``mode``: a crash leaves the old file or the new one whole.

    The bytes go to a temporary file in the same directory first, which is fsynced and then
    linked into place (``FileExistsError`` if ``path`` exists) or, with ``overwrite``, renamed
    over it; the directory is fsynced last. Other failures raise ``OSError``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails if the path exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
