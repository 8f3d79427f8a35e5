"""Project error classes. Every message says what was received, what is allowed and how to fix it.

The CLI turns any :class:`TastemapError` into a one-line message on stderr and exit code 2.
:func:`write_error` turns an :class:`OSError` of the file system into an :class:`InputError` naming
the path, the reason and the fix.
"""

from __future__ import annotations

import errno
import os


class TastemapError(Exception):
    """Base class for errors caused by the caller's input, files or environment."""

    exit_code = 2


class InputError(TastemapError, ValueError):
    """Bad user input: a missing column, an unparsable value, an empty file, an impossible parameter."""


class ModelPackageError(TastemapError):
    """A model package (or source model folder) that is missing, corrupted or inconsistent."""


class FittedModelError(TastemapError):
    """A fitted model directory (``tastemap fit``) that is missing, corrupted or of another schema version."""


class ParityError(TastemapError):
    """An exported variant failed its parity gate against the PyTorch reference (exit code 1)."""

    exit_code = 1


class DeviceError(TastemapError):
    """A requested device, execution provider or backend is not available."""


class MissingDependencyError(TastemapError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


def require(module: str, extra: str):
    """Import an optional dependency lazily, or fail with the install hint for its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f'{module} is not installed; install it with `pip install "tastemap[{extra}]"`'
        ) from exc


_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere",
    getattr(errno, "EDQUOT", errno.ENOSPC): "free some space or write elsewhere",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def write_error(path: str | os.PathLike, exc: OSError, *, what: str = "write") -> InputError:
    """``cannot write PATH: <reason>; <fix>`` for an :class:`OSError` raised while writing ``path``."""
    reason = exc.strerror or str(exc)
    fix = _FIXES.get(exc.errno)
    return InputError(f"cannot {what} {path}: {reason}" + (f"; {fix}" if fix else ""))
