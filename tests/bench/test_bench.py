"""Bench helpers against hand-computed values: percentiles, ranks, FLOP counts, schema, compare, report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tastemap.bench.compare import compare_results
from tastemap.bench.measure import latency_summary, quality_figures, spearman
from tastemap.bench.report import render_markdown
from tastemap.bench.roofline import ModelShape, roofline_figures, text_flops
from tastemap.bench.schema import figure, read_result, validate_result, write_result
from tastemap.errors import InputError, ModelPackageError


def make_doc() -> dict:
    """A small valid result: one model, one workload, two backends."""
    figures = {
        "encoder/m/items/st-torch-fp32/texts_per_s": figure(100.0, "texts/s"),
        "encoder/m/items/st-torch-fp32/tokens_per_s": figure(1600.0, "tokens/s"),
        "encoder/m/items/tastemap-int8/texts_per_s": figure(500.0, "texts/s"),
        "encoder/m/items/tastemap-int8/tokens_per_s": figure(8000.0, "tokens/s"),
        "encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32": figure(5.0, "x", gated=True),
        "encoder/m/items/tastemap-int8/quality/mean_cosine": figure(0.998, "cosine", gated=True),
        "encoder/m/latency/tastemap-int8/bs1/p50": figure(3.0, "ms", better="lower"),
        "cluster/kmeans/sklearn/n1000/seconds": figure(2.0, "s", better="lower"),
        "cluster/kmeans/faiss/n1000/seconds": figure(0.5, "s", better="lower"),
    }
    return {
        "schema_version": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "command": "tastemap bench --quick --threads 2",
        "config": {"quick": True, "threads": 2, "suites": ["encoder", "cluster"], "models": ["m"], "seed": 0},
        "machine": {"cpu_model": "Test CPU", "cpu_flags": ["avx2", "avx512_vnni"], "cores_usable": 2, "threads": 2,
                    "gpu": "none", "python": "3.11", "packages": {"onnxruntime": "1.0"}},
        "seconds": 12.5,
        "suites": {
            "encoder": {"seconds": 10.0, "context": {"models": {"m": {
                "quality_reference": "st-torch-fp32",
                "workloads": {"items": {"n_texts": 256, "mean_tokens": 16.0, "description": "item texts",
                                        "flops": 2.0e9, "seconds": {"tastemap-int8": 0.5},
                                        "cpu_seconds": {"tastemap-int8": 0.8}}}}}}},
            "cluster": {"seconds": 2.5, "context": {"k": 8, "dim": 16, "n_iter": 10}},
        },
        "figures": figures,
        "notes": ["cluster: cuml not available (not installed)"],
    }


def test_latency_percentiles_match_hand_computed_values():
    # Sorted samples 10..50 ms; numpy's linear interpolation: p95 at rank 3.8 -> 40 + 0.8 * 10.
    summary = latency_summary([0.050, 0.010, 0.040, 0.020, 0.030])
    assert summary == pytest.approx({"p50": 30.0, "p95": 48.0, "p99": 49.6})


def test_latency_summary_rejects_empty_input():
    with pytest.raises(ValueError, match="non-empty"):
        latency_summary([])


def test_spearman_with_ties_matches_hand_computed_value():
    # ranks a: 0..4; ranks b: 0, 1, 2.5, 4, 2.5 -> rho = 8 / sqrt(10 * 9.5)
    rho = spearman(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7]))
    assert rho == pytest.approx(8 / np.sqrt(95))
    assert spearman(np.arange(6), -np.arange(6)) == pytest.approx(-1.0)


def test_quality_figures_of_identical_and_flipped_vectors():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((20, 8))
    assert quality_figures(reference, reference * 3) == pytest.approx(
        {"mean_cosine": 1.0, "min_cosine": 1.0, "spearman": 1.0})
    flipped = reference.copy()
    flipped[4] *= -1
    figures = quality_figures(reference, flipped)
    assert figures["min_cosine"] == pytest.approx(-1.0)
    assert figures["mean_cosine"] == pytest.approx(18 / 20)


def test_flops_per_text_match_hand_computed_values():
    tiny = ModelShape(layers=2, hidden=4, intermediate=8)
    # per layer: 8*3*16 + 4*3*4*8 + 4*9*4 = 384 + 384 + 144 = 912; two layers
    assert text_flops(tiny, np.array([3]))[0] == 1824
    minilm = ModelShape.from_config({"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536})
    # 6 * (8*32*384^2 + 4*32*384*1536 + 4*32^2*384)
    assert text_flops(minilm, np.array([32, 1]))[0] == 688_914_432
    assert minilm.linear_flops_per_token == 6 * (8 * 384**2 + 4 * 384 * 1536)


def test_model_shape_reads_distilbert_names_and_rejects_unknown_configs():
    assert ModelShape.from_config({"n_layers": 6, "dim": 768, "hidden_dim": 3072}) == ModelShape(6, 768, 3072)
    with pytest.raises(ModelPackageError, match="cannot count FLOPs"):
        ModelShape.from_config({"d_model": 512})


def test_roofline_fraction_uses_the_ceiling_of_the_backend_precision():
    context = make_doc()["suites"]["encoder"]["context"]
    figures = roofline_figures(context, {"fp32": 100.0, "int8": 400.0, "fp32_cpu": 50.0, "int8_cpu": 200.0})
    # 2e9 FLOPs in 0.5 s = 4 GFLOP/s; int8 ceiling 400 GOP/s -> 1 %
    assert figures["roofline/m/items/tastemap-int8/gflops"]["value"] == pytest.approx(4.0)
    assert figures["roofline/m/items/tastemap-int8/fraction_of_ceiling"]["value"] == pytest.approx(0.01)
    # per CPU second: 2e9 / 0.8 s = 2.5 GFLOP per CPU-s over 200 -> 1.25 %, the gated one
    cpu_fraction = figures["roofline/m/items/tastemap-int8/cpu_fraction_of_ceiling"]
    assert cpu_fraction["value"] == pytest.approx(0.0125) and cpu_fraction["gated"] is True
    assert figures["roofline/m/items/tastemap-int8/fraction_of_ceiling"]["gated"] is False


def test_schema_accepts_a_valid_result_and_round_trips(tmp_path):
    doc = make_doc()
    path = write_result(doc, tmp_path / "result.json")
    assert read_result(path) == json.loads(json.dumps(doc))
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["figures"]["cluster/kmeans/faiss/n1000/seconds"].pop("unit"),
         "figures['cluster/kmeans/faiss/n1000/seconds'] lacks the field 'unit'"),
        (lambda d: d["figures"]["cluster/kmeans/faiss/n1000/seconds"].update(value=True),
         "value=True should be a number, not a boolean"),
        (lambda d: d["figures"]["cluster/kmeans/faiss/n1000/seconds"].update(better="faster"),
         "better='faster' should be one of ['higher', 'lower']"),
        (lambda d: d["figures"]["cluster/kmeans/faiss/n1000/seconds"].update(value=float("nan")),
         "should be a finite number"),
        (lambda d: d["machine"].pop("cpu_model"), "machine lacks the field 'cpu_model'"),
        (lambda d: d.update(schema_version=7), "schema_version=7 is not supported"),
        (lambda d: d["config"].update(threads="2"), "config.threads='2' should be an integer, got str"),
    ],
)
def test_schema_rejects_invalid_results_naming_the_field(edit, message):
    doc = make_doc()
    edit(doc)
    with pytest.raises(InputError) as error:
        validate_result(doc, "r.json")
    assert message in str(error.value)


def test_read_result_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_result(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json is not valid JSON"):
        read_result(tmp_path / "bad.json")


def test_figure_requires_a_unit_and_a_direction():
    with pytest.raises(InputError, match="every figure needs a unit"):
        figure(1.0, "")
    with pytest.raises(InputError, match="better='up'"):
        figure(1.0, "x", better="up")


def test_compare_passes_an_unchanged_result():
    doc = make_doc()
    comparisons, warnings = compare_results(doc, copy.deepcopy(doc), max_regression=0.10)
    assert [c.status for c in comparisons] == ["ok", "ok"]
    assert {c.name for c in comparisons} == {"encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32",
                                              "encoder/m/items/tastemap-int8/quality/mean_cosine"}
    assert warnings == []


def test_compare_flags_a_planted_regression_and_ignores_absolute_drift():
    base = make_doc()
    new = copy.deepcopy(base)
    new["figures"]["encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32"]["value"] = 4.4  # -12 %
    new["figures"]["encoder/m/items/tastemap-int8/texts_per_s"]["value"] = 100.0  # absolute, not gated
    comparisons, _ = compare_results(base, new, max_regression=0.10)
    by_name = {c.name: c for c in comparisons}
    speedup = by_name["encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32"]
    assert speedup.status == "regressed" and speedup.failed
    assert speedup.change == pytest.approx(-0.12)
    assert "encoder/m/items/tastemap-int8/texts_per_s" not in by_name
    comparisons, _ = compare_results(base, new, max_regression=0.15)
    assert not any(c.failed for c in comparisons)


def test_compare_gates_absolute_figures_only_when_asked_and_respects_direction():
    base = make_doc()
    new = copy.deepcopy(base)
    new["figures"]["encoder/m/latency/tastemap-int8/bs1/p50"]["value"] = 3.6  # +20 % latency: worse
    new["figures"]["cluster/kmeans/sklearn/n1000/seconds"]["value"] = 1.0  # -50 % seconds: better
    by_name = {c.name: c for c in compare_results(base, new, gate_absolute=True)[0]}
    assert by_name["encoder/m/latency/tastemap-int8/bs1/p50"].status == "regressed"
    assert by_name["cluster/kmeans/sklearn/n1000/seconds"].status == "improved"


def test_compare_fails_on_a_missing_gated_figure_and_warns_on_other_setups():
    base = make_doc()
    new = copy.deepcopy(base)
    del new["figures"]["encoder/m/items/tastemap-int8/quality/mean_cosine"]
    new["config"]["threads"] = 4
    comparisons, warnings = compare_results(base, new)
    missing = [c for c in comparisons if c.status == "missing"]
    assert [c.name for c in missing] == ["encoder/m/items/tastemap-int8/quality/mean_cosine"]
    assert warnings == ["threads differs: base 2, new 4"]
    with pytest.raises(InputError, match="max_regression=1.5"):
        compare_results(base, new, max_regression=1.5)


def test_int8_speed_figures_of_another_int8_isa_are_shown_but_not_gated():
    base = make_doc()
    new = copy.deepcopy(base)
    new["machine"]["cpu_isa"] = "amx" if base["machine"].get("cpu_isa") != "amx" else "avx2"
    new["figures"]["encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32"]["value"] = 1.0  # -80 %
    new["figures"]["encoder/m/items/tastemap-int8/quality/mean_cosine"]["value"] = 0.5  # quality: still gated
    by_name = {c.name: c for c in compare_results(base, new)[0]}
    speed = by_name["encoder/m/items/speedup/tastemap-int8_vs_st-torch-fp32"]
    assert speed.status == "other ISA" and not speed.failed
    assert by_name["encoder/m/items/tastemap-int8/quality/mean_cosine"].status == "regressed"


def test_markdown_report_renders_the_backend_table_from_the_result():
    text = render_markdown(make_doc(), source="result.json")
    assert text.startswith("## Performance\n")
    assert "tastemap bench --quick --threads 2 --out result.json" in text
    assert "tastemap bench report result.json" in text
    assert "| tastemap-int8 | 500 | 8,000 | 5.00x | 0.9980 | - | 3.0 | - |" in text
    assert "| st-torch-fp32 | 100 | 1,600 | 1.00x | reference | reference | - | - |" in text
    assert "| kmeans | 1,000 | 2.00 s | 0.50 s | not available |" in text
