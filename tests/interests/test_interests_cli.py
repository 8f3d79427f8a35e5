"""`tastemap profile` and `tastemap segment` through the CLI runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interests")
    data = make_synthetic(n_users=60, n_items=200, n_events=1_500, n_topics=4, dim=16, noise=0.4, seed=5)
    events = data.events.rename(columns={"user_id": "uid"})
    events.loc[len(events)] = [1, 999, 1_600_000_000, 1.0]  # an item missing from the catalog
    events.to_csv(folder / "events.csv", index=False)
    catalog = data.catalog.assign(categories=[" > ".join(p[0]) for p in data.catalog.categories], tags="")
    catalog.to_parquet(folder / "catalog.parquet")
    np.save(folder / "vectors.npy", data.item_vectors)
    return folder


def test_profile_then_segment(files, tmp_path):
    out = tmp_path / "profiles"
    result = runner.invoke(app, [
        "profile", str(files / "events.csv"), str(files / "catalog.parquet"), "--out", str(out),
        "--vectors", str(files / "vectors.npy"), "--event-columns", "user_id=uid",
        "--topics", "4", "--coarse-topics", "2", "--backend", "sklearn",
    ])
    assert result.exit_code == 0, result.output
    assert "users" in result.output and "60" in result.output
    assert "1,500 / 1,501" in result.output and "0, 1" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["profiles.jsonl", "profiles.parquet", "topics.json"]
    assert json.loads((out / "topics.json").read_text())["n_topics"] == [2, 4]
    result = runner.invoke(app, ["segment", str(out), "--out", str(tmp_path / "segments"), "--k", "4",
                                 "--method", "gmm", "--backend", "sklearn"])
    assert result.exit_code == 0, result.output
    assert "k chosen by" in result.output and "given" in result.output
    assert (tmp_path / "segments" / "segments.parquet").is_file()


def test_profile_builds_the_encoder_with_a_cache_in_out(files, tmp_path, monkeypatch):
    created = {}
    vectors = np.load(files / "vectors.npy")

    class FakeEncoder:
        variant, provider = "int8", "CPUExecutionProvider"

        def __init__(self, model_dir, *, device, cache_dir):
            created.update(model_dir=model_dir, device=device, cache_dir=cache_dir)
            self.stats = type("Stats", (), {"encoded": len(vectors), "cached": 0})()

        def encode(self, texts):  # the item texts, then label phrases and category names (rows reused)
            return np.resize(vectors, (len(texts), vectors.shape[1]))

    monkeypatch.setattr("tastemap.runtime.encode.encoder.Encoder", FakeEncoder)
    out = tmp_path / "p"
    result = runner.invoke(app, ["profile", str(files / "events.csv"), str(files / "catalog.parquet"), "--out", str(out),
                                 "--event-columns", "user_id=uid", "--topics", "4", "--coarse-topics", "2",
                                 "--model", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert created == {"model_dir": tmp_path / "model", "device": "auto", "cache_dir": out / ".cache"}
    assert json.loads((out / "topics.json").read_text())["encoder"]["variant"] == "int8"


@pytest.mark.parametrize("args, message", [
    (["--event-columns", "user_id=uid,timestamp=when"], "missing column(s) ['when']"),
    ([], "missing column(s) ['user_id']"),
    (["--event-columns", "user_id=uid", "--topics", "1"], "--topics=1 should be an integer >= 2"),
])
def test_profile_bad_input_exits_2_without_output(files, tmp_path, args, message):
    out = tmp_path / "never"
    result = runner.invoke(app, ["profile", str(files / "events.csv"), str(files / "catalog.parquet"),
                                 "--out", str(out), "--vectors", str(files / "vectors.npy"), *args])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output
    assert not out.exists()


def test_profile_needs_files_or_movielens(tmp_path):
    result = runner.invoke(app, ["profile", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "give EVENTS and CATALOG files, or --movielens" in result.output


def test_segment_missing_profiles(tmp_path):
    result = runner.invoke(app, ["segment", str(tmp_path / "none.parquet"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "does not exist; run `tastemap profile` first" in result.output
