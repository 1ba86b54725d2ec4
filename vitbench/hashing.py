"""Content hashes of files, with a stat cache keyed the way git keys its index.

A cached sha256 is reused only when the file's (device, inode, size, mtime_ns, ctime_ns) are all unchanged:
``cp -p`` and ``rsync -a`` preserve mtime but not ctime or inode, and an in-place rewrite changes ctime, so a
replaced checkpoint or image is always re-hashed. Like git's "racily clean" rule, a hash taken less than
``RACY_SECONDS`` after the file's last change is not cached (a write in the same timestamp tick could follow
unseen). The cache is one SQLite file under ``VITBENCH_HOME``; when it cannot be opened, files are simply hashed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

BLOCK = 1 << 20
RACY_SECONDS = 2.0
HASH_THREADS = 4
_SCHEMA = ("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, "
           "mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT NOT NULL)")

StatKey = tuple[int, int, int, int, int]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _open_cache() -> sqlite3.Connection | None:
    from vitbench.paths import home
    try:
        db = sqlite3.connect(home() / "hashes.sqlite", timeout=30, isolation_level=None)
        db.execute(_SCHEMA)
        return db
    except Exception as exc:  # noqa: BLE001 - a cache must never fail a run (home unwritable, disk full...)
        log.debug("hash cache unavailable (%s); hashing without it", exc)
        return None


def _lookup(db: sqlite3.Connection, keys: dict[str, StatKey]) -> dict[str, str]:
    found: dict[str, str] = {}
    names = list(keys)
    for i in range(0, len(names), 500):
        part = names[i:i + 500]
        rows = db.execute(f"SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256 FROM hashes WHERE path IN "
                          f"({','.join('?' * len(part))})", part).fetchall()
        for path, *key, sha in rows:
            if tuple(key) == keys[path]:
                found[path] = sha
    return found


def _store(db: sqlite3.Connection, rows: list[tuple]) -> None:
    if rows:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?,?)", rows)


def files_sha256(paths: Sequence[Path]) -> list[str]:
    """sha256 of each file, in order; unchanged files (by their full stat key) come from the cache.

    Raises:
        OSError: when a file cannot be read (missing, not permitted).
    """
    resolved = [str(Path(p).resolve()) for p in paths]
    keys = {p: stat_key(os.stat(p)) for p in resolved}
    db = _open_cache()
    try:
        cached = _lookup(db, keys) if db is not None else {}
    except sqlite3.Error:
        cached = {}
    missing = [p for p in dict.fromkeys(resolved) if p not in cached]
    if missing:
        if len(missing) > 100:
            log.info("hashing %d files (once; later runs reuse the hashes while the files are unchanged)",
                     len(missing))
        with ThreadPoolExecutor(HASH_THREADS) as pool:  # hashlib releases the GIL on large reads
            fresh = dict(zip(missing, pool.map(sha256_file, missing), strict=True))
        cached.update(fresh)
        horizon = time.time_ns() - int(RACY_SECONDS * 1e9)
        rows = [(p, *keys[p], sha) for p, sha in fresh.items()
                if keys[p][3] < horizon and keys[p][4] < horizon and stat_key(os.stat(p)) == keys[p]]
        if db is not None:
            try:
                _store(db, rows)
            except sqlite3.Error as exc:
                log.debug("hash cache not updated (%s)", exc)
    if db is not None:
        db.close()
    return [cached[p] for p in resolved]


def file_sha256(path: Path) -> str:
    """sha256 of one file through the stat cache (see :func:`files_sha256`)."""
    return files_sha256([path])[0]
