"""Interest profiles on Spark: ``groupBy(user).applyInPandas`` over the single-machine profiler.

>>> result = profile(events, catalog, item_vectors, InterestProfiler(n_topics=50))  # doctest: +SKIP
>>> write_spark_profiles(result, "profiles/")                                       # doctest: +SKIP

The method is not written twice. On the driver, an :class:`InterestProfiler` is fitted on the
catalog (global topic tree, category tree, unit item vectors) with a small sample of the events;
its fitted state depends on the catalog only. The fitted profiler is broadcast, and each group of
events (one user, or one hash bucket of users) goes through the same public functions as on one
machine: :func:`~tastemap.runtime.io.events.validate_events`,
:func:`~tastemap.runtime.io.events.align_events`, :meth:`InterestProfiler.transform` and
:func:`~tastemap.runtime.interests.profile_io.profiles_table`. Every layer and interest cluster of a user
depends on that user's events only, so a user's row equals the single-machine one.

One global quantity is computed on Spark first, so that per-group validation matches the single
machine: the rating scale (the largest rating of the whole log, unless given). Row numbers in
validation errors count within the group's events. ``time_reference="global"`` (ages measured
from the whole log's latest event) is not supported on Spark: use the default ``"user"``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tastemap.errors import InputError
from tastemap.runtime.io.events import EVENT_COLUMNS_FIX, EventColumns, align_events, validate_events
from tastemap.runtime.io.tables import check_columns
from tastemap.runtime.interests.profile_io import SCHEMA_VERSION, profiles_table
from tastemap.runtime.io.outputs import write_atomically
from tastemap.runtime.interests.profiles import InterestProfiler
from tastemap.runtime.spark.session import spark_errors, spark_ready, write_parquet

logger = logging.getLogger(__name__)

SCHEMA_FILE = "profiles.schema.json"
COUNTERS = ("n_events_read", "n_duplicates", "n_unknown_items")
_KEYS: dict = {}


@dataclass
class SparkProfiles:
    """The result of :func:`profile`: ``frame`` (a lazy Spark DataFrame, one row per user, the
    columns of ``profiles.parquet``), the ``profiler`` fitted on the driver (topic tree, item ids,
    titles) and ``counters`` (Spark accumulators of events read, duplicates and unknown items,
    filled when the frame is computed; a retried task may count twice)."""

    frame: object
    profiler: InterestProfiler
    counters: dict

    def report(self) -> dict:
        """Counter values: ``n_events_read``, ``n_duplicates``, ``n_unknown_items``."""
        return {name: int(acc.value) for name, acc in self.counters.items()}

    def schema_metadata(self) -> dict:
        """Topic and category names per level: the metadata ``profiles.parquet`` carries on one machine."""
        tree, levels = self.profiler.topic_tree_, self.profiler.category_levels_
        return {"schema_version": SCHEMA_VERSION,
                "topic_names": [list(map(str, level.names)) for level in tree.levels],
                "category_names": [list(map(str, level.names)) for level in levels]}


def profile(events, catalog: pd.DataFrame, item_vectors, profiler: InterestProfiler, *,
            columns: EventColumns = EventColumns(), buckets: int | None = None,
            sample_rows: int = 10_000) -> SparkProfiles:
    """Profile every user of ``events`` (a Spark DataFrame of raw events with the names in
    ``columns``) against ``catalog`` (validated, from ``read_catalog``) and ``item_vectors``
    (``[n_items, dim]`` in catalog order, or an encoder).

    ``buckets=None`` groups by user (one ``applyInPandas`` call per user); ``buckets=n`` groups
    users into ``n`` hash buckets, each profiled in one vectorised call (far less per-call
    overhead, same rows). ``sample_rows`` events feed the driver-side fit of a clone of
    ``profiler`` (an unfitted template, left unchanged; the fitted one is ``result.profiler``).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
    from sklearn.base import clone

    if profiler.time_reference != "user":
        raise InputError(f"time_reference={profiler.time_reference!r} is not supported on Spark; use 'user' "
                         "(ages measured from each user's latest event)")
    if buckets is not None and buckets < 1:
        raise InputError(f"buckets={buckets} should be None (group by user) or >= 1")
    check_columns("events", events.columns, [columns.user_id, columns.item_id, columns.timestamp],
                  fix=EVENT_COLUMNS_FIX)
    columns = _with_rating_scale(events, columns)
    spark = events.sparkSession
    with spark_errors():
        sample = validate_events(events.limit(sample_rows).toPandas(), columns, source="events")
    profiler = clone(profiler).fit(sample, catalog, item_vectors)
    logger.info("profiler fitted on the driver: %d items, topics %s", profiler.item_ids_.size,
                [level.n_topics for level in profiler.topic_tree_.levels])
    context = spark.sparkContext
    counters = {name: context.accumulator(0) for name in COUNTERS}
    shared = context.broadcast(profiler)
    probe = spark_ready(_profile_table(profiler, sample))
    arrow_schema = probe.schema

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return profile_group(group, shared=shared, columns=columns, counters=counters, schema=arrow_schema)

    schema = from_arrow_schema(probe.schema)
    if buckets is None:
        grouped = events.groupBy(columns.user_id)
    else:
        grouped = events.groupBy((F.abs(F.xxhash64(columns.user_id)) % buckets).alias("_bucket"))
    frame = grouped.applyInPandas(run, schema)
    return SparkProfiles(frame=frame, profiler=profiler, counters=counters)


def profile_group(frame: pd.DataFrame, *, shared, columns: EventColumns, counters: dict,
                  schema: pa.Schema) -> pd.DataFrame:
    """The ``applyInPandas`` function: raw events of one group in, one profile row per user out."""
    profiler = shared.value
    events = validate_events(frame, columns, source="events")
    known = np.isin(events["item_id"].to_numpy().astype(str), _catalog_keys(profiler))
    counters["n_events_read"].add(len(frame))
    if not known.any():  # a user whose every event names an unknown item has no profile
        counters["n_unknown_items"].add(len(frame))
        return schema.empty_table().to_pandas()
    catalog = pd.DataFrame({"item_id": profiler.item_ids_})
    interactions, report = align_events(events, catalog)
    counters["n_duplicates"].add(report.n_duplicates)
    counters["n_unknown_items"].add(report.n_unknown_items)
    table = profiles_table(profiler.transform(interactions), profiler.item_ids_, profiler.item_titles_)
    return spark_ready(table).to_pandas()


def write_spark_profiles(result: SparkProfiles, out_dir: str | Path, *, extra: dict | None = None) -> dict[str, Path]:
    """Run the job and write ``out_dir``: ``profiles.parquet/`` (a folder of Parquet parts, the
    single-machine columns with plain string labels), ``topics.json`` (as on one machine) and
    ``profiles.schema.json`` (topic and category names per level). ``extra`` goes into
    ``topics.json``. Each appears only when complete."""
    out_dir = Path(out_dir)
    parquet = write_parquet(result.frame, out_dir / "profiles.parquet")
    profiler = result.profiler
    topics = {"schema_version": SCHEMA_VERSION, "backend": profiler.backend_, "engine": "spark",
              **result.report(), **(extra or {}),
              **profiler.topic_tree_.to_dict(profiler.item_ids_, profiler.item_titles_)}
    meta = result.schema_metadata()
    written = write_atomically(out_dir, {
        "topics.json": lambda path: path.write_text(json.dumps(topics, indent=1, ensure_ascii=False)),
        SCHEMA_FILE: lambda path: path.write_text(json.dumps(meta, ensure_ascii=False)),
    })
    return {"profiles.parquet": parquet, **written}


def _with_rating_scale(events, columns: EventColumns) -> EventColumns:
    """``columns`` with ``rating_scale`` set to the largest rating of the whole log (as
    :func:`validate_events` uses on one machine) when ratings are present and no scale is given."""
    from pyspark.sql import functions as F

    if columns.rating_scale is not None or columns.rating not in events.columns:
        return columns
    with spark_errors():
        scale = events.agg(F.max(F.col(columns.rating).cast("double"))).first()[0]
    if scale is None or not scale > 0:
        return columns
    return dataclasses.replace(columns, rating_scale=float(scale))


def _profile_table(profiler: InterestProfiler, events: pd.DataFrame) -> pa.Table:
    interactions, _ = align_events(events, pd.DataFrame({"item_id": profiler.item_ids_}))
    return profiles_table(profiler.transform(interactions), profiler.item_ids_, profiler.item_titles_)


def _catalog_keys(profiler: InterestProfiler) -> np.ndarray:
    """Catalog item ids as strings (compared as :func:`align_events` does), once per worker."""
    if _KEYS.get("profiler") is not profiler:
        _KEYS.update(profiler=profiler, keys=np.asarray(profiler.item_ids_).astype(str))
    return _KEYS["keys"]


@dataclass(frozen=True)
class SparkProfileSummary:
    """What :func:`profile_with_spark` wrote: ``n_users`` profile rows, the event counters, the
    topics per level, the topic backend and wall ``seconds``."""

    out: Path
    n_users: int
    report: dict
    n_topics: list
    backend: str
    seconds: float


def profile_with_spark(events: str | Path, catalog: pd.DataFrame, out: str | Path, *, profiler: InterestProfiler,
                       item_vectors, columns: EventColumns = EventColumns(), master: str | None = None,
                       buckets: int | None = None, extra: dict | None = None) -> SparkProfileSummary:
    """``tastemap profile --engine spark``: read the events file (Parquet file or folder, CSV,
    JSONL) with Spark, profile every user and write ``out`` (see :func:`write_spark_profiles`)."""
    import time

    from tastemap.runtime.spark.session import read_spark_table, spark_session

    started = time.perf_counter()
    spark = spark_session(master)
    frame = read_spark_table(spark, events, what="events")
    result = profile(frame, catalog, item_vectors, profiler, columns=columns, buckets=buckets)
    written = write_spark_profiles(result, out, extra=extra)
    with spark_errors():
        n_users = spark.read.parquet(str(written["profiles.parquet"])).count()
    return SparkProfileSummary(out=Path(out), n_users=n_users, report=result.report(),
                               n_topics=[level.n_topics for level in result.profiler.topic_tree_.levels],
                               backend=result.profiler.backend_, seconds=time.perf_counter() - started)
