"""User segments on Spark MLlib: KMeans, GaussianMixture and BisectingKMeans on profile vectors.

>>> frame, meta = read_spark_profiles(spark, "profiles/")                    # doctest: +SKIP
>>> result = SparkSegmenter(method="kmeans", n_segments=8).fit(frame, meta)   # doctest: +SKIP

The features are the single-machine ones: :func:`~tastemap.runtime.interests.segments.profile_features`
(Hellinger embeddings of the fine topic and/or top-level category weights), computed per Arrow
batch on the executors. The clustering runs on MLlib: ``kmeans`` (``KMeans``), ``gmm``
(``GaussianMixture``, full covariance) and ``bisecting`` (``BisectingKMeans``: a top-down
hierarchy, MLlib's hierarchical clustering; Ward agglomerative clustering has no MLlib
implementation). ``k`` is given or chosen over ``k_range``: by the silhouette
(``ClusteringEvaluator``, squared Euclidean) for kmeans and bisecting, by the BIC for gmm.
Segments are numbered by decreasing size and labelled by the single-machine
:func:`~tastemap.runtime.interests.segments.describe_segments` on the per-segment mean weights.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.profile_io import layer_matrix, profiles_metadata
from tastemap.runtime.io.outputs import write_atomically
from tastemap.runtime.interests.profiles import UserProfiles
from tastemap.runtime.interests.segments import FEATURES, SEGMENTS_SCHEMA, candidate_ks, describe_segments, profile_features
from tastemap.runtime.spark.session import spark_errors, write_parquet

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "gmm", "bisecting")


def read_spark_profiles(spark, path: str | Path):
    """``(frame, meta)``: the profiles as a Spark DataFrame and the topic and category names per
    level. ``path`` is an output folder of ``tastemap profile`` (either engine) or its
    ``profiles.parquet`` (a file written on one machine, or a folder of parts written by Spark)."""
    from tastemap.runtime.spark.profile import SCHEMA_FILE

    path = Path(path)
    parquet = path / "profiles.parquet" if (path / "profiles.parquet").exists() else path
    if not parquet.exists():
        raise InputError(f"profiles {path} do not exist; run `tastemap profile` first")
    sidecar = parquet.parent / SCHEMA_FILE
    if parquet.is_dir() and sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    elif parquet.is_file():
        meta = profiles_metadata(pq.read_schema(parquet), parquet)
    else:
        raise InputError(f"{parquet} is a folder without {SCHEMA_FILE} beside it; "
                         "write it with `tastemap profile --engine spark`")
    with spark_errors():
        frame = spark.read.parquet(str(parquet))
    missing = {"user_id", "topics", "categories"} - set(frame.columns)
    if missing:
        raise InputError(f"{parquet} lacks the profile columns {sorted(missing)}")
    return frame, meta


def with_features(frame, meta: dict, features: str = "topics"):
    """``frame``'s ``user_id`` with ``features`` (MLlib vectors from :func:`profile_features`),
    ``topic_weights`` (fine topics) and ``category_weights`` (top-level categories) as arrays."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    if features not in FEATURES:
        raise InputError(f"features={features!r} is not supported; use one of {list(FEATURES)}")
    if "categories" in features and not meta["category_names"]:
        raise InputError("features include 'categories' but the catalog has no categories; use features='topics'")
    schema = "user_id {}, features array<float>, topic_weights array<float>, category_weights array<float>".format(
        frame.schema["user_id"].dataType.simpleString())

    def run(batches):
        for batch in batches:
            yield batch_features(batch, meta, features)

    return (frame.select("user_id", "topics", "categories").mapInArrow(run, schema)
            .withColumn("features", array_to_vector(F.col("features"))))


def batch_features(batch: pa.RecordBatch, meta: dict, features: str) -> pa.RecordBatch:
    """One Arrow batch of profile rows to ``user_id``, features and raw weights (runs on executors)."""
    profiles = batch_profiles(batch, meta)
    x, _ = profile_features(profiles, features)
    topic = profiles.topics[-1].toarray().astype(np.float32)
    category = profiles.categories[0].toarray() if profiles.categories else np.zeros((x.shape[0], 0))
    return pa.RecordBatch.from_arrays([batch.column("user_id"), _float_lists(x), _float_lists(topic),
                                       _float_lists(category)],
                                      names=["user_id", "features", "topic_weights", "category_weights"])


def batch_profiles(batch: pa.RecordBatch, meta: dict) -> UserProfiles:
    """The topic and category layers of a batch of profile rows as :class:`UserProfiles`."""
    n = batch.num_rows
    topic_names, category_names = meta["topic_names"], meta["category_names"]
    topics = [layer_matrix(batch.column("topics"), names, level) for level, names in enumerate(topic_names)]
    categories = [layer_matrix(batch.column("categories"), names, level) for level, names in enumerate(category_names)]
    empty = np.zeros(n, np.int64)
    return UserProfiles(user_ids=batch.column("user_id").to_numpy(zero_copy_only=False), n_events=empty,
                        last_seen=empty, topics=topics, topic_names=topic_names, short_term=None,
                        categories=categories, category_names=category_names)


@dataclass
class SparkSegments:
    """A fitted :class:`SparkSegmenter`'s output: ``users`` (a Spark DataFrame of ``user_id``,
    ``segment``), ``segments_`` (segment, size, share, label, top_topics, top_categories),
    ``centroids_`` ``[k, n_features]``, ``n_segments_``, ``criterion_`` (``silhouette``, ``bic``
    or ``given``), ``criterion_scores_`` ({k: score}) and ``model`` (the MLlib model)."""

    users: object
    segments_: pd.DataFrame
    centroids_: np.ndarray
    n_segments_: int
    criterion_: str
    criterion_scores_: dict
    model: object


class SparkSegmenter:
    """Segment users on Spark MLlib (see the module docstring).

    Parameters (keyword-only): ``method`` (``kmeans``, ``gmm``, ``bisecting``), ``n_segments``
    (None: choose over ``k_range``, inclusive), ``features`` (``topics``, ``categories``,
    ``topics+categories``), ``max_iter`` and ``seed``.
    """

    def __init__(self, *, method: str = "kmeans", n_segments: int | None = None, k_range: tuple[int, int] = (2, 12),
                 features: str = "topics", max_iter: int = 50, seed: int = 0):
        self.method = method
        self.n_segments = n_segments
        self.k_range = k_range
        self.features = features
        self.max_iter = max_iter
        self.seed = seed

    def _validate_params(self, n_users: int | None = None) -> list[int]:
        if self.method == "agglomerative":
            raise InputError("method='agglomerative' (Ward) has no Spark MLlib implementation; use method='bisecting' "
                             "(BisectingKMeans, a top-down hierarchy) or the local engine")
        if self.method not in METHODS:
            raise InputError(f"method={self.method!r} is not supported on Spark; use one of {list(METHODS)}")
        if n_users is None:
            return []
        return candidate_ks(self.n_segments, self.k_range, n_users)

    def fit(self, frame, meta: dict) -> SparkSegments:
        """Segment the users of ``frame`` (profile rows, from :func:`read_spark_profiles` or
        :func:`~tastemap.runtime.spark.profile.profile`) with topic/category names ``meta``."""
        from pyspark.sql import functions as F

        self._validate_params()
        data = with_features(frame, meta, self.features).cache()
        try:
            with spark_errors():
                n_users = data.count()
                candidates = self._validate_params(n_users)
                models, scores = {}, {}
                for k in candidates:
                    models[k] = self._estimator(k).fit(data)
                    if len(candidates) > 1:
                        scores[k] = self._score(models[k], data, n_users)
                if len(candidates) == 1:
                    best, criterion = candidates[0], "given"
                elif self.method == "gmm":
                    best, criterion = min(scores, key=lambda k: (scores[k], k)), "bic"
                else:
                    best, criterion = max(scores, key=lambda k: (scores[k], -k)), "silhouette"
                model = models[best]
                predicted = model.transform(data)
                sizes = np.zeros(best, np.int64)
                for row in predicted.groupBy("prediction").count().collect():
                    sizes[row["prediction"]] = row["count"]
                order = np.lexsort((np.arange(best), -sizes))
                remap = np.empty(best, np.int64)
                remap[order] = np.arange(best)
                mapping = F.array(*[F.lit(int(v)) for v in remap])
                predicted = predicted.withColumn("segment", F.element_at(mapping, F.col("prediction") + 1).cast("int"))
                segments = self._describe(predicted, meta, best, sizes[order], n_users)
                users = predicted.select("user_id", "segment")
        finally:
            data.unpersist()
        logger.info("spark segments: %s k=%d chosen by %s %s", self.method, best, criterion,
                    {k: round(v, 4) for k, v in scores.items()})
        return SparkSegments(users=users, segments_=segments, centroids_=_centers(model, self.method)[order],
                             n_segments_=best, criterion_=criterion, criterion_scores_=scores, model=model)

    def _estimator(self, k: int):
        from pyspark.ml.clustering import BisectingKMeans, GaussianMixture, KMeans

        common = dict(k=k, seed=self.seed, maxIter=self.max_iter, featuresCol="features")
        if self.method == "kmeans":
            return KMeans(**common)
        if self.method == "gmm":
            return GaussianMixture(**common)
        return BisectingKMeans(**common)

    def _score(self, model, data, n_users: int) -> float:
        if self.method == "gmm":
            d = len(model.gaussians[0].mean)
            k = len(model.weights)
            n_params = (k - 1) + k * d + k * d * (d + 1) / 2
            return float(-2.0 * model.summary.logLikelihood + n_params * math.log(n_users))
        from pyspark.ml.evaluation import ClusteringEvaluator

        return float(ClusteringEvaluator(featuresCol="features", predictionCol="prediction").evaluate(model.transform(data)))

    def _describe(self, predicted, meta: dict, k: int, sizes: np.ndarray, n_users: int) -> pd.DataFrame:
        """Labels from :func:`describe_segments` on one pseudo-user per segment: its mean weights."""
        from pyspark.ml.functions import array_to_vector
        from pyspark.ml.stat import Summarizer
        from pyspark.sql import functions as F

        means = (predicted.select("segment", array_to_vector("topic_weights").alias("t"),
                                  array_to_vector("category_weights").alias("c"))
                 .groupBy("segment")
                 .agg(Summarizer.mean(F.col("t")).alias("t"), Summarizer.mean(F.col("c")).alias("c"))
                 .collect())
        n_topics = len(meta["topic_names"][-1])
        n_categories = len(meta["category_names"][0]) if meta["category_names"] else 0
        topics, categories = np.zeros((k, n_topics), np.float32), np.zeros((k, n_categories), np.float32)
        for row in means:
            topics[row["segment"]] = row["t"].toArray()
            if n_categories:
                categories[row["segment"]] = row["c"].toArray()
        pseudo = UserProfiles(
            user_ids=np.arange(k), n_events=np.zeros(k, np.int64), last_seen=np.zeros(k, np.int64),
            topics=[sparse.csr_matrix(topics)], topic_names=[meta["topic_names"][-1]], short_term=None,
            categories=[sparse.csr_matrix(categories)] if n_categories else [],
            category_names=[meta["category_names"][0]] if n_categories else [])
        table = describe_segments(pseudo, np.arange(k), k)
        table["size"] = sizes.astype(int)
        table["share"] = sizes / max(n_users, 1)
        return table


def write_spark_segments(result: SparkSegments, segmenter: SparkSegmenter, out_dir: str | Path) -> dict[str, Path]:
    """Write ``segments.parquet`` (one row per segment, the single-machine schema, written by the
    driver) and ``user_segments.parquet/`` (user_id, segment; Parquet parts written by Spark)."""
    out_dir = Path(out_dir)
    users = write_parquet(result.users, out_dir / "user_segments.parquet")
    frame = result.segments_.copy()
    frame["centroid"] = [c.astype(np.float32) for c in result.centroids_]
    meta = {"engine": "spark", "method": segmenter.method, "features": segmenter.features,
            "criterion": result.criterion_,
            "criterion_scores": {str(k): v for k, v in result.criterion_scores_.items()},
            "backend": "spark-mllib", "seed": segmenter.seed}
    table = pa.Table.from_pandas(frame, schema=SEGMENTS_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"tastemap": json.dumps(meta).encode()})
    written = write_atomically(out_dir, {"segments.parquet": lambda path: pq.write_table(table, path)})
    return {**written, "user_segments.parquet": users}


def _float_lists(rows: np.ndarray) -> pa.Array:
    """``[n, d]`` array to an Arrow ``list<float>`` array of ``n`` rows."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    offsets = np.arange(rows.shape[0] + 1, dtype=np.int32) * rows.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.ravel()))


def _centers(model, method: str) -> np.ndarray:
    if method == "gmm":
        return np.stack([np.asarray(g.mean.toArray()) for g in model.gaussians]).astype(np.float32)
    return np.stack([np.asarray(c) for c in model.clusterCenters()]).astype(np.float32)


def segment_with_spark(profiles: str | Path, out: str | Path, *, segmenter: SparkSegmenter,
                       master: str | None = None) -> SparkSegments:
    """``tastemap segment --engine spark``: read profiles written by either engine, segment them
    on MLlib and write ``out`` (see :func:`write_spark_segments`)."""
    from tastemap.runtime.spark.session import spark_session

    spark = spark_session(master)
    frame, meta = read_spark_profiles(spark, profiles)
    result = segmenter.fit(frame, meta)
    write_spark_segments(result, segmenter, out)
    return result
