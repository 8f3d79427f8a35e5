"""The shape of the package: imports from the checkout, no import cycles, one registry per
extension point (evaluation protocols, clustering backends), and quiet output."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = {"tastemap": "tastemap", "tastemap.export": "export", "tastemap.runtime": "runtime",
                   "tastemap.bench": "bench"}  # as pyproject.toml maps them

# Imports inside functions that close a cycle on purpose, each with its reason. Every other cycle,
# at module or function level, fails the tests below.
DEFERRED_EDGES = {
    ("tastemap.paths", "tastemap.export"):
        "a command that may export (tastemap demo, the bench) exports the missing default model on its first run",
    ("tastemap.runtime.interests.profile_io", "tastemap.runtime.pipeline.model_io"):
        "read_profiles also reads the profiles of a fitted model directory, pinning its current version",
    ("tastemap.runtime.pipeline.model_io", "tastemap.runtime.pipeline.model_state"):
        "checking a fitted model's version asks the state which files a version holds",
}
# Modules that only launch the command line (spark-submit's entry point), left out of the
# subpackage graph: they sit in a stage folder but stand above every stage.
ENTRY_POINTS = {"tastemap.runtime.spark.main"}


# import graph ----------------------------------------------------------------------------------

def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name, from the folders of the checkout."""
    found = {}
    for prefix, folder in PACKAGE_FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((prefix, *parts))] = path
    return found


def import_edges(modules: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(module level, function level)``: for each module, the package modules it imports at
    import time, and those it imports inside functions. ``if TYPE_CHECKING:`` blocks are skipped."""
    module_level: dict[str, set[str]] = {name: set() for name in modules}
    function_level: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8")), False):
            for target in _targets(node, package, modules):
                if target != name:
                    (function_level if in_function else module_level)[name].add(target)
    return module_level, function_level


def _imports(node: ast.AST, in_function: bool):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            continue
        inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, inside
        yield from _imports(child, inside)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict) -> list[str]:
    """The package modules an import statement loads (``from a import b``: ``a.b`` when it is a
    module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = []
    for name in names:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        if name in modules:
            found.append(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as one cycle
    through its members, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(_cycle_through(graph, set(members)))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _cycle_through(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """One cycle inside a strongly connected component, from its smallest member back to it."""
    start = min(members)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ()) & members):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {sorted(members)}")


def subpackage(module: str) -> str:
    """``tastemap.runtime.io.events`` -> ``tastemap.runtime.io``; the stages export and bench, and
    the modules of ``tastemap/`` itself, are one node each."""
    parts = module.split(".")
    if parts[:2] == ["tastemap", "runtime"] and len(parts) >= 3:
        return ".".join(parts[:3])
    if parts[:2] in (["tastemap", "export"], ["tastemap", "bench"]):
        return ".".join(parts[:2])
    return module


def _graph(*, function_level: bool) -> dict[str, set[str]]:
    module_level, in_functions = import_edges(package_modules())
    graph = {name: set(targets) for name, targets in module_level.items()}
    if function_level:
        for name, targets in in_functions.items():
            graph[name] |= {target for target in targets if (name, target) not in DEFERRED_EDGES}
    return graph


def _describe(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in found)


def test_cycle_finder_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_submodule_imports_are_resolved(tmp_path):
    modules = {"p": tmp_path / "p" / "__init__.py", "p.a": tmp_path / "p" / "a.py", "p.b": tmp_path / "p" / "b.py"}
    for path in modules.values():
        path.parent.mkdir(exist_ok=True)
    modules["p"].write_text("")
    modules["p.a"].write_text("from . import b\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p\n")
    modules["p.b"].write_text("def f():\n    from p.a import x\n")
    module_level, function_level = import_edges(modules)
    assert module_level == {"p": set(), "p.a": {"p.b"}, "p.b": set()}
    assert function_level == {"p": set(), "p.a": set(), "p.b": {"p.a"}}


def test_no_import_cycle_between_modules():
    """No cycle among the package's modules, counting imports at module level and inside
    functions (but the deferred imports of DEFERRED_EDGES)."""
    module_cycles = cycles(_graph(function_level=False))
    assert not module_cycles, f"import cycles at module level: {_describe(module_cycles)}"
    all_cycles = cycles(_graph(function_level=True))
    assert not all_cycles, f"import cycles (module or function level): {_describe(all_cycles)}"


def test_no_import_cycle_between_subpackages():
    """The subpackages (runtime.io, runtime.encode, ..., export, bench) and the top modules form
    layers: no cycle among them, imports in functions counted."""
    layers: dict[str, set[str]] = {}
    for name, targets in _graph(function_level=True).items():
        if name in ENTRY_POINTS:
            continue
        layers.setdefault(subpackage(name), set()).update(
            subpackage(target) for target in targets if subpackage(target) != subpackage(name))
    found = cycles(layers)
    assert not found, f"import cycles between subpackages: {_describe(found)}"


def test_helpers_live_in_their_layer():
    """The terminal helpers import nothing of the runtime; the export stage imports no
    recommendation code; the runtime imports no export code but through the stage seam."""
    module_level, function_level = import_edges(package_modules())
    both = {name: module_level[name] | function_level[name] for name in module_level}
    assert not {t for t in both["tastemap.console"] if t.startswith("tastemap.runtime")}
    export_imports = {t for name, targets in both.items() if name.startswith("tastemap.export") for t in targets}
    assert not {t for t in export_imports if t.startswith("tastemap.runtime.recommend")}
    runtime_imports = {t for name, targets in both.items() if name.startswith("tastemap.runtime") for t in targets}
    assert not {t for t in runtime_imports if t.startswith("tastemap.export")}


# imports from the checkout ---------------------------------------------------------------------

def _bare_python(code: str, cwd: Path, *path: str) -> str:
    """Run ``code`` without site processing (no editable-install finder, as with a plain
    ``pip install`` elsewhere), with ``path`` and the site-packages on ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, sysconfig.get_paths()["purelib"]])}
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_stage_imports_use_the_checkout_from_the_repository_root():
    code = "import tastemap.runtime.io.events, tastemap.export, tastemap.bench; print(tastemap.runtime.io.events.__file__, tastemap.export.__file__, tastemap.bench.__file__)"
    files = _bare_python(code, ROOT).split()
    assert files == [str(ROOT / "runtime" / "io" / "events.py"), str(ROOT / "export" / "__init__.py"),
                     str(ROOT / "bench" / "__init__.py")]


def test_an_installed_layout_keeps_its_own_stages(tmp_path):
    """In a wheel the stages are inside the package: the package path is left alone, even beside
    folders named like the stages."""
    site = tmp_path / "site"
    (site / "tastemap").mkdir(parents=True)
    (site / "tastemap" / "__init__.py").write_text((ROOT / "tastemap" / "__init__.py").read_text())
    for stage in ("export", "runtime", "bench"):
        for folder in (site / "tastemap" / stage, site / stage):
            folder.mkdir()
            (folder / "__init__.py").write_text(f"WHERE = {str(folder)!r}\n")
    (site / "pyproject.toml").write_text("")
    code = "import tastemap, tastemap.runtime; print(tastemap.__path__, tastemap.runtime.WHERE)"
    assert _bare_python(code, tmp_path, str(site)) == f"[{str(site / 'tastemap')!r}] {site / 'tastemap' / 'runtime'}"


# evaluation protocols --------------------------------------------------------------------------

def test_every_protocol_names_functions_that_exist():
    from tastemap.runtime.recommend import protocols

    names = [p.name for p in protocols.PROTOCOLS]
    assert names[:3] == ["leave-last-out", "temporal", "item-cold-start"] and len(set(names)) == len(names)
    for protocol in protocols.PROTOCOLS:
        assert callable(protocol.split_function()) and callable(protocol.evaluation_function())
    assert protocols.protocol_names(fitted_holdout=True) == ["leave-last-out", "temporal"]
    assert protocols.expand_choice("both") == ["leave-last-out", "temporal"]
    assert protocols.expand_choice("item-cold-start") == ["item-cold-start"]
    with pytest.raises(ValueError, match=r"protocol 'x': split='nowhere' should be 'module:function'"):
        protocols.EvaluationProtocol(name="x", evaluates="", split="nowhere", evaluate="a:b")


def test_unknown_protocol_lists_the_registry():
    from tastemap.errors import InputError
    from tastemap.runtime.recommend.protocols import get_protocol, protocol_names

    with pytest.raises(InputError) as raised:
        get_protocol("random")
    assert str(raised.value) == f"'random' is not a valid Protocol: choose one of {protocol_names()}"


def test_the_command_line_offers_the_registry():
    from typer.testing import CliRunner

    from tastemap.cli import app
    from tastemap.runtime.cli.model import Holdout
    from tastemap.runtime.cli.recommend import ComparingProtocol, EvaluateProtocol
    from tastemap.runtime.recommend import protocols

    comparing = protocols.protocol_names(compares_models=True)
    assert [m.value for m in EvaluateProtocol] == protocols.evaluate_choices() == [
        *comparing, "both", *protocols.protocol_names(compares_models=False)]
    assert [m.value for m in ComparingProtocol] == ["leave-last-out", "temporal", "both"]
    assert [m.value for m in Holdout] == ["none", "leave-last-out", "temporal"]
    result = CliRunner().invoke(app, ["evaluate", "--protocol", "random"])
    assert result.exit_code == 2 and "item-cold-start" in result.output


def test_the_result_of_another_protocol_prints_as_its_table(capsys):
    import pandas as pd

    from tastemap.runtime.cli.recommend import _print_result

    class Result:
        def table(self):
            return pd.DataFrame({"model": ["attributes"], "events_given": [1], "Recall@10": [0.5],
                                 "Recall@10_low": [0.4], "Recall@10_high": [0.6]})

    _print_result("new-protocol", Result())
    out = capsys.readouterr().out
    assert "new-protocol, mean [95% CI]" in out and "attributes" in out and "0.5000 [0.4000, 0.6000]" in out


def test_a_fitted_holdout_split_is_the_registry_split():
    from tastemap.runtime.io.interactions import Interactions
    from tastemap.runtime.recommend.protocols import get_protocol
    from tastemap.runtime.recommend.splits import split_events

    import pandas as pd

    events = pd.DataFrame({"user_id": np.repeat(["a", "b"], 5), "item_id": np.tile(np.arange(5), 2),
                           "timestamp": np.tile(np.arange(5), 2), "weight": 1.0})
    data = Interactions.from_frame(events)
    for name, n_test in (("leave-last-out", 2), ("temporal", 2)):
        split = split_events(data, name, train_fraction=0.8)
        direct = get_protocol(name).split_function()(data, train_fraction=0.8, min_train=1)
        assert split.protocol == name and split.test.n_events == n_test
        assert np.array_equal(split.test.items, direct.test.items) and split.train.n_events == 10 - n_test
    with pytest.raises(ValueError, match=r"'item-cold-start' is not a valid Protocol for a per-user split: choose "
                                         r"one of \['leave-last-out', 'temporal'\]"):
        split_events(data, "item-cold-start")


# clustering backends ---------------------------------------------------------------------------

def _clustering_specs():
    from tastemap.runtime.interests.clustering import CLUSTERING_BACKENDS

    return CLUSTERING_BACKENDS


@pytest.mark.parametrize("spec", _clustering_specs(), ids=lambda spec: spec.name)
def test_every_registered_backend_clusters_separated_blobs(spec):
    from tastemap.runtime.interests.clustering import BACKENDS, resolve_backend

    assert spec.name in BACKENDS
    if spec.unavailable() is not None:
        pytest.skip(f"{spec.name}: {spec.unavailable()}")
    centres = np.eye(4, 8, dtype=np.float32) * 10
    x = np.repeat(centres, 30, axis=0) + np.random.default_rng(0).normal(0, 0.1, (120, 8)).astype(np.float32)
    backend = resolve_backend(spec.name)
    for operation in spec.native:
        (labels, _), stats = getattr(backend, operation)(x, 4, seed=0)
        assert np.bincount(labels, minlength=4).tolist() == [30, 30, 30, 30]
        assert stats["backend"] == spec.name


def test_bench_tables_take_their_columns_from_the_registry():
    from tastemap.bench.cluster import BACKENDS_FOR
    from tastemap.bench.report import cluster_rows

    assert BACKENDS_FOR == {"kmeans": ("sklearn", "faiss", "cuml"), "gmm": ("sklearn",), "agglomerative": ("sklearn",)}
    doc = {"figures": {"cluster/kmeans/faiss/n100/seconds": {"value": 0.5}}, "notes": ["cluster: cuml not available (x)"]}
    assert cluster_rows(doc) == [["kmeans", "100", "-", "0.50 s", "not available"]]


# quiet output ----------------------------------------------------------------------------------

def test_faiss_kmeans_on_few_points_prints_nothing(capfd):
    from tastemap.runtime.interests.clustering import FaissBackend

    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    (labels, _), _ = FaissBackend().kmeans(x, 10, seed=0)
    assert labels.shape == (60,)
    assert capfd.readouterr().err == ""


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_segment_choice_reports_the_skipped_ks_once_and_no_nan(caplog):
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.interests.segments import UserSegmenter
    from tastemap.runtime.io.synthetic import make_synthetic

    data = make_synthetic(n_users=120, n_items=240, n_events=2_400, n_topics=4, dim=16, noise=0.4,
                          interests_per_user=(1, 1), seed=4)
    profiles = InterestProfiler(n_topics=4, n_coarse_topics=None, backend="sklearn", seed=0).fit(
        data.events, data.catalog, data.item_vectors).profiles_
    with caplog.at_level(logging.INFO, logger="tastemap.runtime.interests.segments"):
        segmenter = UserSegmenter(k_range=(2, 12), min_segment_share=0.1, backend="sklearn", seed=0).fit(profiles)
    skipped = sorted(k for k, v in segmenter.criterion_scores_.items() if np.isnan(v))
    assert skipped  # k above the planted 4 leave a segment under 10% of the users
    messages = [r.getMessage() for r in caplog.records if "chosen by" in r.getMessage()]
    assert len(messages) == 1 and "nan" not in messages[0]
    assert (f"k={skipped[0]}..{skipped[-1]} not considered: their smallest segment holds fewer than 10% of the "
            "users (min_segment_share)") in messages[0]


# the manifest ----------------------------------------------------------------------------------

def test_the_manifest_names_its_source_without_a_path(tiny_package, tiny_bert):
    from tastemap.export import local_source
    from tastemap.package import ModelPackage

    manifest = ModelPackage.load(tiny_package).manifest
    assert set(manifest["source"]) == {"name", "sha256"} and manifest["source"]["name"] == "model"
    assert str(tiny_bert) not in (tiny_package / "manifest.json").read_text()
    assert local_source(manifest) == tiny_bert.resolve()  # found where this machine exported from it
    assert local_source({"source": {"name": "model", "sha256": "0" * 64}}) is None
    assert local_source({"source": {"name": "model", "path": str(tiny_bert), "sha256": "0" * 64}}) == tiny_bert


def test_module_docstring_example_of_the_registry_runs():
    import doctest

    from tastemap.runtime.recommend import protocols

    assert doctest.testmod(protocols).failed == 0
    assert textwrap.dedent(protocols.__doc__).count("Adding a protocol") == 1
