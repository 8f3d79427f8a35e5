"""The streaming update on Spark (local[2], file source, availableNow) against the single-machine update."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from planted import make_planted, make_recommender  # noqa: E402
from tastemap.runtime.io.events import align_events  # noqa: E402
from tastemap.runtime.pipeline.model import TastemapModel  # noqa: E402

from local_spark import local_spark  # noqa: E402

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


@pytest.fixture(scope="module")
def spark():
    with local_spark("tastemap-stream-tests") as session:
        yield session


def new_files(truth, folder):
    """Two event files: old users 3 and 17 (3 in both), new users 1001 and 1002 (1001 in both),
    one unknown item and one duplicate."""
    later = 1_700_000_000
    items = [np.flatnonzero(truth.item_topics == t) for t in range(4)]
    first = [(3, items[0][5], later), (17, items[2][1], later), (1001, items[1][0], later), (1001, 99_999, later)]
    second = [(3, items[0][6], later + 50), (1001, items[1][1], later + 8), (1001, items[1][0], later),
              (1002, items[3][2], later + 1)]
    frames = []
    for offset, (name, rows) in enumerate((("part-0.parquet", first), ("part-1.parquet", second))):
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")
        frame["weight"] = 1.0
        frame.to_parquet(folder / name, index=False)
        # Spark reads the oldest file first, by modification time in milliseconds: two files
        # written within one millisecond came in either order (and 1001's row of the second
        # batch is a duplicate when part-1 comes first)
        os.utime(folder / name, (later - 60 + offset, later - 60 + offset))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_streaming_update_equals_the_single_machine_update(spark, tmp_path):
    from tastemap.runtime.spark.session import spark_ready
    from tastemap.runtime.spark.stream_update import stream_update

    events, catalog, vectors, truth = make_planted(40)
    data, _ = align_events(events, catalog)
    path = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender()).save(tmp_path / "model")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    frame = new_files(truth, incoming)

    summary = stream_update(path, incoming, out=tmp_path / "updates", master="local[2]", max_files_per_trigger=1)
    assert summary["micro-batches"] == 2
    assert (summary["n_events_read"], summary["n_unknown_items"], summary["n_duplicates"]) == (8, 1, 1)
    rows = pd.read_parquet(tmp_path / "updates" / "profiles")
    assert len(rows) == 6  # 3 and 1001 in both batches, 17 and 1002 in one
    latest = rows.sort_values("stream_events").groupby("user_id").tail(1).set_index("user_id").sort_index()
    assert latest.loc[3, "stream_events"] == 2 and latest.loc[1001, "stream_events"] == 2

    local = TastemapModel.load(path)
    local.update(frame.assign(weight=np.float32(1.0)))
    from tastemap.runtime.interests.profile_io import profiles_table
    from tastemap.runtime.pipeline.model_update import take_profiles

    users = local.recommender.user_index_.get_indexer(latest.index)
    expected = spark_ready(profiles_table(take_profiles(local.profiles, users), local.item_ids,
                                          local.recommender.profiler_.item_titles_)).to_pandas().set_index("user_id")
    for column in ("n_events", "last_seen", "short_term", "long_term", "topics", "categories", "interests"):
        assert latest[column].map(_plain).tolist() == expected[column].map(_plain).tolist(), column
    np.testing.assert_allclose(np.stack(latest["vector"].to_numpy()), np.stack(expected["vector"].to_numpy()),
                               atol=1e-6)
    assert latest["segment"].tolist() == local.segmenter.labels_[users].tolist()

    from typer.testing import CliRunner

    from tastemap.cli import app

    result = CliRunner().invoke(app, ["update", str(path), "--engine", "spark", "--stream", str(incoming),
                                      "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "Streaming update (Spark)" in result.output and len(pd.read_parquet(tmp_path / "again" / "profiles")) == 4
    result = CliRunner().invoke(app, ["update", str(path), "new.csv", "--engine", "spark", "--stream", str(incoming)])
    assert result.exit_code == 2 and "give no EVENTS" in result.output


def _plain(value):
    """Nested numpy arrays (as pandas reads list columns) as lists, for comparison."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 6)
    return value
