"""Terminal output shared by the CLI commands: logging set-up, progress bars and tables.

Library code logs through :mod:`logging` and reports progress through :func:`progress`; only the
CLI prints.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterable, Iterator, Sequence, TypeVar

from rich.console import Console
from rich.logging import RichHandler
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
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_format(value) for value in row))
    stdout.print(table)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def exits_on_error(command):
    """Decorate a CLI command: a :class:`TastemapError` becomes ``error: ...`` and exit code 2."""
    import typer

    from tastemap.errors import TastemapError

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TastemapError as exc:
            stderr.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper
