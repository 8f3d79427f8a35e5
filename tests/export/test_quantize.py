"""Batch-invariant int8 quantization (tastemap.export.quantize) on tiny graphs and a tiny BERT."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tastemap.errors import InputError, ModelPackageError
from tastemap.export import quantize
from tastemap.export.quantize import (
    SCHEMES,
    WEIGHT_LIMIT,
    fake_quantized_matmul,
    find_quantizable_nodes,
    quantize_int8,
    quantize_rows,
    quantize_weight,
)
from tastemap.export.sensitivity import rank_sensitive_nodes

LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
TEXTS = [
    "the dog",
    "a love story in the city at night",
    "war film",
    "comedy drama with a cat and a dog on a ship in space",
    "horror",
    "the old king and the new queen",
    "sci fi adventure for children",
    "a good movie",
]


def session(path: Path, level: str = "extended") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(tokenizer, texts: list[str], names: set[str], length: int | None = None) -> dict:
    """Right-padded int64 feeds ``[len(texts), length or longest]``."""
    encodings = [tokenizer.encode(text) for text in texts]
    length = length or max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), length), np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: value for name, value in feeds.items() if name in names}


def embed(sess: ort.InferenceSession, tokenizer, texts: list[str], length: int | None = None) -> np.ndarray:
    names = {i.name for i in sess.get_inputs()}
    return sess.run(["sentence_embedding"], feeds_for(tokenizer, texts, names, length))[0]


@pytest.fixture(scope="module")
def tiny_fp32(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT of conftest exported to fp32 ONNX (mean pooling, normalized)."""
    from tastemap.export.graph import export_fp32
    from tastemap.export.source import SourceModel

    path = tmp_path_factory.mktemp("quantize") / "model.onnx"
    export_fp32(SourceModel.resolve(tiny_bert), path, 17)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))


@pytest.fixture(scope="module", params=SCHEMES)
def tiny_int8(request, tiny_fp32, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / f"model.{request.param}.onnx"
    return path, quantize_int8(tiny_fp32, path, scheme=request.param)


def matmul_model(weight: np.ndarray, bias: np.ndarray | None, opset: int) -> onnx.ModelProto:
    """``y = x @ weight (+ bias)`` with ``x`` float ``[batch, seq, K]`` (dynamic axes)."""
    k, n = weight.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm" if bias is not None else "y"], name="proj")]
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    if bias is not None:
        nodes.append(helper.make_node("Add", ["b", "mm"], ["y"], name="proj_bias"))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
    graph = helper.make_graph(
        nodes,
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", n])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_graph_computes_the_numpy_twin_at_every_optimization_level(tmp_path, scheme, opset):
    rng = np.random.default_rng(opset)
    weight = rng.normal(size=(48, 24)).astype(np.float32)
    bias = rng.normal(size=24).astype(np.float32)
    x = rng.normal(size=(3, 5, 48)).astype(np.float32)
    x[0, 0] = 0.0  # an all-zero row
    x[1, 2] = np.abs(x[1, 2]) + 1.0  # a one-sided row
    x[2] *= 50.0  # rows on very different scales
    onnx.save(matmul_model(weight, bias, opset), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", scheme=scheme)

    expected = fake_quantized_matmul(x, weight, scheme) + bias
    for level in LEVELS:
        got = session(tmp_path / "int8.onnx", level).run(["y"], {"x": x})[0]
        assert got.shape == (3, 5, 24)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.abs(expected - (x @ weight + bias)).max() < 0.05 * np.abs(x @ weight).max()


def extreme_matmul(k: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(x ``[2, 6, k]``, weight ``[k, 8]``) whose quantized values sit at the ends of their ranges:
    every weight at ±WEIGHT_LIMIT, every activation at 0 (1 when symmetric) or 255, with columns of one sign, of
    alternating pairs and of random signs, and rows that match a column's signs, so that adjacent
    u8·s8 products are as large as they can be and of the same sign."""
    rng = np.random.default_rng(7)
    signs = np.ones((k, 8), np.float32)
    signs[:, 1] = -1.0
    signs[:, 2] = np.repeat([1.0, -1.0], k // 2).reshape(-1, 2).T.reshape(-1)  # ++--++-- ...
    signs[:, 3:] = rng.choice([-1.0, 1.0], size=(k, 5))
    rows = [np.ones(k), -np.ones(k), signs[:, 2], -signs[:, 2], signs[:, 3], signs[:, 4]]
    x = 3.0 * np.stack([rows, [-r for r in rows]]).astype(np.float32)
    return x, (0.25 * signs).astype(np.float32)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_extreme_values_do_not_saturate_on_any_cpu(tmp_path, scheme):
    """CPUs without VNNI add pairs of u8·s8 products into a saturating int16; the graph must still
    compute exactly what the numpy twin computes, at every optimization level."""
    x, weight = extreme_matmul()
    xq, _, zero_point = quantize_rows(x, scheme)
    wq, _ = quantize_weight(weight)
    assert set(np.unique(xq)) <= {0, 1, 255} and np.abs(wq).min() == np.abs(wq).max() == WEIGHT_LIMIT
    pairs = np.einsum("...k,kn->...kn", xq.astype(np.int64), wq.astype(np.int64))
    pair_sums = pairs[..., 0::2, :] + pairs[..., 1::2, :]
    assert np.abs(pair_sums).max() == 2 * 255 * WEIGHT_LIMIT <= 32767  # the extreme is reached

    onnx.save(matmul_model(weight, None, 17), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", scheme=scheme)
    expected = fake_quantized_matmul(x, weight, scheme)
    for level in LEVELS:
        got = session(tmp_path / "int8.onnx", level).run(["y"], {"x": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=level)
    assert np.abs(expected - x @ weight).max() <= 0.01 * np.abs(x @ weight).max()


@pytest.mark.emulated
def test_int8_graphs_are_exact_on_an_avx2_only_cpu():
    """The exactness tests again in a process that sees an AVX2-only CPU without VNNI (qemu-user's
    Haswell model), so that every machine checks the kernels that add pairs with saturation."""
    qemu = shutil.which("qemu-x86_64")
    if platform.machine() != "x86_64" or qemu is None:
        pytest.skip("needs qemu-x86_64 on an x86-64 host: apt-get install qemu-user")
    emulated = [qemu, "-cpu", "Haswell-v4", sys.executable]
    probe = "from numpy._core._multiarray_umath import __cpu_features__ as f; print(f['AVX2'], f['AVX512F'])"
    seen = subprocess.run([*emulated, "-c", probe], capture_output=True, text=True, timeout=120)
    assert seen.stdout.split() == ["True", "False"], seen.stderr[-2000:]
    done = subprocess.run(
        [*emulated, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-m", "not emulated",
         "-k", "extreme or numpy_twin or gemm"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:]


def test_weights_stay_within_the_int16_pair_limit():
    rng = np.random.default_rng(0)
    weight = rng.standard_cauchy(size=(256, 64)).astype(np.float32)  # heavy tails, one outlier per column
    wq, scale = quantize_weight(weight)
    assert wq.dtype == np.int8 and np.abs(wq).max() == WEIGHT_LIMIT == 64
    np.testing.assert_allclose(wq * scale, weight, atol=0.5 * scale.max())
    assert quantize_weight(weight, limit=127)[0].max() == 127  # embedding tables keep the full range
    with pytest.raises(InputError, match=r"limit=200 should be between 1 and 127"):
        quantize_weight(weight, limit=200)


def test_gemm_with_transposed_weight_alpha_and_beta(tmp_path):
    rng = np.random.default_rng(1)
    weight_t = rng.normal(size=(16, 40)).astype(np.float32)  # [N, K]
    bias = rng.normal(size=16).astype(np.float32)
    x = rng.normal(size=(7, 40)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 16])],
        initializer=[numpy_helper.from_array(weight_t, "w"), numpy_helper.from_array(bias, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    report = quantize_int8(tmp_path / "g.onnx", tmp_path / "g8.onnx")

    assert report.quantized_nodes == ("Gemm_0",)
    got = session(tmp_path / "g8.onnx").run(["y"], {"x": x})[0]
    expected = 0.5 * fake_quantized_matmul(x, weight_t.T) + 2.0 * bias
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_tiny_bert_graph_is_valid_int8_and_keeps_its_interface(tiny_fp32, tiny_int8):
    path, report = tiny_int8
    fp32, int8 = onnx.load(str(tiny_fp32)), onnx.load(str(path))
    onnx.checker.check_model(int8, full_check=True)

    assert [(i.name, i.type) for i in int8.graph.input] == [(i.name, i.type) for i in fp32.graph.input]
    assert [(o.name, o.type) for o in int8.graph.output] == [(o.name, o.type) for o in fp32.graph.output]
    # 2 layers x (query, key, value, attention output, intermediate, output) MatMuls
    assert len(report.quantized_nodes) == 12 and report.excluded_nodes == () == report.skipped_nodes
    assert report.quantized_nodes == tuple(find_quantizable_nodes(fp32))
    inits = {init.name: init for init in int8.graph.initializer}
    weights = [n.input[1] for n in int8.graph.node if n.op_type == "MatMulInteger"]
    assert len(weights) == 12 and all(inits[w].data_type == TensorProto.INT8 for w in weights)
    float_weight_matmuls = [n.name for n in int8.graph.node if n.op_type == "MatMul" and n.input[1] in inits
                            and inits[n.input[1]].data_type == TensorProto.FLOAT and inits[n.input[1]].dims[0] > 2]
    assert float_weight_matmuls == []
    # int8 weights plus one float32 scale per column: 4K / (K + 4) times smaller, K >= 32 here
    assert report.fp32_weight_bytes / report.int8_weight_bytes > 3.5


def test_tiny_bert_int8_stays_close_to_fp32(tiny_fp32, tiny_int8, tokenizer):
    path, _ = tiny_int8
    reference = embed(session(tiny_fp32), tokenizer, TEXTS)
    for level in ("basic", "extended", "all"):
        cosine = (embed(session(path, level), tokenizer, TEXTS) * reference).sum(axis=1)
        assert cosine.min() > 0.99, (level, cosine)


def test_embedding_does_not_depend_on_the_batch(tiny_int8, tokenizer):
    path, _ = tiny_int8
    sess = session(path)
    alone = np.concatenate([embed(sess, tokenizer, [text]) for text in TEXTS])
    batched = embed(sess, tokenizer, TEXTS)
    padded = embed(sess, tokenizer, TEXTS, length=40)
    assert (alone * batched).sum(axis=1).min() >= 0.9999
    assert (alone * padded).sum(axis=1).min() >= 0.9999
    # Same padded length, different company: every row is computed bit for bit the same.
    first, rest = TEXTS[3], [t for t in TEXTS if t != TEXTS[3]]
    together = embed(sess, tokenizer, [first, *rest], length=16)[0]
    other_company = embed(sess, tokenizer, [first, rest[0], rest[0]], length=16)[0]
    np.testing.assert_array_equal(together, other_company)


def test_per_tensor_reference_depends_on_the_batch(tiny_fp32, tokenizer, tmp_path):
    """What the per-row scheme fixes: one activation scale shared by the whole batch."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(tiny_fp32, tmp_path / "per_tensor.onnx")
    sess = session(tmp_path / "per_tensor.onnx")
    first, rest = TEXTS[3], [t for t in TEXTS if t != TEXTS[3]]
    together = embed(sess, tokenizer, [first, *rest], length=16)[0]
    other_company = embed(sess, tokenizer, [first, rest[0], rest[0]], length=16)[0]
    assert np.abs(together - other_company).max() > 1e-6


def test_excluded_nodes_stay_float(tiny_fp32, tmp_path, tokenizer):
    names = find_quantizable_nodes(onnx.load(str(tiny_fp32)))
    excluded = [names[0], names[5]]
    report = quantize_int8(tiny_fp32, tmp_path / "m.onnx", exclude_nodes=excluded)

    assert report.excluded_nodes == tuple(excluded)
    assert set(report.quantized_nodes) == set(names) - set(excluded)
    model = onnx.load(str(tmp_path / "m.onnx"))
    fp32 = {n.name: n for n in onnx.load(str(tiny_fp32)).graph.node}
    kept = {n.name: n for n in model.graph.node if n.name in excluded}
    assert {name: (n.op_type, list(n.input)) for name, n in kept.items()} == {
        name: (fp32[name].op_type, list(fp32[name].input)) for name in excluded
    }
    inits = {init.name: init.data_type for init in model.graph.initializer}
    assert all(inits[n.input[1]] == TensorProto.FLOAT for n in kept.values())
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == len(names) - 2
    cosine = (embed(session(tmp_path / "m.onnx"), tokenizer, TEXTS) * embed(session(tiny_fp32), tokenizer, TEXTS)).sum(1)
    assert cosine.min() > 0.99


def largest_table(path: Path) -> int:
    model = onnx.load(str(path))
    inits = {init.name: init for init in model.graph.initializer}
    tables = [inits[n.input[0]] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits]
    return max(int(np.prod(t.dims)) for t in tables if len(t.dims) == 2)


def test_large_embedding_tables_are_stored_int8(tiny_fp32, tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(quantize, "MIN_TABLE_ELEMENTS", largest_table(tiny_fp32))  # the word table
    report = quantize_int8(tiny_fp32, tmp_path / "m.onnx")

    gathers = [name for name in report.quantized_nodes if "word_embeddings" in name]
    assert len(gathers) == 1 and len(report.quantized_nodes) == 13
    model = onnx.load(str(tmp_path / "m.onnx"))
    tables = {init.name: init for init in model.graph.initializer if init.data_type == TensorProto.INT8}
    assert any(len(t.dims) == 2 and t.dims[0] > 100 for t in tables.values())
    cosine = (embed(session(tmp_path / "m.onnx"), tokenizer, TEXTS) * embed(session(tiny_fp32), tokenizer, TEXTS)).sum(1)
    assert cosine.min() > 0.99


def test_rank_sensitive_nodes_returns_every_quantizable_node_once(tiny_fp32, tokenizer, monkeypatch):
    monkeypatch.setattr(quantize, "MIN_TABLE_ELEMENTS", largest_table(tiny_fp32))
    expected = find_quantizable_nodes(onnx.load(str(tiny_fp32)))
    names = {i.name for i in session(tiny_fp32).get_inputs()}
    feeds = feeds_for(tokenizer, TEXTS, names)

    ranked = rank_sensitive_nodes(tiny_fp32, feeds)
    assert sorted(ranked) == sorted(expected) and len(ranked) == 13
    assert rank_sensitive_nodes(tiny_fp32, feeds, limit=3) == ranked[:3]
    assert rank_sensitive_nodes(tiny_fp32, feeds, scheme="symmetric") != []


def test_rank_sensitive_nodes_puts_a_badly_quantized_node_first(tmp_path):
    """Two MatMuls; one input has an outlier channel that the weight ignores, so the per-row
    scale set by the outlier leaves few levels for the channels that matter."""
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(32, 8)).astype(np.float32)
    weight[0] = 0.0
    nodes = [helper.make_node("MatMul", ["x1", "w"], ["y1"], name="smooth"),
             helper.make_node("MatMul", ["x2", "w"], ["y2"], name="outlier")]
    graph = helper.make_graph(
        nodes, "two",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["rows", 32]) for x in ("x1", "x2")],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["rows", 8]) for y in ("y1", "y2")],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "two.onnx")
    x = rng.normal(size=(20, 32)).astype(np.float32)
    spiky = x.copy()
    spiky[:, 0] = 300.0
    assert rank_sensitive_nodes(tmp_path / "two.onnx", {"x1": x, "x2": spiky}) == ["outlier", "smooth"]


def test_bad_input_is_refused(tiny_fp32, tmp_path):
    with pytest.raises(InputError, match=r"exclude_nodes has 1 name\(s\) that are not quantizable nodes .*'nope'"):
        quantize_int8(tiny_fp32, tmp_path / "m.onnx", exclude_nodes=["nope"])
    with pytest.raises(InputError, match=r"scheme='int4' is not one of \('asymmetric', 'symmetric'\)"):
        quantize_int8(tiny_fp32, tmp_path / "m.onnx", scheme="int4")
    with pytest.raises(ModelPackageError, match="does not exist"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "m.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelPackageError, match="is not a readable ONNX model"):
        quantize_int8(tmp_path / "junk.onnx", tmp_path / "m.onnx")
    onnx.save(matmul_model(np.ones((4, 4), np.float32), None, 11), tmp_path / "old.onnx")
    with pytest.raises(ModelPackageError, match="uses opset 11; int8 quantization needs opset >= 13"):
        quantize_int8(tmp_path / "old.onnx", tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"feeds lack model input\(s\) \['attention_mask'"):
        rank_sensitive_nodes(tiny_fp32, {"input_ids": np.ones((1, 3), np.int64)})
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_minilm_int8_is_batch_invariant_and_close_to_fp32(tmp_path):
    import pandas as pd
    from tokenizers import Tokenizer

    from tastemap.export.graph import export_fp32
    from tastemap.export.source import SourceModel

    source = SourceModel.resolve(None)
    export_fp32(source, tmp_path / "model.onnx", 17)
    report = quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    assert report.size_ratio > 3.5  # the word embedding table is int8 too
    tok = Tokenizer.from_file(str(source.path / "tokenizer.json"))
    tok.enable_truncation(source.max_seq_len)
    tok.no_padding()
    movies = Path(__file__).parents[2] / "tastemap" / "data" / "movielens-small" / "movies.csv.gz"
    frame = pd.read_csv(movies).sample(64, random_state=0)
    texts = [f"{t}. Genres: {g.replace('|', ', ')}" for t, g in zip(frame["title"], frame["genres"])]

    int8 = session(tmp_path / "model.int8.onnx")
    alone = np.concatenate([embed(int8, tok, [text]) for text in texts])
    batched = embed(int8, tok, texts)
    assert (alone * batched).sum(axis=1).min() >= 0.9999
    cosine = (batched * embed(session(tmp_path / "model.onnx"), tok, texts)).sum(axis=1)
    assert cosine.mean() >= 0.997 and cosine.min() >= 0.99
