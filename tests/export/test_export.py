"""Export stage: graphs, parity against PyTorch / sentence-transformers, the package contract, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_tiny_bert, tiny_gates
from onnx import TensorProto, numpy_helper
from typer.testing import CliRunner

from tastemap.cli import app
from tastemap.cpu import cpu_info
from tastemap.errors import ModelPackageError, ParityError
from tastemap.export import ExportConfig, ModelPackage, ParityGate, export_model, local_source
from tastemap.export.package import sha256_file
from tastemap.export.parity import onnx_embeddings, validation_texts

TEXTS = [
    "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "a dark war story",
    "Alien (1979). Genres: Horror, Sci-Fi",
    "The orchestra performed Beethoven's ninth symphony to a full house.",
]


def sentence_transformer_reference(folder: Path, texts: list[str]) -> np.ndarray:
    """Embeddings by sentence-transformers itself: an implementation independent of tastemap's."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def package_embeddings(package_dir: Path, variant: str, texts: list[str]) -> np.ndarray:
    package = ModelPackage.load(package_dir)
    return onnx_embeddings(package.variant_path(variant), package.tokenizer_path(), texts, package.max_seq_len)


def test_tiny_package_contract(tiny_package):
    package = ModelPackage.load(tiny_package)
    manifest = package.manifest
    assert package.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert manifest["outputs"] == [{"name": "sentence_embedding", "dtype": "float32", "shape": ["batch_size", 32]}]
    assert (manifest["pooling"], manifest["normalize"], manifest["embedding_dim"]) == ("mean", True, 32)
    assert set(package.variants) == {"fp32", "int8"}
    for info in package.variants.values():
        assert info.sha256 == sha256_file(tiny_package / info.file)
        assert info.size == (tiny_package / info.file).stat().st_size
        assert info.passed and info.parity["n_texts"] == 200
    assert manifest["tokenizer"]["files"]["tokenizer.json"] == sha256_file(tiny_package / "tokenizer.json")
    assert {"onnx", "onnxruntime", "torch", "transformers"} <= set(manifest["versions"])
    assert manifest["parity_cpu"] == cpu_info().to_dict()
    int8 = manifest["variants"]["int8"]["details"]
    assert (int8["scheme"], int8["weight_limit"]) == ("asymmetric", 64) and package.variant("int8").exact_on_every_cpu
    graph = onnx.load(str(tiny_package / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["sentence_embedding"]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", "sequence_length"]
    vectors = package_embeddings(tiny_package, "fp32", TEXTS)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("architecture", "pooling", "hidden_size", "inputs"),
    [
        ("bert", "cls", 48, ("input_ids", "attention_mask", "token_type_ids")),
        ("bert", "max", 64, ("input_ids", "attention_mask", "token_type_ids")),
        ("distilbert", "mean", 32, ("input_ids", "attention_mask")),
        ("distilbert", "cls", 48, ("input_ids", "attention_mask")),
    ],
)
def test_pooling_modes_match_sentence_transformers(tmp_path, architecture, pooling, hidden_size, inputs):
    source = make_tiny_bert(tmp_path / "src", architecture=architecture, pooling=pooling, hidden_size=hidden_size, seed=3)
    export_model(ExportConfig(out=tmp_path / "pkg", source=source, variants=("fp32",), gates=tiny_gates()))
    package = ModelPackage.load(tmp_path / "pkg")
    assert package.pooling == pooling and package.input_names == inputs and package.max_seq_len == 64
    ours = package_embeddings(tmp_path / "pkg", "fp32", TEXTS)
    reference = sentence_transformer_reference(source, TEXTS)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_batch_padding_does_not_change_a_vector(tiny_package):
    package = ModelPackage.load(tiny_package)
    for variant in ("fp32", "int8"):
        path = package.variant_path(variant)
        batched = onnx_embeddings(path, package.tokenizer_path(), TEXTS, 64)
        alone = np.concatenate([onnx_embeddings(path, package.tokenizer_path(), [t], 64) for t in TEXTS])
        assert np.min(np.sum(batched * alone, axis=1)) >= 0.99999


@pytest.mark.slow
def test_minilm_fp32_and_int8_match_sentence_transformers(minilm_package):
    from tastemap.export.source import default_source

    texts = validation_texts()
    reference = sentence_transformer_reference(default_source(), texts)
    fp32 = package_embeddings(minilm_package, "fp32", texts)
    int8 = package_embeddings(minilm_package, "int8", texts)
    assert np.min(np.sum(fp32 * reference, axis=1)) > 0.99999
    int8_cosines = np.sum(int8 * reference, axis=1)
    assert int8_cosines.mean() > 0.99 and int8_cosines.min() > 0.95
    manifest = ModelPackage.load(minilm_package).manifest
    assert manifest["name"] == "all-MiniLM-L6-v2" and manifest["max_seq_len"] == 256
    assert manifest["variants"]["int8"]["parity"]["mean_cosine"] == pytest.approx(int8_cosines.mean(), abs=1e-3)
    assert manifest["variants"]["int8"]["size"] < manifest["variants"]["fp32"]["size"] / 3


@pytest.mark.slow
def test_minilm_int8_is_batch_invariant(minilm_package):
    import pandas as pd

    movies = pd.read_csv(Path(__file__).parents[2] / "tastemap/data/movielens-small/movies.csv.gz")
    titles = movies.title.head(64).tolist()
    package = ModelPackage.load(minilm_package)
    path = package.variant_path("int8")
    batched = onnx_embeddings(path, package.tokenizer_path(), titles, 256, batch_size=64)
    alone = np.concatenate([onnx_embeddings(path, package.tokenizer_path(), [t], 256) for t in titles])
    assert np.min(np.sum(batched * alone, axis=1)) >= 0.9999


C_FRIENDLY_CLIENT = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

package, texts = sys.argv[1], json.loads(sys.argv[2])
manifest = json.load(open(f"{package}/manifest.json"))
tokenizer = Tokenizer.from_file(f"{package}/tokenizer.json")
tokenizer.enable_truncation(manifest["max_seq_len"])
tokenizer.enable_padding(pad_id=manifest["tokenizer"]["pad_token_id"])
session = ort.InferenceSession(f"{package}/{manifest['variants']['fp32']['file']}", providers=["CPUExecutionProvider"])
encodings = tokenizer.encode_batch(texts)
columns = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
feeds = {i["name"]: np.array([getattr(e, columns[i["name"]]) for e in encodings], dtype=np.int64) for i in manifest["inputs"]}
(vectors,) = session.run([manifest["outputs"][0]["name"]], feeds)
assert "torch" not in sys.modules and "transformers" not in sys.modules, "heavy frameworks were imported"
print(json.dumps(vectors.tolist()))
"""


@pytest.mark.parametrize("package_fixture", ["tiny_package", pytest.param("minilm_package", marks=pytest.mark.slow)])
def test_package_runs_with_onnxruntime_and_tokenizers_only(package_fixture, request):
    package_dir = request.getfixturevalue(package_fixture)
    result = subprocess.run(
        [sys.executable, "-c", C_FRIENDLY_CLIENT, str(package_dir), json.dumps(TEXTS)],
        capture_output=True, text=True, check=True,
    )
    vectors = np.array(json.loads(result.stdout), dtype=np.float32)
    manifest = ModelPackage.load(package_dir).manifest
    assert set(manifest["source"]) == {"name", "sha256"}  # no path of the exporting machine
    source = local_source(manifest)
    reference = sentence_transformer_reference(Path(source), TEXTS) if package_fixture == "minilm_package" else None
    if reference is None:
        from tastemap.export.parity import reference_embeddings
        from tastemap.export.source import SourceModel

        reference = reference_embeddings(SourceModel.resolve(source), TEXTS)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_failing_gate_writes_nothing_and_force_records_it(tmp_path, tiny_bert):
    impossible = {**tiny_gates(), "int8": ParityGate(min_mean_cosine=1.0)}
    config = dict(source=tiny_bert, variants=("fp32", "int8"), gates=impossible, max_excluded_nodes=0)
    with pytest.raises(ParityError, match=r"int8 .*FAIL: mean_cosine=\S+ < 1\.0"):
        export_model(ExportConfig(out=tmp_path / "pkg", **config))
    assert list(tmp_path.iterdir()) == []
    result = export_model(ExportConfig(out=tmp_path / "pkg", force=True, **config))
    entry = ModelPackage.load(tmp_path / "pkg").manifest["variants"]["int8"]
    assert [v.passed for v in result.variants] == [True, False] and entry["passed"] is False
    assert entry["details"]["failures"][0].startswith("mean_cosine=")


def test_int8_gate_failure_keeps_sensitive_nodes_in_float(tmp_path, tiny_bert):
    strict = {**tiny_gates(), "int8": ParityGate(min_mean_cosine=0.999999999, min_cosine=0.99999999)}
    export_model(ExportConfig(out=tmp_path / "pkg", source=tiny_bert, variants=("int8",), gates=strict,
                              force=True, max_excluded_nodes=4))
    details = ModelPackage.load(tmp_path / "pkg").manifest["variants"]["int8"]["details"]
    assert len(details["float_nodes"]) == 4 and len(set(details["float_nodes"])) == 4


runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def test_cli_export_prints_the_parity_table(tmp_path, tiny_bert):
    result = run_cli("export", str(tiny_bert), "--out", str(tmp_path / "pkg"), "--variants", "fp32,fp16")
    assert result.exit_code == 0, result.output
    assert "fp32" in result.output and "fp16" in result.output and "pass" in result.output
    assert f"parity gates ran on {cpu_info().model} (int8 ISA class: {cpu_info().isa})" in result.output
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == [
        "config.json", "manifest.json", "model.fp16.onnx", "model.onnx", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.txt",
    ]


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: str(tmp / "missing"), "is not a local folder; pass a local Hugging Face"),
        (lambda tmp: "sentence-transformers/all-MiniLM-L6-v2", "tastemap never downloads models at run time"),
        (lambda tmp: (tmp / "empty").mkdir() or str(tmp / "empty"), "is not a model folder: it has no config.json"),
    ],
)
def test_cli_rejects_bad_sources(tmp_path, make_source, message):
    source = make_source(tmp_path)
    result = run_cli("export", source, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_cli_rejects_missing_tokenizer(tmp_path, tiny_bert):
    import shutil

    source = Path(shutil.copytree(tiny_bert, tmp_path / "src"))
    (source / "tokenizer.json").unlink()
    result = run_cli("export", str(source), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "has no tokenizer.json" in result.output and not (tmp_path / "out").exists()


def test_cli_rejects_unknown_variant(tmp_path, tiny_bert):
    result = run_cli("export", str(tiny_bert), "--out", str(tmp_path / "out"), "--variants", "fp32,int4")
    assert result.exit_code == 2
    assert "variants=['fp32', 'int4'] is not valid: choose one or more of ['fp32', 'int8', 'fp16']" in " ".join(result.output.split())


def test_cli_rejects_output_under_a_file(tmp_path, tiny_bert):
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("export", str(tiny_bert), "--out", str(tmp_path / "file" / "pkg"))
    assert result.exit_code == 2
    assert f"cannot write to {tmp_path / 'file'}" in " ".join(result.output.split())


def test_load_refuses_corrupted_or_mismatched_files(tmp_path, tiny_package):
    import shutil

    copy = Path(shutil.copytree(tiny_package, tmp_path / "pkg"))
    data = bytearray((copy / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.int8.onnx").write_bytes(bytes(data))
    package = ModelPackage.load(copy)
    assert package.variant_path("fp32") == copy / "model.onnx"
    with pytest.raises(ModelPackageError, match=r"model.int8.onnx is corrupted or was replaced: its sha256 is"):
        package.variant_path("int8")
    with pytest.raises(ModelPackageError, match=r"variant 'fp16' is not in .* \(it has \['fp32', 'int8'\]\)"):
        package.variant_path("fp16")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ModelPackageError, match="has schema_version=99, this tastemap reads schema_version=1"):
        ModelPackage.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelPackageError, match="has no manifest.json, so it is not a tastemap model package"):
        ModelPackage.load(copy)


def test_validation_file_errors_name_the_line(tmp_path, tiny_bert):
    bad = tmp_path / "texts.txt"
    bad.write_bytes(b"fine line\nbroken \xff line\n")
    result = run_cli("export", str(tiny_bert), "--out", str(tmp_path / "out"), "--validation", str(bad))
    assert result.exit_code == 2
    assert "line 2 is not valid UTF-8" in result.output and not (tmp_path / "out").exists()


def test_static_int8_with_calibration_file(tmp_path, tiny_bert):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(validation_texts()[:48]), encoding="utf-8")
    result = export_model(ExportConfig(out=tmp_path / "pkg", source=tiny_bert, variants=("int8",),
                                       calibration=calibration, gates=tiny_gates()))
    entry = result.package.manifest["variants"]["int8"]
    assert entry["details"]["mode"] == "static-qdq" and entry["passed"]
    assert entry["details"]["weight_limit"] == 64 and result.package.variant("int8").exact_on_every_cpu
    model = onnx.load(str(tmp_path / "pkg" / "model.int8.onnx"))
    weights = [numpy_helper.to_array(init) for init in model.graph.initializer if init.data_type == TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    ops = {node.op_type for node in onnx.load(str(tmp_path / "pkg" / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_pooling_written_by_sentence_transformers_5_is_read(tmp_path):
    from tastemap.export.source import SourceModel

    folder = make_tiny_bert(tmp_path / "st5", pooling="cls")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode": "cls"}))
    assert SourceModel.resolve(folder).pooling == "cls"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    with pytest.raises(ModelPackageError, match="combines pooling modes none; tastemap supports exactly one of"):
        SourceModel.resolve(folder)
