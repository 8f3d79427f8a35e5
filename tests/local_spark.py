"""One local Spark session per test module (2 cores, no UI), for the tests marked ``spark``."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def local_spark(app_name: str, *, shuffle_partitions: int = 2):
    """A ``local[2]`` session named ``app_name``, stopped on exit."""
    from tastemap.runtime.spark.session import spark_session

    session = spark_session("local[2]", app_name=app_name, config={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": "2"})
    try:
        yield session
    finally:
        session.stop()
