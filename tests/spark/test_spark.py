"""The Spark engine in local mode (local[2]) against the single-machine results on the same data.

One Spark session serves the whole module; data are a MovieLens subsample and the tiny model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tastemap.errors import InputError  # noqa: E402
from tastemap.runtime.io import events as data  # noqa: E402
from tastemap.runtime.io.events import MOVIELENS_COLUMNS, validate_events  # noqa: E402
from tastemap.runtime.io.tables import read_table  # noqa: E402
from tastemap.runtime.interests.profiles import InterestProfiler  # noqa: E402

from local_spark import local_spark  # noqa: E402

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

N_USERS = 24
COLUMNS = MOVIELENS_COLUMNS


@pytest.fixture(scope="module")
def spark():
    with local_spark("tastemap-tests", shuffle_partitions=4) as session:
        yield session


@pytest.fixture(scope="module")
def movielens():
    """(raw ratings of the first N_USERS users plus one duplicate and one unknown item, catalog,
    item vectors [n_items, 20]: genre one-hot plus seeded noise)."""
    _, catalog = data.load_movielens()
    raw = read_table(data.MOVIELENS_DIR / "ratings.csv.gz").astype(
        {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"})  # CSV values are text
    raw = raw[raw["userId"].isin(np.sort(raw["userId"].unique())[:N_USERS])].reset_index(drop=True)
    raw = pd.concat([raw, raw.iloc[[3]], raw.iloc[[5]].assign(movieId=-7)], ignore_index=True)
    genres = sorted({path[0] for paths in catalog["categories"] for path in paths})
    vectors = np.zeros((len(catalog), len(genres)), np.float32)
    for row, paths in enumerate(catalog["categories"]):
        vectors[row, [genres.index(path[0]) for path in paths]] = 1.0
    vectors += 0.3 * np.random.default_rng(0).standard_normal(vectors.shape).astype(np.float32)
    return raw, catalog, vectors


def make_profiler() -> InterestProfiler:
    return InterestProfiler(n_topics=12, n_coarse_topics=4, backend="sklearn", seed=0)


def test_embed_with_spark_equals_single_machine(spark, tiny_package, tmp_path):
    from tastemap.runtime.encode.encoder import Encoder
    from tastemap.runtime.spark.embed import embed_with_spark

    movies = read_table(data.MOVIELENS_DIR / "movies.csv.gz").head(300)
    texts = movies["title"] + ". " + movies["genres"].str.replace("|", ", ")
    texts.iloc[7] = ""  # an empty text is valid
    pd.DataFrame({"movieId": movies["movieId"], "text": texts}).to_parquet(tmp_path / "items.parquet")

    result = embed_with_spark(tmp_path / "items.parquet", tmp_path / "emb", text_col="text", id_col="movieId",
                              model=tiny_package, variant="int8", partitions=3)

    written = pd.read_parquet(tmp_path / "emb").set_index("movieId").loc[movies["movieId"]]
    assert list(written.columns) == ["embedding"]
    assert (result.n_rows, result.dim, result.partitions, result.threads) == (300, 32, 3, 1)
    got = np.stack(written["embedding"].to_numpy())
    expected = Encoder(tiny_package, variant="int8", threads=1).encode(texts.tolist())
    assert got.dtype == np.float32 and got.shape == (300, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_embed_null_text_is_a_clear_error(spark, tiny_package):
    from tastemap.runtime.spark.session import spark_errors
    from tastemap.runtime.spark.embed import embed

    frame = spark.createDataFrame([(1, "a love story"), (2, None)], "id long, title string")
    with pytest.raises(InputError, match=r"column 'title' holds 1 null value\(s\) in this batch"):
        with spark_errors():
            embed(frame, tiny_package, text_col="title").collect()
    with pytest.raises(InputError, match=r"embed: missing column\(s\) \['name'\]; it has \['id', 'title'\]"):
        embed(frame, tiny_package, text_col="name")


def test_spark_reader_shares_format_detection_and_messages(spark, tmp_path):
    from tastemap.runtime.spark.session import read_spark_table, spark_errors

    frame = pd.DataFrame({"item_id": [3, 1, 2], "title": ["a b", "c, d", "e"]})
    frame.to_csv(tmp_path / "items.tsv.gz", sep="\t", index=False)
    got = read_spark_table(spark, tmp_path / "items.tsv.gz").toPandas()
    pd.testing.assert_frame_equal(got, read_table(tmp_path / "items.tsv.gz"), check_dtype=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    for name, message in (("items.xlsx", "cannot tell the format from its name"), ("none.csv", "does not exist"),
                          ("bad.parquet", "bad.parquet cannot be read as Parquet: ")):
        with pytest.raises(InputError) as local:
            read_table(tmp_path / name, what="events")
        with pytest.raises(InputError, match=message) as remote:
            with spark_errors():
                read_spark_table(spark, tmp_path / name, what="events").collect()
        if name != "bad.parquet":  # the reason after the colon is each engine's own
            assert str(remote.value) == str(local.value)


@pytest.mark.parametrize("buckets", [None, 3])
def test_profiles_equal_single_machine(spark, movielens, buckets):
    from tastemap.runtime.interests.profile_io import profiles_table
    from tastemap.runtime.spark.profile import profile
    from tastemap.runtime.spark.session import spark_ready

    raw, catalog, vectors = movielens
    local = make_profiler()
    expected = spark_ready(profiles_table(local.fit_transform(validate_events(raw, COLUMNS), catalog, vectors),
                                           local.item_ids_, local.item_titles_)).to_pandas()

    result = profile(spark.createDataFrame(raw), catalog, vectors, make_profiler(), columns=COLUMNS, buckets=buckets)
    got = result.frame.toPandas().sort_values("user_id").reset_index(drop=True)

    assert result.report() == {"n_events_read": len(raw), "n_duplicates": 1, "n_unknown_items": 1}
    assert got["user_id"].tolist() == expected["user_id"].tolist() and len(got) == N_USERS
    for column in ("n_events", "last_seen"):
        assert got[column].tolist() == expected[column].tolist()

    def interests(frame):
        return [[(i["medoid_item_id"], i["size"], i["topic"], list(i["item_ids"]), round(float(i["importance"]), 5))
                 for i in row] for row in frame["interests"]]

    def ranked(frame, column, key):
        return [[(entry.get("level"), entry[key], round(float(entry["weight"]), 6)) for entry in row]
                for row in frame[column]]

    assert interests(got) == interests(expected)
    assert sum(len(row) for row in got["interests"]) > N_USERS  # users have several interests
    assert ranked(got, "topics", "topic") == ranked(expected, "topics", "topic")
    assert ranked(got, "short_term", "topic") == ranked(expected, "short_term", "topic")
    assert ranked(got, "categories", "category") == ranked(expected, "categories", "category")
    np.testing.assert_allclose(np.stack(got["vector"].map(np.asarray)), np.stack(expected["vector"].map(np.asarray)),
                               atol=1e-6)


def test_segments_on_mllib_match_single_machine_quality(spark, movielens, tmp_path):
    from sklearn.metrics import silhouette_score

    from tastemap.runtime.interests.profile_io import read_profiles, write_profiles
    from tastemap.runtime.interests.segments import UserSegmenter, profile_features
    from tastemap.runtime.spark.segment import SparkSegmenter, read_spark_profiles

    events, catalog = data.load_movielens()
    _, _, vectors = movielens
    profiler = make_profiler().fit(events, catalog, vectors)  # all 610 users
    write_profiles(profiler, tmp_path, jsonl=False)
    profiles = read_profiles(tmp_path)
    x, _ = profile_features(profiles, "topics")
    frame, meta = read_spark_profiles(spark, tmp_path)

    for method, local_method in (("kmeans", "kmeans"), ("bisecting", "agglomerative")):
        result = SparkSegmenter(method=method, n_segments=5, max_iter=20, seed=0).fit(frame, meta)
        labels = result.users.toPandas().set_index("user_id").loc[profiles.user_ids, "segment"].to_numpy()
        local = UserSegmenter(method=local_method, n_segments=5, backend="sklearn", seed=0).fit(profiles)
        assert np.bincount(labels, minlength=5).tolist() == result.segments_["size"].tolist()
        assert result.segments_["size"].is_monotonic_decreasing and result.centroids_.shape == (5, x.shape[1])
        assert silhouette_score(x, labels) >= silhouette_score(x, local.labels_) - 0.02, method


def test_profile_and_segment_cli_on_spark(spark, tmp_path, movielens):
    from typer.testing import CliRunner

    from tastemap.cli import app

    raw, _, vectors = movielens
    raw.to_parquet(tmp_path / "events.parquet")
    read_table(data.MOVIELENS_DIR / "movies.csv.gz").to_csv(tmp_path / "movies.csv", index=False)
    np.save(tmp_path / "vectors.npy", vectors)
    runner = CliRunner()
    result = runner.invoke(app, [
        "profile", str(tmp_path / "events.parquet"), str(tmp_path / "movies.csv"), "--out", str(tmp_path / "profiles"),
        "--vectors", str(tmp_path / "vectors.npy"), "--event-columns", "user_id=userId,item_id=movieId",
        "--catalog-columns", "item_id=movieId,categories=genres", "--topics", "12", "--coarse-topics", "4",
        "--backend", "sklearn", "--engine", "spark", "--buckets", "2"])
    assert result.exit_code == 0, result.output
    assert f"{len(raw):,}" in result.output and "1, 1" in result.output and "4 / 12" in result.output
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == [
        "profiles.parquet", "profiles.schema.json", "topics.json"]
    assert len(pd.read_parquet(tmp_path / "profiles" / "profiles.parquet")) == N_USERS

    args = ["segment", str(tmp_path / "profiles"), "--out", str(tmp_path / "segments"), "--engine", "spark"]
    result = runner.invoke(app, [*args, "--k-min", "2", "--k-max", "3"])
    assert result.exit_code == 0, result.output
    assert "silhouette" in result.output and "spark-mllib" in result.output
    segments = pd.read_parquet(tmp_path / "segments" / "segments.parquet")
    users = pd.read_parquet(tmp_path / "segments" / "user_segments.parquet")
    assert len(users) == N_USERS and segments["size"].sum() == N_USERS and len(segments) in (2, 3)

    result = runner.invoke(app, [*args, "--method", "agglomerative"])
    assert result.exit_code == 2
    assert "method='agglomerative' (Ward) has no Spark MLlib implementation" in result.output
