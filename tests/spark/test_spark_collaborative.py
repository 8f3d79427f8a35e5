"""Low-rank EASE and batch recommendation on Spark (local[2]) against the single-machine results."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
    pytest.skip("Spark needs Java", allow_module_level=True)

from planted import make_planted, make_recommender, write_planted_files  # noqa: E402
from tastemap.errors import InputError  # noqa: E402
from tastemap.runtime.io.events import align_events  # noqa: E402
from tastemap.runtime.io.synthetic import make_synthetic  # noqa: E402
from tastemap.runtime.pipeline.model import TastemapModel  # noqa: E402
from tastemap.runtime.recommend.collaborative import low_rank_ease  # noqa: E402

from local_spark import local_spark  # noqa: E402

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

N_ACTIVE = 180
"""Items with events in :func:`synthetic`; the catalog holds more."""


@pytest.fixture(scope="module")
def spark():
    with local_spark("tastemap-collaborative-tests") as session:
        yield session


@pytest.fixture(scope="module")
def synthetic():
    """(events with one repeated pair and one unknown item, catalog of 240 items of which the
    first N_ACTIVE have events, the aligned single-machine Interactions)."""
    data = make_synthetic(n_users=300, n_items=240, n_events=4_000, n_topics=6, seed=0)
    events = data.events[data.events["item_id"] <= N_ACTIVE].reset_index(drop=True)
    extra = events.iloc[[0, 5]].assign(timestamp=lambda f: f["timestamp"] + 1)  # same pairs, later
    unknown = events.iloc[[7]].assign(item_id=99_999)
    events = pd.concat([events, extra, unknown], ignore_index=True)
    train, _ = align_events(events, data.catalog)
    assert np.unique(train.items).size == N_ACTIVE
    return events, data.catalog, train


def assert_same_weights(got, expected) -> None:
    """Equal up to float rounding; eigenvector signs may differ, so the product ``left · rightᵀ``
    (sign-invariant) is compared, with the diagonal."""
    assert (got.n_items, got.rank, got.exact) == (expected.n_items, expected.rank, expected.exact)
    np.testing.assert_allclose(got.left @ got.right.T, expected.left @ expected.right.T, atol=1e-5)
    np.testing.assert_allclose(got.diagonal, expected.diagonal, atol=1e-5)


@pytest.mark.parametrize("source, rank", [("path", 24), ("frame", 24), ("interactions", 24), ("frame", N_ACTIVE)])
def test_low_rank_ease_on_spark_equals_single_machine(spark, synthetic, tmp_path, source, rank):
    from tastemap.runtime.spark.collaborative import low_rank_ease_spark, low_rank_ease_spark_of

    events, catalog, train = synthetic
    expected = low_rank_ease(train.matrix(), l2=20.0, rank=rank, seed=3)
    assert expected.exact == (rank >= N_ACTIVE)
    if source == "interactions":
        got = low_rank_ease_spark_of(spark, train, l2=20.0, rank=rank, seed=3, partitions=3)
    else:
        if source == "path":
            events.to_parquet(tmp_path / "events.parquet", index=False)
        given = tmp_path / "events.parquet" if source == "path" else spark.createDataFrame(events)
        got = low_rank_ease_spark(spark, given, catalog["item_id"], l2=20.0, rank=rank, seed=3)
    assert_same_weights(got, expected)
    assert not got.left[N_ACTIVE:].any() and not got.right[N_ACTIVE:].any()  # items without events


def test_low_rank_ease_on_spark_refuses_bad_input(spark, synthetic):
    from tastemap.runtime.spark.collaborative import low_rank_ease_spark

    events, catalog, _ = synthetic
    frame = spark.createDataFrame(events)
    with pytest.raises(InputError, match="rank=0 should be an integer >= 1"):
        low_rank_ease_spark(spark, frame, catalog["item_id"], rank=0)
    with pytest.raises(InputError, match="partitions=0"):
        low_rank_ease_spark(spark, frame, catalog["item_id"], partitions=0)
    with pytest.raises(InputError, match=r"missing column\(s\) \['item_id'\]"):
        low_rank_ease_spark(spark, frame.drop("item_id"), catalog["item_id"])
    with pytest.raises(InputError, match="none of the events name an item of the catalog"):
        low_rank_ease_spark(spark, frame, catalog["item_id"] + 10_000)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A planted model with the randomised collaborative path (rank below the active items),
    saved: ``(model, path, training data, catalog, vectors)``."""
    events, catalog, vectors, _ = make_planted(40)
    data, _ = align_events(events, catalog)
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(rank=16, seed=1))
    path = model.save(tmp_path_factory.mktemp("spark-model") / "model")
    return model, path, data, catalog, vectors


def test_fit_with_spark_weights_equals_single_machine(spark, fitted):
    from tastemap.runtime.spark.collaborative import spark_collaborative

    _, _, data, catalog, vectors = fitted
    template = make_recommender(rank=16, seed=1)
    model = TastemapModel.fit(data, catalog, vectors, recommender=template, holdout="leave-last-out",
                              collaborative=spark_collaborative(l2=template.l2, rank=16, seed=1))
    split_local = TastemapModel.fit(data, catalog, vectors, recommender=template, holdout="leave-last-out")
    assert not model.recommender.collaborative_.exact
    assert_same_weights(model.recommender.collaborative_, split_local.recommender.collaborative_)
    got, expected = model.recommend_batch(k=5), split_local.recommend_batch(k=5)
    pd.testing.assert_frame_equal(got.drop(columns="score"), expected.drop(columns="score"))
    np.testing.assert_allclose(got["score"], expected["score"], atol=1e-4)


def test_recommend_batch_on_spark_equals_single_machine(spark, fitted):
    from tastemap.runtime.spark.recommend import recommend_spark

    local, path, _, _, _ = fitted
    expected = local.recommend_batch(k=5)
    got = recommend_spark(spark, path, k=5, partitions=3).toPandas()
    assert_same_rows(got, expected)
    users = list(local.user_ids[[7, 2, 30]])
    assert_same_rows(recommend_spark(spark, path, k=3, user_ids=users).toPandas(), local.recommend_batch(users, k=3))
    with pytest.raises(InputError, match="1 user ids are not in the model"):
        recommend_spark(spark, path, user_ids=[10_000])


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same rows after sorting by user and rank (scores up to float rounding)."""
    def ordered(frame):
        frame = frame.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
        return frame.assign(seed_item_ids=frame["seed_item_ids"].map(list), seed_titles=frame["seed_titles"].map(list))

    got, expected = ordered(got), ordered(expected)
    assert list(got.columns) == list(expected.columns)
    for column in got.columns.drop("score"):
        assert got[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(got["score"], expected["score"], atol=1e-5)


def test_fit_and_recommend_commands_on_spark(spark, tmp_path):
    from typer.testing import CliRunner

    from tastemap.cli import app

    runner = CliRunner()
    files = write_planted_files(tmp_path, n_users=16)
    data = [files[1], files[3], "--vectors", files[5], "--topics", "8", "--coarse-topics", "4"]
    for engine in ("local", "spark"):
        result = runner.invoke(app, ["fit", *data, "--out", str(tmp_path / engine), "--engine", engine])
        assert result.exit_code == 0, result.output
    assert any("collaborative weights fitted on" in line and "spark" in line for line in result.output.splitlines())
    local, on_spark = (TastemapModel.load(tmp_path / engine) for engine in ("local", "spark"))
    assert_same_weights(on_spark.recommender.collaborative_, local.recommender.collaborative_)

    result = runner.invoke(app, ["recommend", "--model", str(tmp_path / "spark"), "--all", "--out",
                                 str(tmp_path / "recs.parquet"), "--k", "4", "--engine", "spark"])
    assert result.exit_code == 0, result.output
    assert "recommendations for 16 users" in result.output
    got = pd.read_parquet(tmp_path / "recs.parquet")
    assert (tmp_path / "recs.parquet").is_dir()
    assert_same_rows(got, on_spark.recommend_batch(k=4))

    result = runner.invoke(app, ["recommend", "--user", "3", "--engine", "spark"])
    assert result.exit_code == 2 and "--engine spark recommends for every user of a fitted model" in result.output
