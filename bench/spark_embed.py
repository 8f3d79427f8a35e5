"""Embedding throughput on Spark (local mode) against the single-process runtime, same texts.

Encodes MovieLens item texts (title, genres, tags) with:

- ``single-<t>t``: :class:`tastemap.runtime.Encoder` in this process with ``t`` ONNX Runtime
  threads (``t`` = 1 and the number of Spark task slots);
- ``spark-<p>p``: :func:`tastemap.runtime.spark.embed.embed` on ``--master`` (one thread per
  Python worker, ``spark.task.cpus=1``) with the texts in ``p`` partitions, for each ``p`` of
  ``--partitions``. The texts are cached in Spark before timing and the embeddings go to Spark's
  ``noop`` sink, so the figure is Arrow transfer + encoding, not file I/O.

Every encoder is warmed up first (the Spark workers load their ONNX Runtime session in an
untimed job, whose time is reported as ``spark warm-up``). Each configuration runs ``--rounds``
times, interleaved, and the median counts. Prints texts/s and the ratio to ``single-<slots>t``
and writes JSON to ``--json``.

    python bench/spark_embed.py --texts 4000 --master "local[2]" --partitions 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct MovieLens item texts, sampled without replacement."""
    from tastemap.runtime.io.events import load_movielens, render_item_texts

    _, catalog = load_movielens()
    texts = list(dict.fromkeys(render_item_texts(catalog)))
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model package (default: the default model package, exported if missing)")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench/results/spark_embed.json"))
    args = parser.parse_args()

    from tastemap.paths import resolve_model_dir
    from tastemap.runtime.encode.encoder import Encoder
    from tastemap.runtime.spark.session import spark_session
    from tastemap.runtime.spark.embed import embed

    model = resolve_model_dir(args.model, export_missing=True)
    texts = make_texts(args.texts)
    started = time.perf_counter()
    spark = spark_session(args.master, app_name="tastemap-bench", config={"spark.ui.enabled": "false"})
    session_seconds = time.perf_counter() - started
    slots = spark.sparkContext.defaultParallelism
    import pandas as pd

    source = spark.createDataFrame(pd.DataFrame({"id": np.arange(len(texts)), "text": texts}))
    frames = {p: source.repartition(p).cache() for p in map(int, args.partitions.split(","))}
    for frame in frames.values():
        frame.count()

    def run_spark(frame) -> None:
        embed(frame, model, text_col="text", variant=args.variant).write.format("noop").mode("overwrite").save()

    started = time.perf_counter()
    run_spark(frames[max(frames)])  # every worker loads its session here
    warmup_seconds = time.perf_counter() - started

    singles = {}
    for threads in sorted({1, slots}):
        encoder = Encoder(model, variant=args.variant, threads=threads).load()
        encoder.encode(texts[:64])
        singles[threads] = encoder

    timings: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for threads, encoder in singles.items():
            started = time.perf_counter()
            encoder.encode(texts)
            timings.setdefault(f"single-{threads}t", []).append(time.perf_counter() - started)
        for partitions, frame in frames.items():
            started = time.perf_counter()
            run_spark(frame)
            timings.setdefault(f"spark-{partitions}p", []).append(time.perf_counter() - started)

    baseline = f"single-{slots}t"
    rate = {name: len(texts) / statistics.median(values) for name, values in timings.items()}
    rows = [{"config": name, "texts_per_second": round(rate[name], 1),
             "ratio_to_" + baseline: round(rate[name] / rate[baseline], 3),
             "seconds": [round(v, 3) for v in values]} for name, values in timings.items()]
    result = {
        "bench": "spark_embed", "model": str(model), "variant": args.variant, "n_texts": len(texts),
        "master": args.master, "task_slots": slots, "threads_per_worker": 1, "rounds": args.rounds,
        "session_start_seconds": round(session_seconds, 2), "spark_warmup_seconds": round(warmup_seconds, 2),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                    "spark": spark.version},
        "results": rows,
    }
    spark.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"{len(texts)} texts, {args.variant}, master {args.master} ({slots} slots), "
          f"session start {session_seconds:.1f} s, spark warm-up {warmup_seconds:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    for row in rows:
        print(f"  {row['config']:<12} {row['texts_per_second']:>9,.1f} texts/s   x{row['ratio_to_' + baseline]:.2f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
