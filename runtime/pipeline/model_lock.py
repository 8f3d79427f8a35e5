"""Who may touch a fitted model directory: one writer at a time, and readers that pin a version.

Two kinds of advisory locks of the operating system (``flock``), both released when the process
ends, even by ``kill -9``, so a crashed job never blocks the next one:

- :func:`writer_lock`: an exclusive lock on ``DIR/writer.lock``, held by every job that writes a
  new version of the model in ``DIR`` (``fit --out``, ``update``, ``TastemapModel.save``). A second
  writer waits up to ``wait`` seconds, then stops with an error naming the process that holds it.
  The lock is re-entrant within one thread, so that a job can hold it from reading the model to
  publishing the updated version (no update is lost between the two). Waiting writers queue at
  ``DIR/writer.queue`` first: the one holding it takes the lock next, so a writer that releases
  the lock and asks again at once cannot starve the others.
- :class:`Pin`: a shared lock on the ``model.json`` of one version, held by a reader for as long
  as it uses that version. A writer removes an old version only after taking an exclusive lock on
  its ``model.json`` without waiting (:func:`claim`); a pinned version stays until a later writer
  finds it unpinned.

On systems without ``flock`` (Windows), writers lock with ``msvcrt`` and pins do nothing (an open
file cannot be removed there anyway).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tastemap.errors import FittedModelError
from tastemap.runtime.io.file_locks import SHARED_LOCKS, try_lock, unlock

logger = logging.getLogger(__name__)

LOCK_FILE = "writer.lock"
QUEUE_FILE = "writer.queue"
DEFAULT_WAIT = 60.0
"""Seconds a writer waits for another writer of the same directory before giving up."""
POLL_SECONDS = 0.01

_held: dict[tuple[str, int], "_Held"] = {}
_held_guard = threading.Lock()


@dataclass
class _Held:
    fd: int
    depth: int
    created: bool


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike, *, wait: float) -> Iterator[Path]:
    """Hold the writer lock of the model directory ``directory`` (created when missing) for the
    ``with`` block; yields the directory as an absolute path.

    ``wait``: seconds to wait for another writer to finish before raising
    :class:`~tastemap.errors.FittedModelError` (0: do not wait). When the block fails and the
    directory was created here and holds no published version (no ``current``), it is removed.
    """
    directory = Path(os.path.abspath(directory))
    key = (str(directory), threading.get_ident())
    with _held_guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
    if held is not None:  # this thread holds it already: re-entered
        try:
            yield directory
        finally:
            held.depth -= 1
        return
    held = _acquire(directory, wait)
    with _held_guard:
        _held[key] = held
    try:
        yield directory
    except BaseException:
        _release(directory, key, held, failed=True)
        raise
    _release(directory, key, held, failed=False)


def _acquire(directory: Path, wait: float) -> _Held:
    deadline = time.monotonic() + max(float(wait), 0.0)
    created = False
    while True:
        created = _make_directory(directory) or created
        queue = _open_lock_file(directory / QUEUE_FILE, directory)
        if queue is None:
            continue  # the folder was removed by a writer that failed: make it again
        try:
            if not _wait_for_lock(queue, deadline):
                raise _busy(directory, wait)
            lock_path = directory / LOCK_FILE
            fd = _open_lock_file(lock_path, directory)
            if fd is None:
                continue
            if not _wait_for_lock(fd, deadline, directory):
                os.close(fd)
                raise _busy(directory, wait)
            if _still_named(fd, lock_path):
                _write_owner(fd)
                return _Held(fd=fd, depth=0, created=created)
            os.close(fd)  # the lock file was removed by the writer before us: lock the new one
        finally:
            os.close(queue)  # the next writer in line may queue now


def _open_lock_file(path: Path, directory: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _write_error(directory, exc) from None


def _busy(directory: Path, wait: float) -> FittedModelError:
    owner = _read_owner(directory / LOCK_FILE)
    return FittedModelError(
        f"{directory} is being written by another tastemap job{owner}; waited {max(wait, 0):g} s for it. "
        "Wait for it to end and try again (or give a longer --wait)")


def _release(directory: Path, key: tuple, held: _Held, *, failed: bool) -> None:
    with _held_guard:
        _held.pop(key, None)
    if failed and held.created and not (directory / "current").exists():
        for name in (QUEUE_FILE, LOCK_FILE):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        shutil.rmtree(directory / "versions", ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        unlock(held.fd)
    os.close(held.fd)


def _make_directory(directory: Path) -> bool:
    """Create ``directory`` (and its parents; the umask decides the mode); True when it was missing."""
    if directory.is_dir():
        return False
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise FittedModelError(f"{directory} is a file, not a model directory; choose another folder") from None
        return False
    except OSError as exc:
        raise _write_error(directory, exc) from None
    return True


def _wait_for_lock(fd: int, deadline: float, directory: Path | None = None) -> bool:
    """Poll for the exclusive lock of ``fd`` until ``deadline``; say once (with ``directory``)
    that this writer waits."""
    while not try_lock(fd, exclusive=True):
        if time.monotonic() >= deadline:
            return False
        if directory is not None:
            logger.info("%s is being written by another tastemap job%s; waiting for it", directory,
                        _read_owner(directory / LOCK_FILE))
            directory = None
        time.sleep(POLL_SECONDS)
    return True


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


class Pin:
    """A shared lock on one version's ``model.json``: while it is held, no writer removes that
    version. Released by :meth:`close` or when the pin is garbage-collected."""

    def __init__(self, fd: int | None):
        self._finalizer = weakref.finalize(self, _close, fd) if fd is not None else None

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def pin(manifest: Path) -> Pin | None:
    """Pin the version whose ``model.json`` is ``manifest``; None when a writer is removing it.
    Raises :class:`FileNotFoundError` when it is gone already."""
    fd = os.open(manifest, os.O_RDONLY)
    if not try_lock(fd, exclusive=False) or not _still_named(fd, manifest):
        os.close(fd)
        return None
    return Pin(fd if SHARED_LOCKS else _close(fd))


def claim(manifest: Path) -> int | None:
    """An exclusive lock on a version's ``model.json`` for removing the version (the descriptor,
    to close after the removal), or None when a reader pins it or it is gone."""
    try:
        fd = os.open(manifest, os.O_RDONLY)
    except OSError:
        return None
    if not SHARED_LOCKS or try_lock(fd, exclusive=True):
        return fd
    os.close(fd)
    return None


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _write_error(path: Path, exc: OSError):
    from tastemap.runtime.io.outputs import write_error

    return write_error(path, exc, what="create the model directory")


def _write_owner(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())


def _read_owner(path: Path) -> str:
    """`` (process PID)`` of the writer holding the lock file ``path`` (empty when unknown)."""
    try:
        text = path.read_bytes()[:32].decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (process {text})" if text.isdigit() else ""
