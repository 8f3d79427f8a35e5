"""Shared pieces of the Spark engine: the session, error translation and Parquet in and out.

The Spark path runs the same stages as one machine (embed, profile, segment) on Spark's own
machinery: :mod:`tastemap.runtime.spark.embed` (``mapInPandas`` with one ONNX Runtime session per
Python worker), :mod:`tastemap.runtime.spark.profile` (``groupBy(user).applyInPandas`` calling the
single-machine profiler) and :mod:`tastemap.runtime.spark.segment` (Spark MLlib). pyspark is an
optional dependency (``pip install tastemap[spark]``) imported lazily.

Errors raised by tastemap code on an executor reach the driver wrapped in a Spark exception;
:func:`spark_errors` turns them back into the tastemap error they were, so the CLI still prints
one clear line and exits with code 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import uuid
from enum import Enum
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from tastemap import errors
from tastemap.errors import require
from tastemap.runtime.io.tables import SEPARATORS, check_exists, detect_format, empty_table, unreadable

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
_ERROR = re.compile(r"tastemap\.errors\.(\w+): (.+)")
_URI = re.compile(r"^[A-Za-z][\w+.-]*:/")


class Engine(str, Enum):
    """Where a stage runs: ``local`` (this process) or ``spark`` (a Spark cluster or local mode)."""

    local = "local"
    spark = "spark"


def spark_session(master: str | None = DEFAULT_MASTER, *, app_name: str = "tastemap", config: dict | None = None):
    """The active :class:`pyspark.sql.SparkSession`, or a new one on ``master``.

    Under ``spark-submit`` the master given to spark-submit is used and ``master`` is ignored.
    In local mode the Python workers run this interpreter (``PYSPARK_PYTHON`` defaults to
    ``sys.executable``), so they see the same installed packages as the driver. The session time
    zone is UTC, so timestamps read by Spark mean what they mean on one machine.
    """
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if master and not submitted:
        builder = builder.master(master)
        if master.startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    elif master and submitted:
        logger.info("running under spark-submit: its master is used, master=%r is ignored", master)
    defaults = {"spark.sql.execution.arrow.pyspark.enabled": "true", "spark.sql.session.timeZone": "UTC"}
    for key, value in {**defaults, **(config or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    logger.info("spark %s on %s (default parallelism %d)", session.version, session.sparkContext.master,
                session.sparkContext.defaultParallelism)
    return session


@contextlib.contextmanager
def spark_errors() -> Iterator[None]:
    """Re-raise a tastemap error thrown on an executor as itself (message kept, Spark trace dropped).

    Spark actions (``collect``, ``write``) run the Python functions on the executors; wrap them
    in this context manager.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only Spark's wrappers of tastemap errors are translated
        found = _ERROR.findall(str(exc))
        if not found or type(exc).__module__.split(".")[0] not in ("pyspark", "py4j"):
            raise
        name, message = found[-1]
        error = getattr(errors, name, None)
        if not (isinstance(error, type) and issubclass(error, errors.TastemapError)):
            raise
        raise error(message.strip()) from None


def read_spark_table(spark, path: str | Path, *, what: str = "table"):
    """Read a table into a Spark DataFrame: Parquet (a file or a folder of parts), CSV/TSV with a
    header, or JSON lines, text formats optionally gzipped. The format, the checks and the messages
    are those of :mod:`tastemap.runtime.io.tables`; Spark does the reading. ``path`` may be a URI
    Spark reads (``hdfs://``, ``s3a://``); local paths are checked first. Check columns with
    :func:`~tastemap.runtime.io.tables.check_columns` on ``frame.columns``."""
    location = str(path)
    kind = detect_format(location)
    if not _URI.match(location):
        check_exists(location, what=what, folders=True)
    reader = spark.read
    if kind in SEPARATORS:
        # Values as the text written, as the local reader reads them: ids such as 007 stay strings.
        reader = reader.option("header", "true").option("inferSchema", "false").option("sep", SEPARATORS[kind])
    read = {"csv": reader.csv, "tsv": reader.csv, "jsonl": reader.json, "parquet": reader.parquet}[kind]
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException

    try:
        frame = read(location)
    except AnalysisException as exc:
        raise unreadable(location, kind, str(exc).splitlines()[0]) from None
    except Py4JJavaError as exc:  # a file Spark cannot parse while inferring the schema
        raise unreadable(location, kind, str(exc.java_exception.getMessage()).splitlines()[0]) from None
    if not frame.columns:
        raise empty_table(location)
    return frame


def write_parquet(frame, out: str | Path) -> Path:
    """Write a Spark DataFrame as a Parquet folder ``out`` that appears only when complete.

    Spark writes into a hidden sibling folder, which is renamed to ``out`` after the job
    succeeded (an older ``out`` is replaced). ``out`` must be on a file system the driver sees.
    """
    out = Path(out)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with spark_errors():
            frame.write.mode("error").parquet(str(staging))
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def spark_ready(table: pa.Table) -> pa.Table:
    """Arrow types Spark accepts: dictionary labels decoded, the fixed-size vector as a list."""
    def convert(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(kind):
            return kind.value_type
        if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind):
            return pa.list_(convert(kind.value_type))
        if pa.types.is_struct(kind):
            return pa.struct([pa.field(f.name, convert(f.type)) for f in kind])
        return kind

    schema = pa.schema([pa.field(f.name, convert(f.type)) for f in table.schema])
    return table.replace_schema_metadata(None).cast(schema)
