"""Low-rank EASE on Spark: the passes over the user-item matrix run as Spark jobs.

>>> weights = low_rank_ease_spark(spark, "events.parquet", catalog["item_id"], rank=512)  # doctest: +SKIP

:func:`~tastemap.runtime.recommend.collaborative.low_rank_ease` sees the binarised user-item
matrix ``X`` (each user-item pair once, the columns restricted to the active items: those with
at least one event, in catalog order) only through products ``Xᵀ(X Q)``. Here the pairs are
hash-partitioned by user, each partition becomes one CSR block ``X_p`` of its users' rows (built
once and cached), and each product is ``Σ_p X_pᵀ(X_p Q)`` with ``Q`` broadcast, summed by
``treeReduce``. The driver runs the same
:func:`~tastemap.runtime.recommend.collaborative.randomized_eigh` and
:func:`~tastemap.runtime.recommend.collaborative.from_eigen` as one machine, so with the same
seed the weights equal the single-machine ones up to float rounding (the sum runs in another
order). Up to ``rank`` active items, ``XᵀX`` itself is summed and decomposed exactly.

Cost: one pass over the cached blocks per product (``N_POWER_ITERATIONS + 2`` of them); each
task returns, and the driver holds, a few float32 ``[n_active, rank + OVERSAMPLE]`` arrays.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.events import EVENT_COLUMNS_FIX, EventColumns
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.tables import check_columns
from tastemap.runtime.recommend.collaborative import LowRankEASE, check_parameters, from_eigen, randomized_eigh
from tastemap.runtime.spark.session import spark_errors

logger = logging.getLogger(__name__)

TREE_DEPTH = 2
"""Depth of the ``treeReduce`` that sums the per-partition products."""
_BLOCK_SCHEMA = "indptr binary, indices binary, n_rows long"


def low_rank_ease_spark(spark, events, item_ids: Sequence, *, l2: float = 500.0, rank: int = 512, seed: int = 0,
                        columns: EventColumns = EventColumns(), partitions: int | None = None) -> LowRankEASE:
    """:func:`~tastemap.runtime.recommend.collaborative.low_rank_ease` of the events, on Spark.

    ``events``: a Spark DataFrame or a table Spark reads (Parquet file or folder, CSV, JSONL) with
    the user and item columns named in ``columns``; ``item_ids`` ``[n_items]``: the catalog's ids
    in catalog order (the rows of the weights). Item ids are matched as text; events of other
    items, and events without a user or item, are left out. Pass the events the fit uses (after
    validation and any held-out split): users without an event of positive weight, which
    ``align_events`` drops, are kept here. ``partitions``: user partitions (default: Spark's
    default parallelism). Returns float32 factors ``[n_items, min(rank, n_active)]``.
    """
    from pyspark.sql import functions as F

    check_parameters(l2, rank)
    if partitions is not None and not (isinstance(partitions, (int, np.integer)) and partitions >= 1):
        raise InputError(f"partitions={partitions!r} should be None (Spark's default parallelism) or an integer >= 1")
    if isinstance(events, (str, Path)):
        from tastemap.runtime.spark.session import read_spark_table

        events = read_spark_table(spark, events, what="events")
    check_columns("events", events.columns, [columns.user_id, columns.item_id], fix=EVENT_COLUMNS_FIX)
    item_ids = np.asarray(item_ids)
    keys = spark.createDataFrame(pd.DataFrame({"_key": item_ids.astype(str), "_item": np.arange(item_ids.size)}))
    pairs = (events.select(F.col(columns.user_id).alias("_user"), F.col(columns.item_id).cast("string").alias("_key"))
             .where(F.col("_user").isNotNull())
             .join(keys, "_key").select("_user", "_item"))
    with spark_errors():
        active = np.sort(np.array([row["_item"] for row in pairs.select("_item").distinct().collect()], np.int64))
    if active.size == 0:
        raise InputError(f"none of the events name an item of the catalog's {item_ids.size} items (e.g. "
                         f"{item_ids[:3].tolist()}); check that the item_id columns of both hold the same ids")
    n_parts = int(partitions or spark.sparkContext.defaultParallelism)
    column_of = np.full(item_ids.size, -1, np.int32)
    column_of[active] = np.arange(active.size, dtype=np.int32)
    shared = spark.sparkContext.broadcast(column_of)
    blocks = user_blocks(pairs, shared, active.size, n_parts)
    try:
        squares, vectors = _eigen(spark.sparkContext, blocks, active.size, rank, seed)
    finally:
        blocks.unpersist()
        shared.destroy()
    logger.info("low-rank EASE on Spark: %d active items, %d user partitions", active.size, n_parts)
    return from_eigen(squares, vectors, active, item_ids.size, l2=l2, exact=active.size <= rank)


def low_rank_ease_spark_of(spark, train: Interactions, *, l2: float = 500.0, rank: int = 512, seed: int = 0,
                           partitions: int | None = None) -> LowRankEASE:
    """:func:`low_rank_ease_spark` of aligned training events: the weights
    ``low_rank_ease(train.matrix(), ...)`` gives on one machine. The distinct (user, item) index
    pairs go to Spark from this process."""
    if not isinstance(train, Interactions):
        raise InputError(f"train should be Interactions (align_events(events, catalog)); got {type(train).__name__}")
    matrix = train.matrix().tocoo()
    frame = spark.createDataFrame(pd.DataFrame({"user_id": matrix.row.astype(np.int64),
                                                "item_id": matrix.col.astype(np.int64)}))
    return low_rank_ease_spark(spark, frame, np.arange(train.n_items), l2=l2, rank=rank, seed=seed,
                               partitions=partitions)


def spark_collaborative(*, l2: float = 500.0, rank: int = 512, seed: int = 0, master: str | None = "local[2]",
                        partitions: int | None = None) -> Callable[[Interactions], LowRankEASE]:
    """A function ``train -> LowRankEASE`` that fits the weights on Spark (a session on ``master``,
    started at the first call), for ``TastemapModel.fit(..., collaborative=...)``."""
    check_parameters(l2, rank)

    def fit(train: Interactions) -> LowRankEASE:
        from tastemap.runtime.spark.session import spark_session

        return low_rank_ease_spark_of(spark_session(master), train, l2=l2, rank=rank, seed=seed, partitions=partitions)

    return fit


def user_blocks(pairs, column_of, n_active: int, n_parts: int):
    """A cached RDD of CSR float32 blocks ``[n_users_p, n_active]``, one per non-empty partition
    of ``n_parts`` by user: 1 where the user has the item (``pairs``: ``_user``, ``_item`` catalog
    index; ``column_of``: a broadcast int32 ``[n_items]``, each item's active column)."""
    n_active = int(n_active)

    def build(batches):
        block = partition_block(list(batches), column_of.value, n_active)
        if block is not None:
            yield block

    rows = pairs.repartition(n_parts, "_user").mapInArrow(build, _BLOCK_SCHEMA)
    return rows.rdd.map(lambda row: _csr(row, n_active)).cache()


def partition_block(batches: list[pa.RecordBatch], column_of: np.ndarray, n_active: int) -> pa.RecordBatch | None:
    """One partition's ``_user``, ``_item`` pairs as a one-row batch: the binarised CSR block
    ``[n_users_p, n_active]``'s ``indptr`` (int64) and ``indices`` (int32; ``column_of``
    ``[n_items]`` maps a catalog index to its active column) as bytes, and its row count (None
    for an empty partition). Runs on the executors."""
    batches = [batch for batch in batches if batch.num_rows]
    if not batches:
        return None
    table = pa.Table.from_batches(batches)
    users, _ = pd.factorize(table.column("_user").to_numpy())
    columns = column_of[table.column("_item").to_numpy()]
    block = sparse.csr_matrix((np.ones(users.size), (users, columns)), shape=(int(users.max()) + 1, n_active))
    block.sum_duplicates()  # a repeated pair is one entry; _csr gives every entry the value 1
    return pa.RecordBatch.from_pydict({"indptr": [block.indptr.astype(np.int64).tobytes()],
                                       "indices": [block.indices.astype(np.int32).tobytes()],
                                       "n_rows": [block.shape[0]]})


def _csr(row, n_columns: int) -> sparse.csr_matrix:
    """A block row of :func:`partition_block` as CSR float32 ``[n_rows, n_columns]`` of ones (the
    range finder's products stay float32, as on one machine)."""
    indices = np.frombuffer(row["indices"], np.int32).copy()
    return sparse.csr_matrix((np.ones(indices.size, np.float32), indices, np.frombuffer(row["indptr"], np.int64).copy()),
                             shape=(row["n_rows"], n_columns))


def _eigen(context, blocks, n_active: int, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs ``(squares [r], vectors [n_active, r])`` of ``XᵀX``: all of them (exact) up to
    ``rank`` active items, else the ``rank`` leading ones (randomised, one Spark job per product)."""
    with spark_errors():
        if n_active <= rank:
            gram = blocks.map(lambda block: (block.T @ block).toarray()).treeReduce(np.add, depth=TREE_DEPTH)
            return np.linalg.eigh(gram.astype(np.float64))

        def gram_times(q: np.ndarray) -> np.ndarray:
            shared = context.broadcast(q)
            try:
                return blocks.map(lambda block: block.T @ (block @ shared.value)).treeReduce(np.add, depth=TREE_DEPTH)
            finally:
                shared.destroy()

        return randomized_eigh(gram_times, n_active, rank, seed=seed)
