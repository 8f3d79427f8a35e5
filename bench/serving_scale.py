"""Scale benchmark of the whole path: fit, save, load, serve and update a synthetic catalogue.

    python -m tastemap.bench.serving_scale --items 10000,200000 --out serving_scale.json
    python -m tastemap.bench.serving_scale --serve model/   # a saved model's serving only

Each size runs in its own process, so that its peak memory is its own. Users are 1.5 times the
items and each has 50 events on average (200k items: 300k users, 15M events); item vectors are
precomputed (384-d, 100 planted topics). Stages (time and peak resident memory): ``generate``
(not part of the budget), ``fit`` (``TastemapModel.fit``: topics, profiles, interests, segments,
low-rank EASE, item indexes), ``save`` and ``load``. Then, on the loaded model: one
``recommend(user, k=10)`` with explanations: the first ``--warmup`` requests after the load
(``first_requests_ms``: they read the memory-mapped arrays from disk or the page cache and build
the serving caches), then p50 and p99 over ``--requests`` more users (a server past its start), a
``recommend_batch`` of ``--batch`` users (users/s), one ``update`` of one event of a known user,
back to back as a server applies them, in thirds of ``--updates``: the first third right after
the load and the batch (``first_updates_ms``: the first reads the event log, the next ones the
pages of the users' rows), p50 over the second (``update_ms_p50``), then each update of the last
third also applies the overlay of updated users to the fitted rows at once, reported as
``update_applied_at_once_ms_p50``: what each update cost before the overlay. They
are not interleaved: an update right after a rewrite of every user's rows reads the model from
a cold cache, 2x slower at 200k items, which a server meets once in 1,024 updates),
the folder size, and the recall@10 of the item index and of the collaborative index against
exact float32 search (1.0 for the flat item index; the collaborative index stores float16,
so near-ties may swap). Threads: the process's (2 on the reference machine).
Each stage, request and batch also reports its CPU time (every thread's): on a shared machine it
moves less with the load than the wall time.

``--serve FOLDER`` only serves a saved model: p50 / p99 of ``--requests`` requests after
``--warmup``, and a batch of ``--batch`` users on one thread. Two checkouts run in turn on the same
folder (``PYTHONPATH=<checkout> python -m tastemap.bench.serving_scale --serve FOLDER``, alternating,
as these machines' speed drifts within the hour) compare their serving side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tastemap.bench.scale import StageMeter, run_in_process


def run_size(n_items: int, users_per_item: float, events_per_user: int, dim: int, requests: int, warmup: int,
             batch: int, updates: int, seed: int) -> dict:
    """Fit, save, load, serve and update one synthetic catalogue; returns the figures."""
    import pandas as pd

    from tastemap.runtime.io.events import align_events
    from tastemap.runtime.io.synthetic import make_synthetic
    from tastemap.runtime.pipeline.model import TastemapModel

    n_users = int(n_items * users_per_item)
    meter = StageMeter()
    with meter.stage("generate"):
        data = make_synthetic(n_users=n_users, n_items=n_items, n_events=n_users * events_per_user,
                              n_topics=100, dim=dim, seed=seed)
        interactions, _ = align_events(data.events, data.catalog)
        catalog, item_vectors = data.catalog, data.item_vectors
        del data  # the generated events: the fit reads the aligned ones, as a user's process would
    n_events = int(interactions.n_events)
    folder = Path(tempfile.mkdtemp(prefix="tastemap-scale-"))
    try:
        with meter.stage("fit"):
            model = TastemapModel.fit(interactions, catalog, item_vectors, seed=seed)
            del interactions, catalog, item_vectors  # what the model keeps of them, it holds
        with meter.stage("save"):
            model.save(folder / "model")
        del model
        with meter.stage("load"):
            model = TastemapModel.load(folder / "model", verify=False)
        folder_mib = sum(p.stat().st_size for p in (folder / "model").rglob("*") if p.is_file()) / 2**20
        rng = np.random.default_rng(seed)
        users = rng.choice(model.user_ids, warmup + requests + batch + updates, replace=False)
        first, latency, cpu, batch_seconds, batch_cpu = _serve(model, users, warmup, requests, batch)
        users = users[warmup:]
        update_seconds = {"first": [], "overlay": [], "applied": []}
        items = rng.choice(model.item_ids, updates)
        third = updates // 3
        for user, item, offset in zip(users[requests + batch :], items, range(updates)):
            frame = pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [1_800_000_000 + offset],
                                  "weight": [1.0]})
            # as served (the overlay), then applied at once to the fitted rows (the rewrite of
            # every user's rows that the overlay defers)
            mode = "first" if offset < third else "overlay" if offset < 2 * third else "applied"
            start = time.perf_counter()
            model.update(frame)
            if mode == "applied":
                model.recommender.settle()
            update_seconds[mode].append(time.perf_counter() - start)
        recall = _index_recall(model.recommender, rng)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    meter.close()
    collaborative = model.recommender.collaborative_
    return {
        "n_items": n_items, "n_users": n_users, "n_events": n_events, "dim": dim,
        "stages": meter.results,
        "fit_seconds": meter.results["fit"]["seconds"],
        "peak_rss_mib": meter.peak_mib(),
        "folder_mib": round(folder_mib, 1),
        "recommend_ms": {"p50": _ms(latency, 50), "p99": _ms(latency, 99)},
        "first_requests_ms": None if not first else {"first": _ms(first[:1], 50), "p50": _ms(first, 50),
                                                     "p99": _ms(first, 99)},
        "recommend_cpu_ms_p50": _ms(cpu, 50),
        "batch_users_per_s": round(batch / batch_seconds, 1),
        "batch_users_per_cpu_s": round(batch / batch_cpu, 1),
        "first_updates_ms": None if not update_seconds["first"] else {
            "first": _ms(update_seconds["first"][:1], 50), "p50": _ms(update_seconds["first"], 50)},
        "update_ms_p50": _ms(update_seconds["overlay"], 50),
        "update_applied_at_once_ms_p50": _ms(update_seconds["applied"], 50),
        "index_recall_at_10": recall,
        "collaborative": None if collaborative is None else {"rank": collaborative.rank, "exact": collaborative.exact},
    }


def _serve(model, users: np.ndarray, warmup: int, requests: int, batch: int, n_jobs: int | None = None):
    """Time ``warmup`` requests, then ``requests`` more (wall and CPU seconds each), then one
    ``recommend_batch`` of the next ``batch`` users on ``n_jobs`` threads (None: one per core)."""
    first = []
    for user in users[:warmup]:
        start = time.perf_counter()
        model.recommend(user, k=10)
        first.append(time.perf_counter() - start)
    users = users[warmup:]
    latency, cpu = [], []
    for user in users[:requests]:
        start, start_cpu = time.perf_counter(), time.process_time()
        model.recommend(user, k=10)
        latency.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    start, start_cpu = time.perf_counter(), time.process_time()
    model.recommend_batch(users[requests : requests + batch], k=10, n_jobs=n_jobs)
    return first, latency, cpu, time.perf_counter() - start, time.process_time() - start_cpu


def serve_saved(folder: Path, requests: int, warmup: int, batch: int, seed: int) -> dict:
    """Request and one-thread batch figures of a saved model: run by two checkouts in turn
    (``PYTHONPATH``) on the same folder, it compares their serving side by side."""
    from tastemap.runtime.pipeline.model import TastemapModel

    model = TastemapModel.load(folder, verify=False)
    users = np.random.default_rng(seed).choice(model.user_ids, min(model.n_users, warmup + requests + batch),
                                               replace=False)
    _, latency, cpu, batch_seconds, _ = _serve(model, users, warmup, requests, batch, n_jobs=1)
    return {"model": str(folder), "recommend_ms": {"p50": _ms(latency, 50), "p99": _ms(latency, 99)},
            "recommend_cpu_ms_p50": _ms(cpu, 50),
            "batch_one_thread_users_per_s": round((users.size - warmup - requests) / batch_seconds, 1)}


def _ms(seconds: list[float], percentile: float) -> float:
    """The ``percentile`` of durations in seconds, in milliseconds to two decimals."""
    return round(float(np.percentile(seconds, percentile)) * 1e3, 2)


def _index_recall(recommender, rng: np.random.Generator, n_queries: int = 200) -> dict:
    """Recall@10 of the item index and of the collaborative index against exact search."""
    from tastemap.runtime.recommend import candidates as stage

    out = {}
    indexes = {"items": (recommender.index_, recommender.profiler_.item_vectors_)}
    if recommender.collaborative_ is not None:
        index = recommender.collaborative_index_
        indexes["collaborative"] = (index, recommender.collaborative_.right[:, : index.d])
    for name, (index, vectors) in indexes.items():
        queries = np.asarray(vectors[rng.choice(len(vectors), n_queries, replace=False)], np.float32)
        exact = stage.build_item_index(vectors, exact_limit=len(vectors))
        truth = stage.nearest_items(exact, queries, 10)
        found = stage.nearest_items(index, queries, 10)
        out[name] = {"kind": stage.index_kind(index),
                     "recall": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])), 4)}
    return out


def _sizes(text: str) -> list[int]:
    """``"10000,200000"`` -> ``[10000, 200000]``; anything else is a usage error."""
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} should be comma-separated item counts >= 1, e.g. 10000,200000")
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=_sizes, default="10000,200000", help="Comma-separated catalogue sizes.")
    parser.add_argument("--users-per-item", type=float, default=1.5)
    parser.add_argument("--events-per-user", type=int, default=50)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200, help="Requests after the load before --requests are timed.")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=150, help="Updates, in thirds: first, timed, applied at once.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for the figures.")
    parser.add_argument("--serve", type=Path, metavar="FOLDER",
                        help="Only time requests and a one-thread batch on this saved model (no fit).")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        from tastemap.errors import TastemapError

        try:
            print(json.dumps(serve_saved(args.serve, args.requests, args.warmup, args.batch, args.seed)))
        except TastemapError as exc:  # a folder that is not a fitted model: one line, exit code 2
            parser.exit(2, f"error: {exc}\n")
        return
    sizes = args.items
    options = [args.users_per_item, args.events_per_user, args.dim, args.requests, args.warmup, args.batch,
               args.updates, args.seed]
    if args.single:
        print(json.dumps(run_size(sizes[0], *options)))
        return
    runs = []
    for n_items in sizes:
        runs.append(run_in_process("tastemap.bench.serving_scale", "--items", n_items,
                                   "--users-per-item", args.users_per_item, "--events-per-user", args.events_per_user,
                                   "--dim", args.dim, "--requests", args.requests, "--warmup", args.warmup,
                                   "--batch", args.batch,
                                   "--updates", args.updates, "--seed", args.seed))
        print(json.dumps(runs[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
