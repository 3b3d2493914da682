"""Writing files so that nothing the user had is lost: a file appears complete or not at all.

Every file charnn writes (checkpoints, corpora, the ids cache) goes through `atomic_path` or
`atomic_write`: the data go to a temporary file in the target's folder, are flushed to disk, and
the temporary file is renamed over the target only when the block finishes. A crash, Ctrl-C or a
full disk leaves the old file as it was and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import LockedError


def cache_folder() -> str:
    """Where charnn keeps what it can rebuild (ids caches, folder texts, calibration):
    CHARNN_CACHE_DIR, else $XDG_CACHE_HOME/charnn, else ~/.cache/charnn."""
    explicit = os.environ.get("CHARNN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charnn")


def _readable_by_all(path: str) -> None:
    """Give a mkstemp file (0600) the permissions of a normally created one (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; write it in the block. When the block ends without
    an error the file is flushed to disk and renamed over `path`; otherwise it is removed.
    Raises OSError (the caller names the error for its user)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        _readable_by_all(tmp)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # on disk before the rename, so the rename cannot expose a hole
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Yield an open file that becomes `path` only if the block finishes (see atomic_path)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str = "file"):
    """Hold `path`.lock while the block runs, so that two processes never write the same `path`;
    raises LockedError naming the process that holds it. A lock left by a process that has died
    (kill -9) is taken over."""
    lock = os.fspath(path) + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None:
                raise LockedError(f"another process (pid {holder}) is writing {what} {os.fspath(path)}: wait for it, "
                                  f"or choose another path (its lock is {lock})") from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # its process is gone
    else:
        raise LockedError(f"cannot take the lock {lock}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def _lock_holder(lock: str) -> int | None:
    """The pid in `lock` if that process is alive, else None (gone, or the file unreadable)."""
    try:
        with open(lock, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None  # unreadable or half-written: treated as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's
    return pid
