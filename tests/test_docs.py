"""The command examples of README.md and docs/: every documented command and option exists, and the
examples marked to run do run.

The convention (docs/contributing.md, "Examples in the docs"): in a ```` ```console ```` block, a
line starting with ``$ `` is a command (a trailing backslash continues it on the next line) and the
other lines are its output. A block right after the line ``<!-- docs-test: run -->`` is run,
command after command, in a fresh folder that holds ``events.csv``, ``catalog.csv`` and
``items.csv`` (40 users of the bundled MovieLens sample), with a tiny exported model package as the
default package. ``<!-- docs-test: run expensive -->`` marks a block that needs the real model or
minutes: it is collected, and runs only when ``TASTEMAP_DOCS_EXPENSIVE=1``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import typer
import typer.main
from typer.testing import CliRunner

from tastemap.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_MARKER = re.compile(r"^<!-- docs-test: run( expensive)? -->$")
EXPENSIVE = os.environ.get("TASTEMAP_DOCS_EXPENSIVE") == "1"
TASTEMAP = str(Path(sys.executable).with_name("tastemap"))


@dataclass(frozen=True)
class Example:
    """One documented command: where it is, its words, and how its block is marked."""

    file: str
    line: int
    block: int
    text: str
    run: str | None  # None, "run" or "expensive"

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def read_examples(path: Path) -> list[Example]:
    """The ``$ `` commands of every console block of one Markdown file, in order."""
    examples, run, inside, previous, block = [], None, False, "", 0
    lines = path.read_text(encoding="utf-8").splitlines()
    name = str(path.relative_to(ROOT))
    number = 0
    while number < len(lines):
        line = lines[number]
        if not inside and line.strip() == "```console":
            marker = RUN_MARKER.match(previous.strip())
            inside, run, block = True, (("expensive" if marker.group(1) else "run") if marker else None), block + 1
        elif inside and line.strip() == "```":
            inside = False
        elif inside and line.startswith("$ "):
            start, text = number + 1, line[2:]
            while text.endswith("\\") and number + 1 < len(lines):
                number += 1
                text = text[:-1] + " " + lines[number].strip()
            examples.append(Example(name, start, block, text, run))
        if line.strip():
            previous = line
        number += 1
    return examples


EXAMPLES = [example for path in DOC_FILES for example in read_examples(path)]


def split_commands(words: list[str]) -> list[list[str]]:
    """``a && b`` as two commands."""
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    return [command for command in [*commands, current] if command]


def tastemap_commands() -> list[tuple[Example, list[str]]]:
    return [(example, command) for example in EXAMPLES for command in split_commands(example.words)
            if command[0] == "tastemap"]


def check_tastemap_command(words: list[str]) -> list[str]:
    """The subcommand path of ``tastemap ...`` words; ValueError names a command or option that does not exist."""
    command = typer.main.get_command(app)
    context = typer.Context(command, info_name="tastemap")
    path, takes_value = [], False
    for word in words[1:]:
        if takes_value:
            takes_value = False
        elif word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            options = {opt: p for p in command.params if p.param_type_name == "option"
                       for opt in (*p.opts, *p.secondary_opts)}
            if name not in options and name not in ("--help", "-h"):
                raise ValueError(f"'{' '.join(words)}': '{context.command_path}' has no option '{name}'")
            option = options.get(name)
            takes_value = option is not None and "=" not in word and not (option.is_flag or option.count)
        elif hasattr(command, "list_commands"):
            if word not in command.list_commands(context):
                raise ValueError(f"'{' '.join(words)}': '{context.command_path}' has no command '{word}'")
            command = command.get_command(context, word)
            context = typer.Context(command, info_name=word, parent=context)
            path.append(word)
    return path


@pytest.mark.parametrize("example, words", [pytest.param(e, w, id=e.id) for e, w in tastemap_commands()])
def test_documented_command_and_options_exist(example, words):
    check_tastemap_command(words)


def test_a_command_or_option_that_does_not_exist_is_caught():
    with pytest.raises(ValueError, match="'tastemap profile' has no option '--no-such-option'"):
        check_tastemap_command(["tastemap", "profile", "--no-such-option", "1"])
    with pytest.raises(ValueError, match="'tastemap' has no command 'no-such-command'"):
        check_tastemap_command(["tastemap", "no-such-command", "--out", "x"])
    with pytest.raises(ValueError, match="'tastemap bench' has no command 'no-such-command'"):
        check_tastemap_command(["tastemap", "bench", "no-such-command"])


def documented_command_paths() -> list[tuple[str, ...]]:
    """The distinct command paths the docs use (an unknown one fails its own example's test)."""
    paths = set()
    for _, words in tastemap_commands():
        try:
            paths.add(tuple(check_tastemap_command(words)))
        except ValueError:
            pass
    return sorted(paths)


@pytest.mark.parametrize("path", documented_command_paths(), ids=" ".join)
def test_documented_command_help_runs(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: tastemap {' '.join(path)}".rstrip() in " ".join(result.output.split())


def all_command_paths(command=None, context=None) -> list[str]:
    """Every command of the CLI, as ``tastemap sub ...``."""
    command = command or typer.main.get_command(app)
    context = context or typer.Context(command, info_name="tastemap")
    paths = [context.command_path]
    for name in command.list_commands(context) if hasattr(command, "list_commands") else []:
        sub = command.get_command(context, name)
        paths += all_command_paths(sub, typer.Context(sub, info_name=name, parent=context))
    return paths


def test_every_command_has_its_generated_reference():
    marked = {match for path in DOC_FILES
              for match in re.findall(r"^<!-- cli: (.+) -->$", path.read_text(encoding="utf-8"), re.MULTILINE)}
    assert sorted(set(all_command_paths()) - marked) == []
    documented = {" ".join(("tastemap", *path)) for path in documented_command_paths()}
    assert sorted(set(all_command_paths()) - documented - {"tastemap"}) == []


def python_module_commands() -> list[tuple[Example, list[str]]]:
    """``python -m tastemap....`` and ``python bench/....py`` commands."""
    found = []
    for example in EXAMPLES:
        for command in split_commands(example.words):
            if command[0] == "python" and len(command) > 2 and command[1] == "-m" and command[2].startswith("tastemap"):
                found.append((example, command))
            elif command[0] == "python" and len(command) > 1 and command[1].endswith(".py"):
                found.append((example, command))
    return found


@pytest.mark.parametrize("example, words", [pytest.param(e, w, id=e.id) for e, w in python_module_commands()])
def test_documented_python_module_and_options_exist(example, words):
    if words[1] == "-m":
        spec = importlib.util.find_spec(words[2])
        assert spec is not None and spec.origin, f"{example.id}: module {words[2]} does not exist"
        source, options = Path(spec.origin), words[3:]
    else:
        source, options = ROOT / words[1], words[2:]
        assert source.is_file(), f"{example.id}: {words[1]} does not exist"
    text = source.read_text(encoding="utf-8")
    for option in (word.split("=", 1)[0] for word in options if word.startswith("--")):
        assert f'"{option}"' in text or f"'{option}'" in text, f"{example.id}: {source.name} has no option {option}"


def test_readme_is_short_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    set_up = [line for line in readme.splitlines() if line.startswith("pip install torch")]
    assert len(set_up) == 2, set_up
    demo, tests = set_up
    assert f"{tests} || exit 1" in ci, "the README's test command (ending `|| exit 1`) is not a line of .ci/run"
    assert demo.endswith("tastemap demo") and "npm ci --prefix examples/node" in tests
    getting_started = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert demo in getting_started and tests in getting_started


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory):
    """A folder with events.csv, catalog.csv and items.csv: 40 users of the bundled MovieLens sample."""
    data = ROOT / "tastemap" / "data" / "movielens-small"
    with gzip.open(data / "ratings.csv.gz") as file:
        ratings = pd.read_csv(file)
    with gzip.open(data / "movies.csv.gz") as file:
        movies = pd.read_csv(file)
    ratings = ratings[ratings.userId <= 40]
    folder = tmp_path_factory.mktemp("docs-examples")
    ratings.rename(columns={"userId": "user_id", "movieId": "item_id"}).to_csv(folder / "events.csv", index=False)
    catalog = movies[movies.movieId.isin(ratings.movieId)].rename(columns={"movieId": "item_id", "genres": "categories"})
    catalog.to_csv(folder / "catalog.csv", index=False)
    catalog.to_csv(folder / "items.csv", index=False)
    return folder


def run_blocks() -> list[list[Example]]:
    blocks: dict[tuple[str, int], list[Example]] = {}
    for example in EXAMPLES:
        if example.run:
            blocks.setdefault((example.file, example.block), []).append(example)
    return list(blocks.values())


@pytest.mark.parametrize("block", run_blocks(), ids=lambda block: block[0].id)
def test_examples_run(block, example_folder, tmp_path, request):
    if block[0].run == "expensive" and not EXPENSIVE:
        pytest.skip("needs the real model or minutes: TASTEMAP_DOCS_EXPENSIVE=1 runs it")
    for name in ("events.csv", "catalog.csv", "items.csv"):
        (tmp_path / name).write_bytes((example_folder / name).read_bytes())
    env = {**os.environ, "COLUMNS": "120"}
    if block[0].run == "run":  # the tiny package as the default one, and caches of its own
        env.update(TASTEMAP_HOME=str(tmp_path / ".tastemap"), TASTEMAP_MODEL_DIR=str(request.getfixturevalue("tiny_package")))
    for example in block:
        for words in split_commands(example.words):
            program = {"tastemap": TASTEMAP, "python": sys.executable}.get(words[0], words[0])
            result = subprocess.run([program, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=1800)
            assert result.returncode == 0, f"{example.id}: {example.text}\n{result.stdout}\n{result.stderr}"
