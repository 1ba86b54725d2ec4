"""Writing files safely: atomic replacement that keeps the file's mode, and an advisory lock per file.

Readers never see half a file: text goes to a temporary sibling that is renamed over the target. The target keeps
its existing permission bits (a new file gets the umask default, as ``open`` would give it), never the 0600 of a
temporary file. ``locked(path)`` serialises read-modify-write cycles on one file across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask_mode() -> int:
    """The mode a new regular file gets from ``open`` under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` (resolved through symlinks) with ``data`` atomically, keeping its mode."""
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = _umask_mode()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock for ``path`` (on a hidden ``.NAME.lock`` sibling that stays in place).

    The lock file is separate from the target because the target is replaced by rename: a lock on its inode would
    not stop a process that opens the new file.
    """
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, _umask_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
