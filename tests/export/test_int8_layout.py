"""The asymmetric int8 layout's zero point inside the integer product, and the int8 scheme bench."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tastemap.export.quantize import (
    WEIGHT_LIMIT,
    fake_quantized_matmul,
    quantize_int8,
    quantize_rows,
    quantize_weight,
    zero_point_columns,
    zero_point_rows,
)
from test_quantize import LEVELS, extreme_matmul, matmul_model, session


def pair_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sums of adjacent u8·s8 products along K, as vpmaddubsw forms them (K padded to even)."""
    if a.shape[-1] % 2:
        a, b = np.pad(a, ((0, 0), (0, 1))), np.pad(b, ((0, 1), (0, 0)))
    products = np.einsum("mk,kn->mkn", a.astype(np.int64), b.astype(np.int64))
    return products[:, 0::2] + products[:, 1::2]


@pytest.mark.parametrize("k", [7, 64, 384])
def test_zero_point_columns_compute_the_shifted_product_exactly(k):
    rng = np.random.default_rng(k)
    wq = rng.integers(-WEIGHT_LIMIT, WEIGHT_LIMIT + 1, size=(k, 48)).astype(np.int8)
    wq[:, 0] = WEIGHT_LIMIT  # the largest column sum there can be: 64 * K
    xq = rng.integers(0, 256, size=(20, k)).astype(np.uint8)
    zero_point = rng.integers(0, 256, size=(20, 1)).astype(np.uint8)
    columns = zero_point_columns(wq)
    rows = zero_point_rows(wq, columns)
    assert columns % 4 == 0 and columns == 4 * -(-k // 4) and rows.shape == (columns, 48)
    assert rows.dtype == np.int8 and np.abs(rows).max() <= WEIGHT_LIMIT
    a = np.concatenate([xq, np.repeat(zero_point, columns, axis=1)], axis=1)
    b = np.concatenate([wq, rows])
    np.testing.assert_array_equal(a.astype(np.int64) @ b, (xq.astype(np.int64) - zero_point) @ wq)
    assert np.abs(pair_sums(a, b)).max() <= 2 * 255 * WEIGHT_LIMIT <= 32767  # no int16 saturation


def test_zero_point_rows_refuse_too_few_rows():
    wq = np.full((8, 3), WEIGHT_LIMIT, np.int8)
    assert zero_point_columns(wq) == 8
    with pytest.raises(ValueError, match=r"7 rows within ±64 cannot add up to the column sums of the weight"):
        zero_point_rows(wq, 7)


def test_asymmetric_graph_has_no_float_correction_and_equals_its_twin(tmp_path):
    x, weight = extreme_matmul()
    bias = np.linspace(-1, 1, weight.shape[1]).astype(np.float32)
    onnx.save(matmul_model(weight, bias, 17), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", scheme="asymmetric")
    model = onnx.load(str(tmp_path / "int8.onnx"))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMulInteger") == 1 and "MatMul" not in ops and ops.count("Concat") == 1
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    product = next(node for node in model.graph.node if node.op_type == "MatMulInteger")
    wq, _ = quantize_weight(weight)
    assert len(product.input) == 2  # no zero point input: the columns carry it
    assert inits[product.input[1]].shape == (weight.shape[0] + zero_point_columns(wq), weight.shape[1])
    xq, _, zero_point = quantize_rows(x, "asymmetric")
    assert len(np.unique(zero_point)) > 1  # rows with different zero points in one product
    expected = fake_quantized_matmul(x, weight, "asymmetric") + bias
    for level in LEVELS:
        got = session(tmp_path / "int8.onnx", level).run(["y"], {"x": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=level)


def test_quantization_bench_records_every_workload_and_the_profile(tiny_package, tmp_path, capsys):
    from tastemap.bench import quantization

    out = tmp_path / "int8.json"
    quantization.main([str(tiny_package / "model.onnx"), "--movies", "8", "--rounds", "1", "--levels", "extended",
                       "--workloads", "queries=8,items=8,long=2", "--threads", "1", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["cpu"]["isa"] and set(record["workloads"]) == {"queries", "items", "long"}
    assert record["workloads"]["long"]["mean_tokens"] > record["workloads"]["queries"]["mean_tokens"]
    for figures in record["speed"].values():
        assert figures["fp32 @ extended"]["vs_fp32"] == 1.0
        assert figures["int8 per-token asymmetric @ extended"]["texts_per_cpu_s"] > 0
        assert figures["fp32, weight products free @ extended"]["texts_per_cpu_s"] > 0
    assert record["quality"]["fp32"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert record["quality"]["int8 per-token asymmetric"]["batch_invariance_min_cosine"] > 0.9999
    share = record["profile"]["share"]
    assert sum(share.values()) == pytest.approx(1.0) and "MatMulIntegerToFloat" in share
    assert "operator profile" in capsys.readouterr().out


def test_quantization_bench_batches_by_tokens_and_keeps_the_input_order(tiny_package):
    from tastemap.bench.quantization import make_encoder
    from tastemap.package import ModelPackage

    tokenizer = ModelPackage.load(tiny_package).load_tokenizer()
    texts = ["a", "the dark star rises over the old city", "comedy", "space adventure at night", "b c"]
    by_count = make_encoder(tiny_package / "model.onnx", tokenizer, "basic", 1).encode(texts, 1)
    by_tokens = make_encoder(tiny_package / "model.onnx", tokenizer, "basic", 1, max_tokens=16).encode(texts, 8)
    np.testing.assert_allclose(by_tokens, by_count, atol=1e-5)


def test_ceiling_graph_copies_instead_of_multiplying_and_keeps_the_rest(tiny_package, tmp_path):
    from tastemap.bench.quantization import make_encoder, products_free
    from tastemap.export.quantize import find_quantizable_nodes
    from tastemap.package import ModelPackage

    fp32 = onnx.load(str(tiny_package / "model.onnx"))
    free = onnx.load(str(products_free(tiny_package / "model.onnx", tmp_path / "free.onnx")))
    products = [name for name in find_quantizable_nodes(fp32) if not name.endswith("Gather")]
    assert products and find_quantizable_nodes(free) == [name for name in find_quantizable_nodes(fp32)
                                                         if name.endswith("Gather")]
    count = lambda model, op: sum(node.op_type == op for node in model.graph.node)
    assert count(free, "MatMul") == count(fp32, "MatMul") - len(products)
    assert count(free, "Add") == count(fp32, "Add")  # the bias additions stay
    assert len(free.graph.initializer) < len(fp32.graph.initializer)  # the weights are gone
    tokenizer = ModelPackage.load(tiny_package).load_tokenizer()
    texts = ["a dark star", "comedy"]
    vectors = make_encoder(tmp_path / "free.onnx", tokenizer, "extended", 1).encode(texts, 2)
    reference = make_encoder(tiny_package / "model.onnx", tokenizer, "extended", 1).encode(texts, 2)
    assert vectors.shape == reference.shape and np.isfinite(vectors).all()


def test_quantization_bench_refuses_a_bad_workload(capsys):
    from tastemap.bench import quantization

    with pytest.raises(SystemExit) as exit_info:
        quantization.main(["model.onnx", "--workloads", "documents=5"])
    assert exit_info.value.code == 2
    assert "--workloads item 'documents=5' should be NAME=COUNT with NAME in ['queries', 'items', 'long']" in capsys.readouterr().err


def test_package_int8_runs_unsigned_by_signed_products_with_the_zero_point_inside(tiny_package):
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    details = manifest["variants"]["int8"]["details"]
    assert (details["scheme"], details["weight_limit"], details["operands"]) == ("asymmetric", 64, "u8s8")
    model = onnx.load(str(tiny_package / "model.int8.onnx"))
    products = [node for node in model.graph.node if node.op_type == "MatMulInteger"]
    inits = {init.name: init for init in model.graph.initializer}
    assert len(products) == 12 and all(len(node.input) == 2 for node in products)
    assert all(inits[node.input[1]].data_type == onnx.TensorProto.INT8 for node in products)
