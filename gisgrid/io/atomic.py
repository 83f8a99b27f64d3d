"""Atomic writes, staged folders and the run lock: a killed run never leaves half a file or half a folder.

A writer writes a temporary file in the target folder and renames it over the
target, so the last good file stays until the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gisgrid._errors import InputError

__all__ = ["WINDOWS_RESERVED", "atomic_path", "atomic_write_bytes", "atomic_write_text", "cut_utf8", "file_digest",
           "file_lock", "no_space", "publish_staged", "remove_stale_staging", "safe_filename", "staged_folder",
           "staging_folder", "write_with"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers such as GDAL want to create the file themselves
    try:
        yield tmp_path
        if tmp_path.exists():
            with tmp_path.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result over ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (input fingerprints in the run history)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Names Windows refuses for a file whatever its extension (command centers run Windows desktops).
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})


def cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 without splitting a character (file names count bytes)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def safe_filename(name: str, *, max_bytes: int = 120) -> str:
    """A file name for ``name`` that keeps Chinese text but no path separators, control characters or reserved names.

    The name is cut to ``max_bytes`` of UTF-8 (a 255-byte limit counts a 4-byte character four times); a name
    that had to change gets a short hash of the original, so two long names that share a start stay apart.
    """
    cleaned = "".join("_" if (ch in '<>:"/\\|?*' or ord(ch) < 32 or ord(ch) == 127) else ch for ch in str(name))
    cleaned = cut_utf8(cleaned.strip(" ."), max_bytes).strip(" .")
    if cleaned.split(".")[0].upper() in WINDOWS_RESERVED:
        cleaned = f"_{cleaned}"
    cleaned = cleaned or "unnamed"
    digest = hashlib.sha1(str(name).encode()).hexdigest()[:6]
    return f"{cleaned}_{digest}" if cleaned != str(name) else cleaned


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) so two runs never write at once.

    The lock file is removed on release, so no empty file stays behind. A waiter that wins the lock on a file
    that was removed meanwhile opens the new one and waits again, so two holders never coexist.
    """
    import fcntl
    import time

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        fh = p.open("a+")
        try:
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        msg = f"another gisgrid run has held the lock for over {timeout_s:.0f} s."
                        raise InputError(msg, path=p,
                                         fix="wait for it to finish, or remove a stale lock file") from None
                    logger.info("waiting for another run to release %s", p)
                    time.sleep(0.2)
            try:
                same = os.fstat(fh.fileno()).st_ino == p.stat().st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it as we waited: lock the file that is there now
                continue
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    p.unlink()
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return
        finally:
            fh.close()


def remove_stale_staging(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove folders a killed run left behind by :func:`staged_folder`; call it only while holding the lock."""
    import shutil

    removed: list[Path] = []
    base = Path(folder)
    if not base.is_dir():
        return removed
    for p in base.iterdir():
        if p.is_dir() and p.name.startswith(".") and p.name.endswith((".tmp", ".old")):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            logger.info("removed %s, left by an interrupted run", p)
    return removed


#: Words of an error that ran out of space, from libraries that do not keep the errno (GDAL, SQLite).
_NO_SPACE_WORDS = ("no space left", "disk is full", "file too large", "quota exceeded")


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is a write refused for want of space.

    A full disk (ENOSPC), a file-size limit (EFBIG) or a quota (EDQUOT), also when a library (GDAL,
    SQLite, zipfile) wrapped it in an error of its own.
    """
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if any(w in str(seen).lower() for w in _NO_SPACE_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def staging_folder(parent: str | os.PathLike[str], name: str) -> Path:
    """A new empty folder ``parent/.NAME.XXXX.tmp`` (umask permissions) to write into before publishing.

    :func:`remove_stale_staging` removes it if the run is killed; :func:`publish_staged` moves its files out.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


def publish_staged(staging: str | os.PathLike[str], target: str | os.PathLike[str],
                   written: list[Path] | None = None) -> list[Path]:
    """Move every file under ``staging`` to the same place under ``target`` (one rename each), then remove it.

    For a folder that must not be replaced whole (``maps/`` keeps maps drawn on request): each file is
    replaced atomically, so a reader sees the old or the new file, never half of one.

    Returns
    -------
    list of Path
        ``written`` (paths under ``staging``) as they are now, under ``target``.
    """
    import shutil

    src, dst = Path(staging), Path(target)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            goal = dst / p.relative_to(src)
            goal.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, goal)
    shutil.rmtree(src, ignore_errors=True)
    return [dst / Path(p).relative_to(src) for p in (written or [])]


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success swap it in as ``path``.

    The previous folder stays complete until the new one is; on any error the
    temporary folder is removed and ``path`` is untouched.
    """
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    # mkdtemp makes it owner-only; the published folder gets what the umask gives any new folder
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    old = None
    try:
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
