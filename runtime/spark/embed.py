"""Embeddings on Spark: a DataFrame with a text column in, the same rows plus an embedding out.

>>> frame = spark.read.parquet("items.parquet")                        # doctest: +SKIP
>>> embed(frame, "models/all-MiniLM-L6-v2", text_col="title").write.parquet("emb/")  # doctest: +SKIP

How it runs:

- the model package folder is shipped to every executor by Spark itself
  (``SparkContext.addFile(folder, recursive=True)``) and found there with ``SparkFiles.get``;
  the executor checks that its copy's ``manifest.json`` is the driver's (sha256) and
  :class:`~tastemap.runtime.encode.encoder.Encoder` checks every file it uses against the manifest;
- rows travel as Arrow batches (``mapInPandas``); each Python worker creates one ONNX Runtime
  session the first time it needs it and keeps it in a module-level cache (keyed by package
  path and manifest hash), so later batches and later tasks on that worker reuse it;
- each batch is encoded by the single-machine encoder: length-sorted, token-budget batches;
- ONNX Runtime threads per worker default to ``spark.task.cpus`` (1 unless set): Spark runs one
  worker per task slot, so workers x threads never exceeds the cores Spark was given.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tastemap.errors import InputError, ModelPackageError
from tastemap.runtime.encode.encoder import DEFAULT_MAX_TOKENS, Encoder
from tastemap.runtime.io.tables import TEXT_COLUMNS_FIX, check_columns
from tastemap.runtime.spark.session import read_spark_table, spark_session, write_parquet

logger = logging.getLogger(__name__)

EMBEDDING_COL = "embedding"
_ENCODERS: dict[tuple, Encoder] = {}
_SHIPPED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class ShippedPackage:
    """A model package registered with ``SparkContext.addFile``: its folder name (the
    ``SparkFiles`` key), the driver's path and the sha256 of its ``manifest.json``."""

    name: str
    path: str
    manifest_sha256: str


@dataclass(frozen=True)
class SparkEmbedResult:
    """What :func:`embed_with_spark` wrote: ``n_rows`` embeddings of ``dim`` floats in the Parquet
    folder ``out``, with the variant asked for, ONNX Runtime ``threads`` per Python worker,
    ``workers`` (task slots), ``partitions`` and wall ``seconds``."""

    out: Path
    n_rows: int
    dim: int
    variant: str
    threads: int
    workers: int
    partitions: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds else 0.0


def ship_package(spark, model_dir: str | Path) -> ShippedPackage:
    """Check ``model_dir`` on the driver and add it to the Spark job's files (once per session)."""
    from tastemap.package import MANIFEST, ModelPackage, sha256_file

    package = ModelPackage.load(model_dir)
    path = package.path.resolve()
    shipped = ShippedPackage(name=path.name, path=str(path), manifest_sha256=sha256_file(path / MANIFEST))
    key = (spark.sparkContext.applicationId, str(path))
    if key not in _SHIPPED:
        spark.sparkContext.addFile(str(path), recursive=True)
        _SHIPPED.add(key)
    return shipped


def worker_encoder(shipped: ShippedPackage, *, variant: str, device: str, threads: int, max_tokens: int) -> Encoder:
    """The loaded encoder of this Python worker for ``shipped``, created on first use and cached.

    Runs on an executor: finds the package with ``SparkFiles.get``, checks its manifest against
    the driver's hash, then loads the encoder (which checks each file's sha256).
    """
    from pyspark import SparkFiles

    from tastemap.package import MANIFEST, sha256_file

    path = Path(SparkFiles.get(shipped.name))
    key = (str(path), shipped.manifest_sha256, variant, device, threads, max_tokens)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        actual = sha256_file(path / MANIFEST) if (path / MANIFEST).is_file() else "missing"
        if actual != shipped.manifest_sha256:
            raise ModelPackageError(
                f"the executor's copy {path} of model package {shipped.path} has manifest sha256 "
                f"{actual[:12]}..., the driver's is {shipped.manifest_sha256[:12]}...; the package "
                "changed while the job ran: re-run the job"
            )
        # The tokenizer's thread pool (rayon) follows the same per-worker thread budget.
        os.environ.setdefault("RAYON_RS_NUM_CPUS", str(threads))
        encoder = Encoder(path, variant=variant, device=device, threads=threads, max_tokens=max_tokens).load()
        logger.info("worker pid %d: encoder %s provider=%s variant=%s threads=%d",
                    os.getpid(), path.name, encoder.provider, encoder.variant, threads)
        _ENCODERS[key] = encoder
    return encoder


def task_cpus(spark) -> int:
    """Cores Spark reserves per task (``spark.task.cpus``, default 1)."""
    return int(spark.conf.get("spark.task.cpus", "1"))


def embed(
    frame,
    model_dir: str | Path,
    *,
    text_col: str,
    out_col: str = EMBEDDING_COL,
    variant: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
):
    """``frame`` with an ``out_col`` column of ``array<float>`` embeddings (unit vectors, ``dim``
    floats) of the string column ``text_col``; lazy, like any Spark transformation.

    ``threads`` (ONNX Runtime intra-op threads per Python worker) defaults to ``spark.task.cpus``.
    Null texts raise :class:`InputError` when the job runs (wrap actions in
    :func:`~tastemap.runtime.spark.session.spark_errors`); empty strings are valid texts.
    """
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    check_columns("embed", frame.columns, [text_col], fix=TEXT_COLUMNS_FIX)
    if not isinstance(frame.schema[text_col].dataType, StringType):
        raise InputError(f"embed: column {text_col!r} has type {frame.schema[text_col].dataType.simpleString()}; "
                         "it should hold strings; cast it first")
    if out_col in frame.columns:
        raise InputError(f"embed: the frame already has a column {out_col!r}; choose another out_col")
    spark = frame.sparkSession
    threads = threads or task_cpus(spark)
    if threads < 1:
        raise InputError(f"threads={threads} should be >= 1")
    shipped = ship_package(spark, model_dir)
    schema = StructType([*frame.schema.fields, StructField(out_col, ArrayType(FloatType(), False), False)])

    def encode(batches: Iterator) -> Iterator:
        return encode_batches(batches, shipped=shipped, text_col=text_col, out_col=out_col, variant=variant,
                              device=device, threads=threads, max_tokens=max_tokens)

    return frame.mapInPandas(encode, schema)


def encode_batches(batches: Iterator, *, shipped: ShippedPackage, text_col: str, out_col: str, variant: str,
                   device: str, threads: int, max_tokens: int) -> Iterator:
    """The ``mapInPandas`` function: each pandas batch with ``out_col`` added (runs on executors)."""
    encoder = None
    for batch in batches:
        if encoder is None:
            encoder = worker_encoder(shipped, variant=variant, device=device, threads=threads, max_tokens=max_tokens)
        texts = batch[text_col]
        null = texts.isna().to_numpy()
        if null.any():
            raise InputError(f"embed: column {text_col!r} holds {int(null.sum())} null value(s) in this batch; "
                             f"fill or drop them first, e.g. frame.dropna(subset=[{text_col!r}])")
        vectors = encoder.encode(texts.tolist())
        yield batch.assign(**{out_col: list(vectors)})


def embed_with_spark(
    input: str | Path,
    out: str | Path,
    *,
    text_col: str,
    id_col: str | None = None,
    model: str | Path | None = None,
    master: str | None = None,
    variant: str = "auto",
    device: str = "auto",
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    threads: int | None = None,
    partitions: int | None = None,
) -> SparkEmbedResult:
    """``tastemap embed --engine spark``: read ``input`` (Parquet file or folder, CSV, JSONL),
    embed ``text_col`` and write the Parquet folder ``out`` (``id_col`` and ``embedding``, or
    every input column and ``embedding`` without ``id_col``). Rows are spread over
    ``partitions`` (default: at least Spark's default parallelism). ``out`` appears only when
    complete."""
    from tastemap.package import ModelPackage
    from tastemap.paths import resolve_model_dir

    model = resolve_model_dir(model)
    dim = ModelPackage.load(model).embedding_dim
    if partitions is not None and partitions < 1:
        raise InputError(f"partitions={partitions} should be >= 1")
    spark = spark_session(master)
    started = time.perf_counter()
    frame = read_spark_table(spark, input, what="input")
    check_columns(input, frame.columns, [text_col] + ([id_col] if id_col is not None else []), fix=TEXT_COLUMNS_FIX)
    if id_col is not None:
        frame = frame.select(id_col, text_col)
    workers = spark.sparkContext.defaultParallelism
    current = frame.rdd.getNumPartitions()
    wanted = partitions or max(current, workers)
    if wanted != current:
        frame = frame.repartition(wanted)
    threads = threads or task_cpus(spark)
    result = embed(frame, model, text_col=text_col, variant=variant, device=device, threads=threads,
                   max_tokens=max_tokens)
    if id_col is not None:
        result = result.drop(text_col)
    write_parquet(result, out)
    n_rows = spark.read.parquet(str(out)).count()
    seconds = time.perf_counter() - started
    return SparkEmbedResult(out=Path(out), n_rows=n_rows, dim=dim, variant=variant, threads=threads,
                            workers=workers, partitions=wanted, seconds=seconds)
