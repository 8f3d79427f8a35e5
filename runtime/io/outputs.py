"""Outputs that belong to one job at a time and appear only when complete.

:func:`claim_output` is held while a job writes ``path`` (a file or a folder). It takes a lock
beside ``path`` (``.<name>.lock`` in the same folder), so that a second job with the same output
stops at once with a clear error instead of writing over the first; it creates missing parent
folders; and if the job fails it removes what the job created (``path`` itself when it did not
exist before, the parent folders it made, the extra ``scratch`` paths), so that a failed run
leaves nothing behind. The lock file is removed when the job ends.

The lock is an advisory lock of the operating system (``flock`` on POSIX, ``msvcrt.locking`` on
Windows): it is released when the process ends, even by ``kill -9``, so a crashed job never
blocks the next one. :func:`hold_output` claims an output until the CLI command that calls it
ends (see :func:`tastemap.console.exits_on_error`).

:func:`write_atomically` writes a set of files into a folder under temporary names and renames
them only when all are complete.

Errors of the file system are :class:`~tastemap.errors.InputError` naming the path and the
reason (:func:`~tastemap.errors.write_error`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tastemap.errors import InputError, write_error
from tastemap.runtime.io.file_locks import try_lock, unlock


def write_atomically(out_dir: str | Path, writers: dict[str, Callable[[Path], object]]) -> dict[str, Path]:
    """Run ``writers[name](temporary_path)`` for each file, then rename all into ``out_dir``.

    If any writer fails, every temporary file is removed and nothing in ``out_dir`` changes (a
    folder it had to create is removed again). A target that is a folder, a folder that cannot be
    written (read-only, full) is an :class:`InputError` naming the path and the reason.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output folder {out_dir} is a file; give a folder")
    for name in writers:
        if (out_dir / name).is_dir():
            raise InputError(f"cannot write {out_dir / name}: it is an existing folder; remove it or write elsewhere")
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out_dir, exc, what="create the output folder") from None
    temporary, target = {}, out_dir
    try:
        for name, write in writers.items():
            target = out_dir / name
            handle, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            os.close(handle)
            temporary[name] = Path(tmp)
            write(temporary[name])
            os.chmod(temporary[name], 0o644)
        for name, tmp in temporary.items():
            target = out_dir / name
            os.replace(tmp, target)
    except OSError as exc:
        raise write_error(target, exc) from exc
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
        if any(not (out_dir / name).exists() for name in writers):
            for folder in created:  # deepest first; only those this call made, and only if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
    return {name: out_dir / name for name in writers}


def lock_path_for(path: str | Path) -> Path:
    """The lock file of output ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def check_output_path(path: str | Path, *, folder: bool = False, flag: str = "--out") -> Path:
    """Raise :class:`InputError` when ``path`` cannot be an output: a file expected and a folder
    there (or the reverse), or a parent that is a file."""
    path = Path(path)
    if folder and path.name in ("", ".", ".."):
        path = path.resolve()  # the current folder, or a parent: lock it by its own name
    if not path.name or path.name in (".", ".."):
        raise InputError(f"{flag} {str(path)!r} names no {'folder' if folder else 'file'}; give a path such as "
                         f"{'out/' if folder else 'out/result.parquet'}")
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} is a file; give a folder (it is created if missing)")
    if not folder and path.is_dir():
        raise InputError(f"{flag} {path} is an existing folder; give a file name, e.g. {path / 'result'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    return path


@contextlib.contextmanager
def claim_output(path: str | Path, *, folder: bool = False, scratch: Iterable[str | Path] = (),
                 flag: str = "--out") -> Iterator[Path]:
    """Hold output ``path`` for one job (see the module docstring); yields ``path``.

    ``folder`` says whether ``path`` is a folder or a file. ``scratch`` paths are removed when the
    job fails, unless they existed before it started. A job interrupted by the user
    (:class:`KeyboardInterrupt`) is cleaned up like a failed one.
    """
    path = check_output_path(path, folder=folder, flag=flag)
    created = _make_parents(path.parent)
    try:
        lock = _Lock(lock_path_for(path))
        lock.acquire(path)
    except BaseException:
        _remove_folders(created)
        raise
    existed = [p for p in [path, *map(Path, scratch)] if p.exists() or p.is_symlink()]
    try:
        yield path
    except BaseException:
        for target in [path, *map(Path, scratch)]:
            if target not in existed:
                remove_path(target)
        lock.release()
        _remove_folders(created)
        raise
    lock.release()


def hold_output(path: str | Path, **options) -> Path:
    """:func:`claim_output` until the current CLI command ends (its success or failure decides the
    clean-up). Outside a command decorated with :func:`tastemap.console.exits_on_error` this is an
    error of the program."""
    from tastemap.console import current_command_scope

    scope = current_command_scope()
    if scope is None:
        raise RuntimeError("hold_output is for CLI commands (exits_on_error); use `with claim_output(...)`")
    return scope.enter_context(claim_output(path, **options))


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_folders(missing)
        raise write_error(folder, exc, what="create the folder") from None
    return missing


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree, ignoring what is already gone or cannot be removed."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


class _Lock:
    """An exclusive, non-blocking lock on a file that is removed on release."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, target: Path) -> None:
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise write_error(target.parent, exc, what="write to") from None
            if not try_lock(fd):
                owner = _read_owner(fd)
                os.close(fd)
                raise InputError(
                    f"{target} is being written by another tastemap job{owner}; wait for it to end or "
                    f"choose another output (if no job is running, delete {self.path})"
                )
            # The file may have been removed by the job that held it between our open and our lock:
            # the lock counts only if the path still names the file we locked.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                self.fd = fd
                _write_owner(fd)
                return
            os.close(fd)
        raise InputError(f"cannot lock {target}: its lock file {self.path} keeps changing; try again")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            unlock(self.fd)
        os.close(self.fd)
        self.fd = None


def _write_owner(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0) if hasattr(os, "pread") else b""
    except OSError:
        return ""
    pid = text.decode("ascii", "replace").strip()
    return f" (process {pid})" if pid.isdigit() else ""
