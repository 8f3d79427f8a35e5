"""`tastemap embed` through the CLI runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from tastemap.cli import app

runner = CliRunner()


def test_embed_writes_vectors_and_prints_the_run(tiny_package, tmp_path):
    pd.DataFrame({"item_id": [7, 8, 9], "title": ["dark star", "comedy", "dark star"]}).to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "emb.npy"
    result = runner.invoke(app, [
        "embed", str(tmp_path / "items.csv"), "--text-col", "title", "--id-col", "item_id", "--out", str(out),
        "--model", str(tiny_package), "--variant", "fp32", "--device", "cpu", "--batch-tokens", "64", "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    for line in ("provider", "CPUExecutionProvider", "variant", "fp32", "threads", "texts/s", "tokens/s", "3 x 32", "2 / 0 / 2"):
        assert line in result.output
    vectors = np.load(out)
    assert vectors.shape == (3, 32)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert pd.read_parquet(tmp_path / "emb.ids.parquet")["id"].tolist() == ["7", "8", "9"]  # CSV ids are text


def test_embed_bad_input_exits_2_with_a_message(tiny_package, tmp_path):
    pd.DataFrame({"item_id": [1], "name": ["x"]}).to_csv(tmp_path / "items.csv", index=False)
    result = runner.invoke(app, [
        "embed", str(tmp_path / "items.csv"), "--text-col", "title", "--out", str(tmp_path / "e.npy"),
        "--model", str(tiny_package), "--device", "cpu",
    ])
    assert result.exit_code == 2
    assert "error: " in result.output and "missing column(s) ['title']; it has ['item_id', 'name']" in result.output
    assert not (tmp_path / "e.npy").exists()


def test_embed_without_a_model_package(tmp_path):
    (tmp_path / "items.csv").write_text("title\nx\n")
    result = runner.invoke(app, [
        "embed", str(tmp_path / "items.csv"), "--text-col", "title", "--out", str(tmp_path / "e.npy"), "--model", str(tmp_path),
    ])
    assert result.exit_code == 2
    assert "has no manifest.json, so it is not a tastemap model package" in result.output


def test_embed_help_shows_an_example():
    result = runner.invoke(app, ["embed", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "tastemap embed movies.csv --text-col title --id-col movieId --out emb.npy" in result.output
