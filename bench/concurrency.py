"""Concurrency bench: readers and writers of one fitted model directory at the same time.

``readers`` processes load the model in a loop (``TastemapModel.load`` with every file's sha256
checked, then one ``recommend``: what ``tastemap recommend --model DIR`` does) while ``writers``
processes fold new events in a loop (``TastemapModel.locked``: writer lock, load, ``update``,
``save``: what ``tastemap update DIR EVENTS`` does), for ``seconds``. Every process is a real OS
process, so the writer lock and the version pins are exercised as in production.

Reported: reads per second and failed reads (a read fails when it raises, or when the version it
read is inconsistent: users or stored events other than ``model.json`` records), update latency
p50/p99 under contention (lock wait included), updates done, and lost events (each writer's events
carry timestamps of its own range, so the final model must hold exactly the events the writers saw
added).

    python -m tastemap.bench.concurrency --seconds 30 --readers 4 --writers 2 --out concurrency.json

``--model DIR`` runs on an existing model directory (the writers add events to it), so that runs
with other numbers of readers and writers can be compared on one model.

The model is fitted on the MovieLens sample (``--data movielens``, seeded random item vectors:
the bench measures the directory, not the vectors) or on a small synthetic log (``--data
synthetic``, for tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

BASE_TIMESTAMP = 2_000_000_000
"""New events are dated from here (2033) or after the latest stored event, whichever is later."""
WRITER_RANGE = 10_000_000
"""Seconds of timestamps reserved for each writer, so that its events can be counted in the end."""
START_TIMEOUT = 300.0
"""Seconds the worker processes may take to start (import tastemap, load the model once)."""


@dataclass(frozen=True)
class ConcurrencyConfig:
    """``readers`` and ``writers`` processes for ``seconds`` on a model of ``data`` (``movielens``
    or ``synthetic``; ``max_users`` of it, None: all); each update adds ``events_per_update``
    events of known users."""

    seconds: float = 30.0
    readers: int = 4
    writers: int = 2
    data: str = "movielens"
    max_users: int | None = None
    events_per_update: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.data not in ("movielens", "synthetic"):
            raise ValueError(f"data={self.data!r} should be 'movielens' or 'synthetic'")
        if self.seconds <= 0 or self.readers < 0 or self.writers < 0 or self.events_per_update < 1:
            raise ValueError(f"seconds={self.seconds}, readers={self.readers}, writers={self.writers} and "
                             f"events_per_update={self.events_per_update} should be > 0, >= 0, >= 0 and >= 1")


def fit_model(config: ConcurrencyConfig, path: Path) -> Path:
    """Fit and save the model the run reads and updates; returns its directory."""
    from tastemap.runtime.io.events import align_events, load_movielens
    from tastemap.runtime.pipeline.model import TastemapModel

    if config.data == "movielens":
        events, catalog = load_movielens()
    else:
        from tastemap.runtime.io.synthetic import make_synthetic

        truth = make_synthetic(n_users=30, n_items=120, n_events=600, n_topics=4, dim=16, first_id=0,
                               seed=config.seed)
        events, catalog = truth.events, truth.catalog
    if config.max_users is not None:
        users = sorted(events["user_id"].unique())[: config.max_users]
        events = events[events["user_id"].isin(users)]
        catalog = catalog[catalog["item_id"].isin(events["item_id"].unique())].reset_index(drop=True)
    data, _ = align_events(events, catalog)
    vectors = np.random.default_rng(config.seed).standard_normal((len(catalog), 32)).astype(np.float32)
    recommender = None
    if config.data == "synthetic":
        from tastemap.runtime.interests.profiles import InterestProfiler
        from tastemap.runtime.recommend.recommender import TastemapRecommender

        recommender = TastemapRecommender(profiler=InterestProfiler(n_topics=8, n_coarse_topics=4, seed=config.seed),
                                          seed=config.seed)
    model = TastemapModel.fit(data, catalog, vectors, recommender=recommender, seed=config.seed)
    return model.save(path)


def run_concurrency(config: ConcurrencyConfig, path: Path | None = None) -> dict:
    """Run the bench of the module docstring on the model in ``path`` (None: fit one in a
    temporary folder, removed afterwards); returns the figures and the workers' reports."""
    folder = None
    if path is None:
        folder = Path(tempfile.mkdtemp(prefix="tastemap-concurrency-"))
        path = fit_model(config, folder / "model")
    try:
        stored = stored_events(path)
        before, base = len(stored), max(BASE_TIMESTAMP, int(stored["timestamp"].max()) + 1)
        processes = [_spawn("read", path, config, i) for i in range(config.readers)]
        processes += [_spawn("write", path, config, i, base) for i in range(config.writers)]
        _start_together(processes)
        reports = [_collect(process, config) for process in processes]
        readers = [r for r in reports if r["role"] == "read"]
        writers = [r for r in reports if r["role"] == "write"]
        return summarize(config, path, readers, writers, before, base)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def summarize(config: ConcurrencyConfig, path: Path, readers: list, writers: list, before: int, base: int) -> dict:
    """Figures of one run from the workers' reports and the final model."""
    from tastemap.bench.measure import latency_summary

    final = stored_events(path)
    lost = 0
    for report in writers:
        low = base + report["worker"] * WRITER_RANGE
        held = int(((final["timestamp"] >= low) & (final["timestamp"] < low + WRITER_RANGE)).sum())
        lost += max(0, report["events_added"] - held)
    latencies = [s for report in writers for s in report["latencies"]]
    waits = [s for report in writers for s in report["waits"]]
    reads = sum(r["reads"] for r in readers)
    return {
        "config": asdict(config),
        "reads": reads,
        "reads_per_second": reads / config.seconds,
        "failed_reads": sum(r["failures"] for r in readers),
        "read_errors": [e for r in readers for e in r["errors"]][:10],
        "versions_read": len({v for r in readers for v in r["versions"]}),
        "updates": len(latencies),
        "failed_updates": sum(r["failures"] for r in writers),
        "update_errors": [e for r in writers for e in r["errors"]][:10],
        "update_latency_ms": latency_summary(latencies) if latencies else None,
        "lock_wait_ms": latency_summary(waits) if waits else None,
        "update_work_ms": latency_summary(np.subtract(latencies, waits)) if waits else None,
        "events_sent": sum(r["events_sent"] for r in writers),
        "events_added": sum(r["events_added"] for r in writers),
        "events_before": before,
        "events_after": len(final),
        "lost_events": lost,
        "event_count_matches": len(final) == before + sum(r["events_added"] for r in writers),
    }


def stored_events(path: Path) -> pd.DataFrame:
    """Every stored event of the current version of the model in ``path``."""
    from tastemap.runtime.pipeline.model_io import open_version

    version = open_version(path, verify=False)
    try:
        frames = [pd.read_parquet(version.root / part) for part in version.manifest["event_parts"]]
    finally:
        version.pin.close()
    return pd.concat(frames, ignore_index=True)


# the worker processes ---------------------------------------------------------------------------

def read_loop(path: Path, until: float) -> dict:
    """Load the model and answer one request, again and again until ``until`` (epoch seconds);
    each read checks that the version it got is whole."""
    import pyarrow.parquet as pq

    from tastemap.runtime.pipeline.model import TastemapModel

    reads, failures, errors, versions = 0, 0, [], set()
    while time.time() < until:
        try:
            model = TastemapModel.load(path)
            version = model._source
            n_events = sum(pq.ParquetFile(version.root / part).metadata.num_rows
                           for part in version.manifest["event_parts"])
            data = model.meta["data"]
            if n_events != data["n_events"] or model.n_users != data["n_users"]:
                raise AssertionError(f"version {version.number}: {n_events} events and {model.n_users} users on disk, "
                                     f"model.json records {data['n_events']} and {data['n_users']}")
            model.recommend(model.user_ids[reads % model.n_users], k=10)
            versions.add(version.number)
            reads += 1
            del model, version
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            failures += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    return {"role": "read", "reads": reads, "failures": failures, "errors": errors[:5], "versions": sorted(versions)}


def write_loop(path: Path, until: float, worker: int, events_per_update: int, seed: int, base: int) -> dict:
    """Fold ``events_per_update`` new events of known users into the model, again and again until
    ``until``; the events of this worker are dated in its own range (see :data:`WRITER_RANGE`)."""
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.pipeline.model_lock import writer_lock

    rng = np.random.default_rng(seed + 1000 + worker)
    stamp = base + worker * WRITER_RANGE
    latencies, waits, failures, errors, sent, added = [], [], 0, [], 0, 0
    while time.time() < until:
        started = time.perf_counter()
        try:
            with writer_lock(path, wait=120):  # what TastemapModel.locked does, with the wait timed apart
                waited = time.perf_counter() - started
                model = TastemapModel.load(path)
                users = model.user_ids[rng.integers(0, model.n_users, events_per_update)]
                items = model.item_ids[rng.integers(0, model.n_items, events_per_update)]
                frame = pd.DataFrame({"user_id": users, "item_id": items,
                                      "timestamp": stamp + np.arange(events_per_update, dtype=np.int64),
                                      "weight": np.ones(events_per_update, np.float32)})
                summary = model.update(frame)
                model.save()
            stamp += events_per_update
            sent += events_per_update
            added += summary.n_events_added
            latencies.append(time.perf_counter() - started)
            waits.append(waited)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            failures += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    return {"role": "write", "worker": worker, "latencies": latencies, "waits": waits,
            "failures": failures, "errors": errors[:5], "events_sent": sent, "events_added": added}


def _spawn(role: str, path: Path, config: ConcurrencyConfig, worker: int, base: int = 0) -> subprocess.Popen:
    command = [sys.executable, "-m", "tastemap.bench.concurrency", "--worker", role, "--model", str(path),
               "--seconds", repr(config.seconds), "--worker-id", str(worker), "--base", str(base),
               "--events-per-update", str(config.events_per_update), "--seed", str(config.seed)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _start_together(processes: list) -> None:
    """Wait until every worker has started (each says ``ready``), then give them all one start time."""
    deadline = time.monotonic() + START_TIMEOUT
    for process in processes:
        line = process.stdout.readline().strip()
        if line != "ready" or time.monotonic() > deadline:
            for other in processes:
                other.kill()
            raise RuntimeError(f"a worker did not start (it said {line!r}): {process.stderr.read()[-2000:]}")
    start_at = time.time() + 0.2
    for process in processes:
        process.stdin.write(f"{start_at!r}\n")
        process.stdin.flush()


def _collect(process: subprocess.Popen, config: ConcurrencyConfig) -> dict:
    stdout, stderr = process.communicate(timeout=config.seconds + START_TIMEOUT)
    lines = stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"a worker failed (exit {process.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def _worker_main(args) -> None:
    logging.disable(logging.WARNING)  # faiss and clustering chatter would drown the report
    from tastemap.runtime.pipeline.model import TastemapModel

    TastemapModel.load(args.model, verify=False)  # imports and caches warm before the run, untimed
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))
    until = start_at + args.seconds
    if args.worker == "read":
        report = read_loop(Path(args.model), until)
    else:
        report = write_loop(Path(args.model), until, args.worker_id, args.events_per_update, args.seed, args.base)
    print(json.dumps(report))


def print_report(result: dict) -> None:
    """The figures as plain lines (the bench's own output, not library logging)."""
    latency, wait = result["update_latency_ms"] or {}, result["lock_wait_ms"] or {}
    config = result["config"]
    lines = [
        f"{config['readers']} readers, {config['writers']} writers, {config['seconds']:g} s, data={config['data']}",
        f"reads: {result['reads']} ({result['reads_per_second']:.1f}/s), failed: {result['failed_reads']}, "
        f"versions seen: {result['versions_read']}",
        f"updates: {result['updates']}, failed: {result['failed_updates']}, latency p50 "
        f"{latency.get('p50', 0):.0f} ms, p99 {latency.get('p99', 0):.0f} ms (of which waiting for the lock: "
        f"p50 {wait.get('p50', 0):.0f} ms, p99 {wait.get('p99', 0):.0f} ms)",
        f"events: {result['events_before']} before, {result['events_added']} added of {result['events_sent']} sent, "
        f"{result['events_after']} after (count matches: {result['event_count_matches']}), "
        f"lost: {result['lost_events']}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    for error in result["read_errors"] + result["update_errors"]:
        sys.stdout.write(f"  error: {error}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tastemap.bench.concurrency", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--data", choices=("movielens", "synthetic"), default="movielens")
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--events-per-update", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Write the result as JSON here.")
    parser.add_argument("--worker", choices=("read", "write"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, default=None,
                        help="Run on this fitted model directory (events are added to it) instead of fitting one.")
    parser.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=BASE_TIMESTAMP, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker_main(args)
        return
    config = ConcurrencyConfig(seconds=args.seconds, readers=args.readers, writers=args.writers, data=args.data,
                               max_users=args.max_users, events_per_update=args.events_per_update, seed=args.seed)
    result = run_concurrency(config, args.model)
    from tastemap.cpu import cpu_info

    result["cpu"] = cpu_info().model
    result["cores"] = os.cpu_count()
    print_report(result)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
