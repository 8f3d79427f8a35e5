"""MkDocs hooks: the command reference generated from the CLI, repository files included in pages,
and the package laid out for mkdocstrings.

A page line ``<!-- cli: tastemap profile -->`` becomes that command's usage, description and a
table of its arguments and options, read from the typer application itself, so the reference
cannot drift from ``tastemap ... --help``. A line ``<!-- include: models/README.md -->`` becomes
that file without its title; its links to repository files become code spans (the site holds
only the docs folder).

Docstrings are written for ``help()`` in reStructuredText style: a doctest's printed list
(``['a', 'b']``) reads to mkdocs-autorefs as a reference link, so its warnings about targets it
cannot find inside the API sources are logged as information, not as warnings.

The installed package maps ``tastemap.runtime``, ``tastemap.export`` and ``tastemap.bench`` from
sibling folders (pyproject.toml, ``package-dir``); mkdocstrings reads sources by folder layout, so
``build/docs-api-src/tastemap`` is rebuilt as a tree of symbolic links that follows that mapping.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
from pathlib import Path

from mkdocs.plugins import event_priority

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the docs extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
API_SOURCE = ROOT / "build" / "docs-api-src"
MARKER = re.compile(r"^<!-- cli: (tastemap(?: [a-z0-9-]+)*) -->$", re.MULTILINE)
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)
REPOSITORY_LINK = re.compile(r"\[([^\]]+)\]\((?!https?:|#)[^)]*\)")


@event_priority(100)  # before mkdocstrings reads its source paths
def on_config(config, **kwargs):
    stage_api_sources()
    for name, logger in logging.root.manager.loggerDict.items():
        if "autorefs" in name and isinstance(logger, logging.Logger):
            logger.addFilter(docstring_reference_as_info)
    return config


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    markdown = INCLUDE.sub(lambda match: include(match.group(1), page.file.src_uri), markdown)
    return MARKER.sub(lambda match: command_reference(match.group(1), page.file.src_uri), markdown)


def docstring_reference_as_info(record: logging.LogRecord) -> bool:
    if record.levelno == logging.WARNING and str(API_SOURCE) in record.getMessage():
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


def include(path: str, page: str) -> str:
    """A repository file's Markdown without its title line, links to other files as code spans."""
    source = ROOT / path
    if not source.is_file():
        raise SystemExit(f"error: docs/{page}: included file {path} does not exist")
    lines = source.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return REPOSITORY_LINK.sub(lambda match: match.group(1), "\n".join(lines))


def stage_api_sources() -> None:
    """Lay the package out under ``API_SOURCE`` as the installed package sees it."""
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(API_SOURCE, ignore_errors=True)
    top = API_SOURCE / "tastemap"
    top.mkdir(parents=True)
    mapped = {name.split(".", 1)[1]: ROOT / folder for name, folder in package_dirs.items() if "." in name}
    for child in (ROOT / package_dirs["tastemap"]).iterdir():
        if child.name not in mapped and child.name != "__pycache__":
            (top / child.name).symlink_to(child)
    for name, folder in mapped.items():
        (top / name.replace(".", "/")).symlink_to(folder, target_is_directory=True)


def find_command(words: list[str]):
    """The typer (click) command and context for ``tastemap sub ...``; KeyError names an unknown one."""
    import typer
    import typer.main

    from tastemap.cli import app

    command = typer.main.get_command(app)
    context = typer.Context(command, info_name=words[0])
    for word in words[1:]:
        sub = command.get_command(context, word) if hasattr(command, "get_command") else None
        if sub is None:
            raise KeyError(f"'{' '.join(words)}': '{word}' is not a command of '{context.command_path}'")
        command, context = sub, typer.Context(sub, info_name=word, parent=context)
    return command, context


def command_reference(path: str, page: str) -> str:
    try:
        command, context = find_command(path.split())
    except KeyError as error:
        raise SystemExit(f"error: docs/{page}: {error.args[0]}") from None
    usage = " ".join([context.command_path, *command.collect_usage_pieces(context)])
    lines = [f"```text\n{usage}\n```", "", html.escape(command.help or ""), ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
    if arguments:
        lines += ["| argument | description |", "|---|---|"]
        lines += [f"| `{p.name.upper()}` | {cell(getattr(p, 'help', None) or '')} |" for p in arguments]
        lines.append("")
    if hasattr(command, "list_commands"):
        lines += ["| command | description |", "|---|---|"]
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            lines.append(f"| `{context.command_path} {name}` | {cell(sub.get_short_help_str(limit=200))} |")
        lines.append("")
    lines += ["| option | description |", "|---|---|"]
    for option in options:
        names, text = option.get_help_record(context)
        lines.append(f"| `{names}` | {cell(text)} |")
    return "\n".join(lines) + "\n"


def cell(text: str) -> str:
    """Help text as one Markdown table cell: no line breaks, pipes and angle brackets escaped."""
    return html.escape(" ".join(text.split())).replace("|", "&#124;")
