"""The Node.js consumer in examples/node reads a model package as models/README.md says, and gets
the Python Encoder's token ids and vectors (fp32 and int8) on hard texts."""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_bert, tiny_gates

import tastemap
from tastemap.export import ExportConfig, ModelPackage, export_model
from tastemap.runtime.encode.encoder import Encoder

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
INSTALL = "npm ci --prefix examples/node"
MOVIELENS = Path(tastemap.__file__).parent / "data" / "movielens-small"


def _missing() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return f"needs node and npm (apt-get install -y nodejs npm), then `{INSTALL}`"
    if not (EXAMPLE / "node_modules").is_dir():
        return f"examples/node/node_modules is missing; install it with `{INSTALL}`"
    return None


pytestmark = [pytest.mark.node, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def hard_texts() -> list[str]:
    """About 340 texts: empty and blank ones, texts past truncation, many scripts, emoji, accents,
    control and zero-width characters, and MovieLens titles and tags."""
    rng = random.Random(0)
    texts = [
        "", " ", "\t\n", "a", "Hello, World!",
        "naïve café résumé Ångström Øresund straße İstanbul ǅ ﬁne", "e\u0301 combining accent",
        "北京欢迎你，我爱自然语言处理。", "東京タワーとラーメン", "안녕하세요 세계", "مرحبا بالعالم، كيف حالك؟",
        "שלום עולם", "Привет, мир! Ёлка", "Γειά σου Κόσμε", "नमस्ते दुनिया", "สวัสดีชาวโลก",
        "😀😃🎬 movie night 🍿 👨‍👩‍👧‍👦 🇫🇷", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "∑∫√∞ ≤≥ ← → ✓ ©®™",
        "zero\u200bwidth\u00a0nbsp\u0000nul\u0007bell\ufeffbom\u061dnew-in-unicode-14",
        "x" * 150, "1234567890 3.14159 1,000,000 $5 €10 ¥20", "<b>tag</b> C++ C# .NET",
    ]
    sentence = "The quick brown fox jumps over the lazy dog; 這是一個很長的句子 avec des accents éèê! 🚀 "
    texts += [sentence * n for n in (10, 40)]  # ~250 and ~1,000 tokens: both past truncation
    texts.append(" ".join(rng.choice(["war", "película", "中文", "العربية", "😀", "über"]) for _ in range(600)))
    with gzip.open(MOVIELENS / "movies.csv.gz", "rt", encoding="utf-8") as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    with gzip.open(MOVIELENS / "tags.csv.gz", "rt", encoding="utf-8") as handle:
        tags = sorted({row["tag"] for row in csv.DictReader(handle)})
    texts += rng.sample(titles, 200) + rng.sample(tags, 80)
    texts += [t for t in titles if any(ord(c) > 127 for c in t)][:30]  # accented and non-Latin titles
    return texts


def run_node(package: Path, texts: list[str], out: Path, *args: str) -> subprocess.CompletedProcess:
    source = out.with_name(out.stem + ".texts.json")
    source.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return subprocess.run(
        ["node", str(EXAMPLE / "encode.js"), str(package), str(source), str(out), *args],
        capture_output=True, text=True, timeout=120,
    )


def node_encode(package: Path, texts: list[str], out: Path, *args: str) -> dict:
    """Node's output for ``texts``: ``variant``, ``ids`` and ``embeddings`` (float32 ``[n, dim]``)."""
    done = run_node(package, texts, out, *args)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    result["embeddings"] = np.asarray(result["embeddings"], dtype=np.float32).reshape(len(texts), -1)
    result["stderr"] = done.stderr
    return result


def assert_same_ids(texts: list[str], node_ids: list[list[int]], python_ids: list[list[int]]) -> None:
    for i, (got, want) in enumerate(zip(node_ids, python_ids, strict=True)):
        if got != want:
            pytest.fail(
                f"tokenization mismatch at text {i} {texts[i][:60]!r}: Node gives {len(got)} ids "
                f"{got[:12]}..., Python {len(want)} ids {want[:12]}..."
            )


@pytest.fixture(scope="module")
def tiny_distilbert_package(tmp_path_factory) -> Path:
    """A tiny package whose graph has no token_type_ids input (fp32 only)."""
    folder = make_tiny_bert(tmp_path_factory.mktemp("tiny-distilbert") / "model", architecture="distilbert")
    out = tmp_path_factory.mktemp("packages") / "tiny-distilbert"
    export_model(ExportConfig(out=out, source=folder, variants=("fp32",), gates=tiny_gates()))
    return out


@pytest.mark.parametrize("fixture", [
    "tiny_package",
    "tiny_distilbert_package",
    pytest.param("minilm_package", marks=pytest.mark.slow),
])
def test_node_matches_python_encoder(fixture, request, tmp_path):
    package_dir = request.getfixturevalue(fixture)
    package = ModelPackage.load(package_dir)
    texts = hard_texts()
    python_ids = [encoding.ids for encoding in package.load_tokenizer().encode_batch(texts)]
    assert max(map(len, python_ids)) == package.max_seq_len  # truncation is exercised
    for variant in sorted(package.variants):
        node = node_encode(package_dir, texts, tmp_path / f"{variant}.json", "--variant", variant)
        assert node["variant"] == variant and f"variant {variant} (requested)" in node["stderr"]
        assert_same_ids(texts, node["ids"], python_ids)
        python = Encoder(package_dir, variant=variant, device="cpu").encode(texts)
        diff = float(np.abs(node["embeddings"] - python).max())
        print(f"{fixture} {variant}: {len(texts)} texts, ids identical, max abs difference {diff:.2e}")
        assert diff <= 1e-5, f"{variant}: Node and Python vectors differ by up to {diff:.2e}"


def test_auto_variant_is_the_python_encoders_cpu_choice(tiny_package, tmp_path):
    without_int8 = tmp_path / "without-int8"
    shutil.copytree(tiny_package, without_int8)
    manifest = json.loads((without_int8 / "manifest.json").read_text())
    del manifest["variants"]["int8"]
    (without_int8 / "manifest.json").write_text(json.dumps(manifest))
    texts = ["Toy Story (1995)", "", "Amélie (2001)"]
    for package_dir, expected in [(tiny_package, "int8"), (without_int8, "fp32")]:
        assert Encoder(package_dir, device="cpu").variant == expected
        done = run_node(package_dir, texts, tmp_path / "auto.f32")
        assert done.returncode == 0, done.stderr
        assert f"variant {expected} (auto" in done.stderr
        raw = np.fromfile(tmp_path / "auto.f32", dtype="<f4").reshape(len(texts), -1)
        reference = node_encode(package_dir, texts, tmp_path / "auto.json")
        assert reference["variant"] == expected
        np.testing.assert_array_equal(raw, reference["embeddings"])  # raw output = JSON output
        assert json.loads((tmp_path / "auto.f32.ids.json").read_text()) == reference["ids"]


@pytest.mark.parametrize("file, args", [("model.onnx", ("--variant", "fp32")), ("tokenizer.json", ())])
def test_corrupted_file_is_refused(tiny_package, tmp_path, file, args):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_package, broken)
    data = bytearray((broken / file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / file).write_bytes(bytes(data))
    done = run_node(broken, ["some text"], tmp_path / "out.json", *args)
    assert done.returncode == 2, done.stderr
    assert str(broken / file) in done.stderr and "sha256" in done.stderr
    assert not (tmp_path / "out.json").exists()
