"""Batch recommendation on Spark: :meth:`TastemapModel.recommend_batch` over partitions of users.

>>> frame = recommend_spark(spark, "model/", k=10)          # doctest: +SKIP
>>> write_parquet(frame, "recs.parquet")                   # doctest: +SKIP

The driver opens the fitted model directory (checking every file's hash) and splits the users,
in the model's order, into contiguous ranges. Each task loads the same version of the model with
:meth:`~tastemap.runtime.pipeline.model.TastemapModel.load` (once per Python worker, kept for
the worker's later tasks) and returns the rows of
:meth:`~tastemap.runtime.pipeline.model.TastemapModel.recommend_batch` for its users, so the
rows equal the single-machine ones; the partitions follow the users' order, so the Parquet
parts read in name order hold them in the same order too. The model directory must be on a file
system every executor sees, and must not get a new version while the job runs (a task that
finds another version stops the job with a :class:`~tastemap.errors.FittedModelError`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from tastemap.errors import FittedModelError, InputError
from tastemap.runtime.pipeline import model_io
from tastemap.runtime.spark.session import spark_errors, write_parquet

logger = logging.getLogger(__name__)

_MODELS: dict = {}
"""The model a Python worker loaded last: ``(home, version) -> TastemapModel``."""


def recommend_schema(user_type: pa.DataType, item_type: pa.DataType) -> pa.Schema:
    """The Arrow schema of ``recommend_batch`` rows for user ids of ``user_type`` and item ids of
    ``item_type``."""
    string = pa.string()
    return pa.schema([("user_id", user_type), ("rank", pa.int64()), ("item_id", item_type), ("title", string),
                      ("score", pa.float64()), ("interest", pa.int64()), ("interest_label", string),
                      ("topic", string), ("layer", string), ("seed_item_ids", pa.list_(item_type)),
                      ("seed_titles", pa.list_(string)), ("explanation", string)])


def recommend_spark(spark, model_dir: str | Path, *, k: int = 20, user_ids: Sequence | None = None,
                    partitions: int | None = None):
    """A lazy Spark DataFrame of the recommendations of the fitted model in ``model_dir`` for
    ``user_ids`` (default: every user, in the model's order), one row per (user, rank) as
    :meth:`~tastemap.runtime.pipeline.model.TastemapModel.recommend_batch` (:func:`recommend_schema`).
    ``partitions``: user ranges (default: Spark's default parallelism, at most one per user)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise InputError(f"k={k!r} should be an integer >= 1")
    if partitions is not None and not (isinstance(partitions, (int, np.integer)) and partitions >= 1):
        raise InputError(f"partitions={partitions!r} should be None (Spark's default parallelism) or an integer >= 1")
    home = Path(model_dir).absolute()
    model, version = load_version(home)  # checks every file's hash once, here
    if user_ids is None:
        positions = np.arange(model.n_users)
    else:
        positions = model.recommender.user_index_.get_indexer(list(user_ids))
        if (positions < 0).any():
            unknown = list(np.asarray(list(user_ids), dtype=object)[positions < 0][:5])
            raise InputError(f"{int((positions < 0).sum())} user ids are not in the model {home} (first: {unknown}); "
                             "update the model with their events first")
    schema = recommend_schema(_arrow_type(model.user_ids), _arrow_type(model.item_ids))
    n_parts = max(1, min(int(partitions or spark.sparkContext.defaultParallelism), positions.size))
    shared = spark.sparkContext.broadcast(positions.astype(np.int64))

    def run(batches):
        for batch in batches:
            yield from recommend_rows(batch.column(0).to_numpy(), shared.value, home=home, version=version, k=int(k),
                                      schema=schema)

    logger.info("recommendations on Spark: %d users of %s (version %s) in %d partitions", positions.size, home,
                version, n_parts)
    return spark.range(0, positions.size, numPartitions=n_parts).mapInArrow(run, from_arrow_schema(schema))


def recommend_rows(rows: np.ndarray, positions: np.ndarray, *, home: Path, version: int, k: int,
                   schema: pa.Schema) -> list[pa.RecordBatch]:
    """The recommendation rows of the users at ``positions[rows]`` (positions in the model's
    users) as record batches of ``schema``. Runs on the executors."""
    model = worker_model(home, version)
    users = model.user_ids[positions[rows]]
    frame = model.recommend_batch(list(users), k=k, n_jobs=1)  # Spark runs a task per core
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_batches()


def worker_model(home: Path, version: int):
    """The fitted model ``home`` at ``version``, loaded once per Python worker. Raises
    :class:`~tastemap.errors.FittedModelError` when ``home``'s current version is another one."""
    key = (str(home), version)
    if key not in _MODELS:
        model, found = load_version(home, verify=False)  # the driver checked this version's hashes
        if found != version:
            raise FittedModelError(f"{home} got version {found} while recommendations were computed from version "
                                   f"{version}; run the job again when no update is writing the model")
        _MODELS.clear()
        _MODELS[key] = model
    return _MODELS[key]


def load_version(home: Path, *, verify: bool = True):
    """``(model, version)``: the fitted model ``home`` loaded with
    :meth:`~tastemap.runtime.pipeline.model.TastemapModel.load` and the number of the version it
    holds. Raises :class:`~tastemap.errors.FittedModelError` when a writer published a version
    during the load (run again)."""
    from tastemap.runtime.pipeline.model import TastemapModel

    before = model_io.current_number(home)
    model = TastemapModel.load(home, verify=verify)
    after = model_io.current_number(home)
    if before != after:
        raise FittedModelError(f"{home} got a new version ({after}) while it was loaded (version {before}); "
                               "run the job again")
    return model, after


@dataclass(frozen=True)
class SparkRecommendSummary:
    """What :func:`recommend_with_spark` wrote: ``n_rows`` rows for ``n_users`` users to ``out``
    (a Parquet folder) in wall ``seconds``."""

    out: Path
    n_rows: int
    n_users: int
    seconds: float


def recommend_with_spark(model_dir: str | Path, out: str | Path, *, k: int = 20, master: str | None = None,
                         partitions: int | None = None) -> SparkRecommendSummary:
    """``tastemap recommend --model DIR --all --engine spark``: every user's recommendations,
    written to ``out`` as a folder of Parquet parts (see :func:`~tastemap.runtime.spark.session.write_parquet`)."""
    from pyspark.sql import functions as F

    from tastemap.runtime.spark.session import spark_session

    started = time.perf_counter()
    spark = spark_session(master)
    written = write_parquet(recommend_spark(spark, model_dir, k=k, partitions=partitions), out)
    with spark_errors():
        counts = spark.read.parquet(str(written)).agg(F.count("*").alias("rows"),
                                                      F.countDistinct("user_id").alias("users")).first()
    return SparkRecommendSummary(out=written, n_rows=int(counts["rows"]), n_users=int(counts["users"]),
                                 seconds=time.perf_counter() - started)


def _arrow_type(ids: np.ndarray) -> pa.DataType:
    """The Arrow type of an id array (integers or text)."""
    kind = pa.array(ids[:1], from_pandas=True).type if len(ids) else pa.string()
    return pa.string() if pa.types.is_large_string(kind) else kind
