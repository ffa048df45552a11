"""Content-keyed cache directories shared by threads and processes.

Every entry is built in a private temp directory and ``os.replace``d into place, so a
directory that exists under its final name is always complete. A per-key ``fcntl`` lock
makes concurrent preparers of the same key wait for one build instead of duplicating it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

_HASH_CHUNK = 1024 * 1024


def digest_of(*parts: str) -> str:
    """A stable sha256 over several strings (NUL-separated so parts cannot run together)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; separate opens conflict even within one process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``final`` and rename it into place on success (caller holds the lock)."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached_dir(cache_dir: Path, kind: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return ``(cache_dir/kind/key, was_cached)``, calling ``build(tmp_dir)`` once if it is missing."""
    final = cache_dir / kind / key
    if not final.is_dir():
        with file_lock(cache_dir / "locks" / f"{kind}-{key}.lock"):
            if not final.is_dir():
                with _building(final) as tmp:
                    build(tmp)
                return final, False
    with contextlib.suppress(OSError):
        os.utime(final)  # a last-used time for whoever prunes the cache later
    return final, True


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a local file, remembered by (device, inode, size, mtime, ctime) to skip rehashing."""
    st = path.stat()
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    memo = cache_dir / "digests" / f"{digest_of(str(path.resolve()))}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(memo.read_text())
        if saved["stamp"] == stamp:
            return str(saved["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
        os.replace(tmp, memo)
    return digest
