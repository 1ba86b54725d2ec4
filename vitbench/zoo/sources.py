"""Weight sources: local files, bundled files, https URLs, Google Drive, the Hugging Face hub.

Downloads land in ``VITBENCH_HOME/weights``: they stream into a temporary file, are hashed on the way, and are
renamed into place only once complete and verified, so a partial or wrong download is never used. A source with
no published sha256 is trusted on first use: the sha256 of the first download that loads as a checkpoint is
recorded in ``VITBENCH_HOME/trusted_sha256.json`` and checked on every later use (``zoo show`` prints it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitbench._fs import atomic_write_text
from vitbench.errors import CheckpointError
from vitbench.hashing import file_sha256, sha256_file  # noqa: F401 - sha256_file is part of this module's API
from vitbench.paths import home, package_file, weights_cache

log = logging.getLogger(__name__)

BUNDLED_WEIGHTS = package_file("zoo", "weights")
GDRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
REMOTE_SCHEMES = ("https://", "http://", "gdrive:")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resolved:
    """A checkpoint file on disk and how its hash was established."""

    path: Path
    sha256: str
    trust: str  # "pinned" (sha256 in the entry), "tofu" (recorded on first use), "local" (hashed now)


def cached_sha256(path: Path) -> str:
    """sha256 of ``path`` through the stat cache keyed like git's index (see :mod:`vitbench.hashing`)."""
    return file_sha256(path)


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def local_path(source: str, base_dir: Path) -> Path:
    """Resolve a local or ``bundled:`` source to a path (not checked for existence)."""
    if source.startswith("bundled:"):
        return BUNDLED_WEIGHTS / source.split(":", 1)[1]
    path = Path(source).expanduser()
    return path if path.is_absolute() else base_dir / path


def remote_url(source: str) -> str:
    """The URL to fetch for an https or gdrive source."""
    if source.startswith("gdrive:"):
        base = os.environ.get("VITBENCH_GDRIVE_URL", GDRIVE_URL)
        return base.format(id=urllib.parse.quote(source.split(":", 1)[1]))
    return source


def cache_path(source: str) -> Path:
    """Where a remote source is cached: weights/<hash of the source>/<file name>."""
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = Path(urllib.parse.urlparse(source).path).name if "://" in source else source.split(":", 1)[1]
    return weights_cache() / key / (name or "checkpoint")


# -- trust on first use ---------------------------------------------------------------------------------------

def _trust_file() -> Path:
    return home() / "trusted_sha256.json"


def recorded_sha256(source: str) -> dict | None:
    """The trust-on-first-use record of a source, if one exists."""
    try:
        return json.loads(_trust_file().read_text()).get(source)
    except (OSError, ValueError):
        return None


def record_sha256(source: str, sha256: str, entry: str) -> None:
    """Record a first verified download's sha256 (atomic rewrite of the trust file)."""
    path = _trust_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[source] = {"sha256": sha256, "entry": entry, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


# -- downloads ------------------------------------------------------------------------------------------------

def download(url: str, dest: Path, *, expected_sha256: str | None, validate: Callable[[Path], None] | None = None,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` atomically; return its sha256.

    The file streams into ``dest.partial-<pid>``; it is moved to ``dest`` only when the transfer completed, the
    sha256 matches (when expected) and ``validate`` accepts it. Otherwise the partial file is removed.

    Raises:
        CheckpointError: on a network error, an HTML page instead of a file, a hash mismatch or a failed validation.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "vitbench"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as out:  # noqa: S310
            expected_len = response.headers.get("Content-Length")
            first = True
            for block in iter(lambda: response.read(_CHUNK), b""):
                if first and _looks_like_html(block):
                    raise CheckpointError(
                        f"{url} returned an HTML page instead of a checkpoint (a login or Google Drive confirmation "
                        "page?): download the file by hand and register the local path")
                first = False
                digest.update(block)
                out.write(block)
        if expected_len is not None and partial.stat().st_size != int(expected_len):
            raise CheckpointError(f"download of {url} stopped early ({partial.stat().st_size} of {expected_len} "
                                  "bytes): run the command again")
        sha = digest.hexdigest()
        if expected_sha256 and sha != expected_sha256:
            raise CheckpointError(f"download of {url} has sha256 {sha}, expected {expected_sha256}: the file "
                                  "changed or is corrupt; nothing was kept")
        if validate is not None:
            validate(partial)
        os.replace(partial, dest)
        return sha
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CheckpointError(f"cannot download {url}: {reason} (offline? put the file on disk and point "
                              "weights.source at it)") from None
    finally:
        partial.unlink(missing_ok=True)


def _looks_like_html(block: bytes) -> bool:
    head = block[:512].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def fetch_remote(source: str, *, sha256: str | None, entry: str,
                 validate: Callable[[Path], None] | None = None) -> Resolved:
    """Return a verified local copy of an https/gdrive source, downloading it once."""
    dest = cache_path(source)
    record = recorded_sha256(source)
    expected = sha256 or (record or {}).get("sha256")
    if dest.exists():
        actual = cached_sha256(dest)
        if expected and actual != expected:
            raise CheckpointError(f"cached copy of {source} ({dest}) has sha256 {actual}, expected {expected}: "
                                  "delete it to download again")
    else:
        log.info("downloading %s for %s", source, entry)
        actual = download(remote_url(source), dest, expected_sha256=expected, validate=validate)
    if not expected:
        record_sha256(source, actual, entry)
        log.warning("%s: no sha256 published; recorded %s on first use", entry, actual)
    return Resolved(dest, actual, "pinned" if sha256 else "tofu")


def fetch_hf_hub(source: str, *, sha256: str | None) -> Resolved:
    """Download ``hf-hub:ORG/REPO[/FILE]`` through huggingface_hub (default file: model.safetensors)."""
    spec = source.split(":", 1)[1]
    parts = spec.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"
    try:
        from huggingface_hub import hf_hub_download
        path = Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "not fetched"
        raise CheckpointError(f"cannot fetch {source} from the Hugging Face hub: {type(exc).__name__} "
                              "(offline? download it elsewhere and register the local file)") from None
    actual = cached_sha256(path)
    if sha256 and actual != sha256:
        raise CheckpointError(f"{source} has sha256 {actual}, expected {sha256}")
    return Resolved(path, actual, "pinned" if sha256 else "local")


def resolve_file(source: str, *, sha256: str | None, base_dir: Path, entry: str,
                 validate: Callable[[Path], None] | None = None) -> Resolved:
    """Turn a file source (local, bundled, remote, hub) into a verified file on disk.

    Raises:
        CheckpointError: when the file is missing, cannot be fetched or its sha256 differs from the entry's.
    """
    if is_remote(source):
        return fetch_remote(source, sha256=sha256, entry=entry, validate=validate)
    if source.startswith("hf-hub:"):
        return fetch_hf_hub(source, sha256=sha256)
    path = local_path(source, base_dir)
    if not path.is_file():
        raise CheckpointError(f"{entry}: checkpoint {path} does not exist: fix weights.source or restore the file")
    actual = cached_sha256(path)
    if sha256 and actual != sha256:
        raise CheckpointError(f"{entry}: checkpoint {path} has sha256 {actual}, the zoo entry says {sha256}: "
                              "the file changed; re-register it or restore the original")
    return Resolved(path, actual, "pinned" if sha256 else "local")


def copy_into(src: Path, dest: Path) -> None:
    """Copy a file atomically (used by register/train to place checkpoints)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
