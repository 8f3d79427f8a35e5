"""Online updates on Spark: new event files folded into a fitted model's users by a Structured
Streaming job.

>>> stream_update("model/", "incoming/")          # doctest: +SKIP

The job reads Parquet event files as they arrive in a folder (``user_id, item_id, timestamp`` and
optionally ``weight``; ids of the model's types), groups them by user and runs
``applyInPandasWithState``: a user's state holds the events streamed so far (item rows,
timestamps, weights, as JSON lists); each micro-batch adds the new ones (duplicates of stored or earlier events
dropped, events of items the model does not hold counted and dropped) and re-profiles the user
from the events stored in the model plus the streamed ones, with the fitted topics, through the
same :meth:`InterestProfiler.transform <tastemap.runtime.interests.profiles.InterestProfiler.transform>`
as ``tastemap update``; the user is assigned to the nearest fitted segment. So a user's latest
row equals the single-machine update of the same events.

Each touched user gives one row per micro-batch (the columns of ``profiles.parquet`` with plain
string labels, plus ``segment`` and ``stream_events``, the number of streamed events folded in so
far: the latest row of a user has the largest) appended to ``OUT/profiles/`` by the Parquet file
sink; ``OUT/checkpoint/`` makes the job resumable and exactly-once. The model directory itself is
not changed (``tastemap update`` folds events into it); new items need ``tastemap update
--catalog`` first. The fitted profiler and the stored events are broadcast to the executors.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tastemap.errors import InputError
from tastemap.runtime.interests.profile_io import profiles_table
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.spark.session import spark_errors, spark_ready, spark_session

logger = logging.getLogger(__name__)

COUNTERS = ("n_events_read", "n_duplicates", "n_unknown_items")
EXTRA_COLUMNS = (("segment", pa.int32()), ("stream_events", pa.int64()))


@dataclass
class StreamContext:
    """What every executor needs, broadcast once: the fitted profiler (without the training
    profiles), the segmenter, the item ids and titles, and each stored user's events
    (``user_id -> (item rows, timestamps, weights)``)."""

    profiler: object
    segmenter: object
    item_ids: np.ndarray
    titles: np.ndarray
    stored: dict


def stream_update(model_dir: str | Path, source: str | Path, *, out: str | Path | None = None,
                  checkpoint: str | Path | None = None, master: str | None = "local[2]",
                  interval: float | None = None, max_files_per_trigger: int | None = None,
                  session_config: dict | None = None) -> dict:
    """Run the streaming update of the fitted model in ``model_dir`` over the event files of
    ``source``. ``out`` (default: ``<model_dir>-updates``) receives ``profiles/`` and, unless
    given, ``checkpoint/``. ``interval=None`` processes the files present and stops
    (``availableNow``); a number of seconds keeps the job running with that trigger until it is
    interrupted. Returns a summary (micro-batches, rows written, counters, seconds)."""
    from tastemap.runtime.pipeline.model import TastemapModel

    started = time.perf_counter()
    model_dir, source = Path(model_dir), Path(source)
    if not source.is_dir():
        raise InputError(f"--stream {source} is not a folder; give the folder where new event files arrive")
    out = Path(out) if out is not None else model_dir.parent / f"{model_dir.name}-updates"
    checkpoint = Path(checkpoint) if checkpoint is not None else out / "checkpoint"
    model = TastemapModel.load(model_dir)
    spark = spark_session(master, config=session_config)
    query, counters = start_stream(spark, model, source, out / "profiles", checkpoint, interval=interval,
                                   max_files_per_trigger=max_files_per_trigger)
    with spark_errors():
        query.awaitTermination()
        if query.exception() is not None:
            raise query.exception()
    batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
    return {"micro-batches": len(batches), "profile rows in the output": _count_rows(spark, out / "profiles"),
            **{name: int(acc.value) for name, acc in counters.items()},
            "output": str(out / "profiles"), "seconds": round(time.perf_counter() - started, 1)}


def start_stream(spark, model, source: Path, sink: Path, checkpoint: Path, *, interval: float | None = None,
                 max_files_per_trigger: int | None = None):
    """Start the query of the module docstring on a loaded
    :class:`~tastemap.runtime.pipeline.model.TastemapModel`; returns ``(StreamingQuery, counters)``
    (Spark accumulators of events read, duplicates and unknown items)."""
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.streaming.state import GroupStateTimeout
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    from tastemap.runtime.pipeline.model_update import check_updatable

    check_updatable(model.recommender)
    context = stream_context(model)
    id_type = lambda ids: LongType() if np.issubdtype(np.asarray(ids).dtype, np.integer) else StringType()  # noqa: E731
    events_schema = StructType([StructField("user_id", id_type(model.user_ids)),
                                StructField("item_id", id_type(model.item_ids)),
                                StructField("timestamp", LongType()), StructField("weight", DoubleType())])
    # JSON lists: pyspark 4.0's Python worker cannot read an array type in the state schema
    state_schema = StructType([StructField(name, StringType()) for name in ("items", "timestamps", "weights")])
    reader = spark.readStream.schema(events_schema)
    if max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", int(max_files_per_trigger))
    events = reader.parquet(str(source))
    sc = spark.sparkContext
    counters = {name: sc.accumulator(0) for name in COUNTERS}
    shared = sc.broadcast(context)
    schema = output_schema(context, model.profiles)

    def run(key, frames, state):
        return update_user(key, frames, state, shared=shared, counters=counters, schema=schema)

    updated = events.groupBy("user_id").applyInPandasWithState(
        run, from_arrow_schema(schema), state_schema, "append", GroupStateTimeout.NoTimeout)
    writer = (updated.writeStream.format("parquet").outputMode("append")
              .option("path", str(sink)).option("checkpointLocation", str(checkpoint)))
    writer = writer.trigger(availableNow=True) if interval is None else writer.trigger(processingTime=f"{interval} seconds")
    with spark_errors():
        return writer.start(), counters


def stream_context(model) -> StreamContext:
    """The broadcast part of a loaded model (see :class:`StreamContext`)."""
    from tastemap.runtime.pipeline.model_update import take_profiles

    recommender = model.recommender
    profiler = copy.copy(recommender.profiler_)
    profiler.profiles_ = take_profiles(profiler.profiles_, np.zeros(0, np.int64))  # fitted, without the users
    log = model.events
    order = np.argsort(log.users, kind="stable")
    bounds = np.searchsorted(log.users[order], np.arange(model.n_users + 1))
    stored = {_plain(user): (log.items[order[lo:hi]], log.timestamps[order[lo:hi]], log.weights[order[lo:hi]])
              for user, lo, hi in zip(model.user_ids, bounds[:-1], bounds[1:])}
    return StreamContext(profiler=profiler, segmenter=recommender.segmenter_, item_ids=np.asarray(recommender.item_ids_),
                         titles=np.asarray(profiler.item_titles_), stored=stored)


def output_schema(context: StreamContext, profiles) -> pa.Schema:
    """The Arrow schema of the output rows: ``profiles.parquet``'s columns with plain labels, plus
    ``segment`` and ``stream_events``."""
    from tastemap.runtime.pipeline.model_update import take_profiles

    probe = spark_ready(profiles_table(take_profiles(profiles, np.zeros(1, np.int64)), context.item_ids,
                                       context.titles))
    return pa.schema([*probe.schema, *(pa.field(name, kind) for name, kind in EXTRA_COLUMNS)])


def update_user(key, frames, state, *, shared, counters: dict, schema: pa.Schema):
    """The ``applyInPandasWithState`` function: one user's new events in, the user's updated
    profile row out (none when nothing new was folded in)."""
    context: StreamContext = shared.value
    user_id = _plain(key[0])
    new = pd.concat(list(frames), ignore_index=True)
    counters["n_events_read"].add(len(new))
    rows = pd.Index(context.item_ids).get_indexer(new["item_id"].to_numpy())
    known = rows >= 0
    counters["n_unknown_items"].add(int((~known).sum()))
    items, stamps = rows[known].astype(np.int64), new["timestamp"].to_numpy(np.int64)[known]
    weights = new["weight"].fillna(1.0).to_numpy(np.float64)[known].astype(np.float32)
    streamed = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)]
    if state.exists:
        streamed = [np.asarray(json.loads(part), dtype=kind.dtype) for part, kind in zip(state.get, streamed)]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    stored = context.stored.get(user_id, empty)
    before = pd.DataFrame({"item": np.concatenate([stored[0], streamed[0]]).astype(np.int64),
                           "time": np.concatenate([stored[1], streamed[1]]).astype(np.int64)})
    keep = ~pd.concat([before, pd.DataFrame({"item": items, "time": stamps})]).duplicated().to_numpy()[len(before):]
    counters["n_duplicates"].add(int((~keep).sum()))
    streamed = [np.concatenate([streamed[0], items[keep]]).astype(np.int64),
                np.concatenate([streamed[1], stamps[keep]]).astype(np.int64),
                np.concatenate([streamed[2], weights[keep]]).astype(np.float32)]
    state.update(tuple(json.dumps(part.tolist()) for part in streamed))
    if not keep.any():
        return
    history = [np.concatenate([old, add]) for old, add in zip(stored, streamed)]
    local = Interactions(users=np.zeros(history[0].size, np.int64), items=history[0].astype(np.int64),
                         timestamps=history[1].astype(np.int64), weights=history[2].astype(np.float32),
                         user_ids=np.array([user_id]), item_ids=context.item_ids)
    profiles = context.profiler.transform(local)
    segment = int(context.segmenter.predict(profiles)[0]) if context.segmenter is not None else -1
    table = spark_ready(profiles_table(profiles, context.item_ids, context.titles))
    table = table.append_column("segment", pa.array([segment], pa.int32()))
    table = table.append_column("stream_events", pa.array([streamed[0].size], pa.int64()))
    yield table.cast(schema).to_pandas()


def _count_rows(spark, path: Path) -> int:
    with spark_errors():
        return int(spark.read.parquet(str(path)).count()) if path.is_dir() else 0


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
