"""Terminal output shared by the CLI commands: logging set-up, progress bars and tables.

Library code logs through :mod:`logging` and reports progress through :func:`progress`; only the
CLI prints. Data (titles, labels, ids) is printed as plain text, never as rich markup: a title
holding ``[bold red]`` or ``[/b]`` shows as written.

:func:`exits_on_error` is the error boundary of every command: a
:class:`~tastemap.errors.TastemapError` becomes ``error: <what and where>`` and its exit code
(2 for bad input); any other exception is a one-line ``error:`` with exit code 1, and its
traceback is shown only with ``tastemap --debug``.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import logging
import math
import re
from typing import Iterable, Iterator, Sequence, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

T = TypeVar("T")
stderr = Console(stderr=True)
stdout = Console(highlight=False)


_settings = {"debug": False}

LIBRARY_NAMES = {
    "max_tokens": "batch_tokens",
    "distance_threshold": "threshold",
    "max_items_per_user": "max_items",
    "short_window_days": "short_window",
    "n_topics": "topics",
    "n_coarse_topics": "coarse_topics",
    "n_segments": "k",
    "text_template": "template",
}
"""Library parameter names whose command-line option has another name (``max_tokens`` is
``--batch-tokens``), so that an error names the option the user typed."""

_ENVIRONMENT_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EACCES, errno.EPERM, errno.EROFS}


def set_debug(debug: bool) -> None:
    """Show the traceback of unexpected errors (``tastemap --debug``)."""
    _settings["debug"] = bool(debug)


def setup_logging(verbose: bool = False) -> None:
    """Send tastemap's log records to stderr (INFO, or DEBUG with ``verbose``)."""
    logger = logging.getLogger("tastemap")
    logger.handlers[:] = [RichHandler(console=stderr, show_path=False, show_time=False)]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def progress(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (rate and ETA) on stderr when it is a terminal."""
    if not stderr.is_terminal:
        yield from items
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a summary table to stdout."""
    table = Table(title=escape(title), title_justify="left")
    for column in columns:
        table.add_column(escape(column))
    for row in rows:
        table.add_row(*(escape(_format(value)) for value in row))
    stdout.print(table)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_error(message: str) -> None:
    """``error: message`` on stderr, as plain text."""
    stderr.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)


_COMMAND_SCOPE: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "tastemap_command_scope", default=None)


@contextlib.contextmanager
def command_scope() -> Iterator[contextlib.ExitStack]:
    """The scope of one CLI command: what is entered on its stack (:func:`current_command_scope`)
    is exited when the command ends, whether it succeeds or fails."""
    with contextlib.ExitStack() as stack:
        token = _COMMAND_SCOPE.set(stack)
        try:
            yield stack
        finally:
            _COMMAND_SCOPE.reset(token)


def current_command_scope() -> contextlib.ExitStack | None:
    """The stack of the running CLI command (see :func:`exits_on_error`), or None outside one."""
    return _COMMAND_SCOPE.get()


def exits_on_error(command):
    """Decorate a CLI command (see the module docstring).

    Before the command runs, every float option must be finite (``--long-decay inf`` is an
    error naming the option). Context managers entered on the :func:`command_scope` (outputs
    claimed with :func:`tastemap.runtime.io.outputs.hold_output`) are exited when it ends.
    """
    import typer

    from tastemap.errors import TastemapError

    flags = _option_flags(command)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            _check_finite(kwargs, flags)
            with command_scope():
                return command(*args, **kwargs)
        except TastemapError as exc:
            print_error(_name_options(str(exc), flags))
            raise typer.Exit(code=exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT_ERRNOS or _settings["debug"]:
                _unexpected(exc)
            from tastemap.errors import write_error

            print_error(str(write_error(exc.filename or "a file", exc, what="access")))
            raise typer.Exit(code=2) from None
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback with --debug
            _unexpected(exc)

    return wrapper


def _unexpected(exc: BaseException):
    import typer

    if _settings["debug"]:
        raise exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print_error(f"unexpected {type(exc).__name__}{': ' + text if text else ''} "
                "(this is a bug of tastemap; run `tastemap --debug ...` for the traceback and report it)")
    raise typer.Exit(code=1) from None


def _option_flags(command) -> dict[str, str]:
    """``{python_name: "--flag"}`` for the typer options of ``command``."""
    import inspect

    from typer.models import OptionInfo

    flags = {}
    for name, parameter in inspect.signature(command).parameters.items():
        option = parameter.default
        if not isinstance(option, OptionInfo):
            continue
        declared = [part for decl in (option.param_decls or ()) for part in decl.split("/")
                    if part.strip().startswith("--")]
        flags[name] = max(declared, key=len).strip() if declared else "--" + name.replace("_", "-")
    return flags


def _check_finite(kwargs: dict, flags: dict[str, str]) -> None:
    from tastemap.errors import InputError

    for name, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{flags.get(name, name)} {value} should be a finite number")


def _name_options(message: str, flags: dict[str, str]) -> str:
    """Replace the library's parameter names (``max_tokens=0``) by the command's options
    (``--batch-tokens=0``) in ``message``."""
    names = {name: flags[name] for name in flags}
    names.update({library: flags[option] for library, option in LIBRARY_NAMES.items() if option in flags})
    if not names:
        return message
    pattern = re.compile(r"(?<![\w.\-/])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")=")
    return pattern.sub(lambda match: names[match.group(1)] + "=", message)
