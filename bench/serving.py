"""Serving suite: answering from a fitted model directory against refitting on every call, side by side.

On the MovieLens sample (``max_users`` first users, items they rated; item texts through the int8
encoder of the first model package), one run measures:

- **fit once**: ``TastemapModel.fit`` and ``save`` (seconds, directory size);
- **load**: ``TastemapModel.load`` with every file's sha256 checked (median of ``load_repeats``),
  and without the check;
- **single requests**: ``recommend(user, k)`` latency p50/p99 over ``n_requests`` seeded users,
  from the loaded model; against the **refit path** (what ``tastemap recommend`` without
  ``--model`` does after reading and embedding: ``TastemapRecommender.fit`` then ``recommend``),
  ``refit_calls`` calls, p50;
- **batch scoring**: ``recommend_batch`` of every user, users/s, from the model and with one
  refit first;
- **online update**: ``update`` with one new event of one known user (p50 over ``n_updates``
  users) and ``tastemap update`` end to end (load, update, save).

Ratios (refit over served) are gated; absolute times are context for the same machine. CPU
seconds per request (all threads of the process) are reported beside the wall times, as a check
on a machine shared with other jobs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tastemap.bench.schema import figure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingSuiteConfig:
    """``max_users`` of MovieLens (None: all 610); requests, refit calls, updates and loads timed; ``k``."""

    max_users: int | None = None
    n_requests: int = 200
    refit_calls: int = 2
    n_updates: int = 50
    load_repeats: int = 3
    k: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> "ServingSuiteConfig":
        return cls(max_users=40, n_requests=50, refit_calls=2, n_updates=20, load_repeats=2)


def make_data(config: ServingSuiteConfig, package_dir: Path | None, *, threads: int):
    """``(interactions, catalog, item_vectors, encoder)`` of the MovieLens sample; without a
    package (``None``, for tests of the suite itself) the item vectors are seeded random ones."""
    from tastemap.runtime.io.events import align_events, load_movielens, render_item_texts

    events, catalog = load_movielens()
    if config.max_users is not None:
        users = sorted(events["user_id"].unique())[: config.max_users]
        events = events[events["user_id"].isin(users)]
        catalog = catalog[catalog["item_id"].isin(events["item_id"].unique())].reset_index(drop=True)
    data, _ = align_events(events, catalog)
    encoder = None
    if package_dir is None:
        vectors = np.random.default_rng(config.seed).standard_normal((len(catalog), 32))
    else:
        from tastemap.runtime.encode.encoder import Encoder

        encoder = Encoder(package_dir, variant="int8", device="cpu", threads=threads)
        vectors = encoder.encode(render_item_texts(catalog))
    return data, catalog, np.asarray(vectors, np.float32), encoder


def run_serving_suite(package_dir: Path | None, config: ServingSuiteConfig, *,
                      threads: int) -> tuple[dict, dict, list[str]]:
    """Every measurement of the module docstring; returns ``(figures, context, notes)``."""
    from tastemap.bench.measure import latency_summary, time_calls
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    data, catalog, item_vectors, encoder = make_data(config, package_dir, threads=threads)
    rng = np.random.default_rng(config.seed)
    users = data.user_ids[rng.integers(0, data.n_users, config.n_requests)].tolist()
    folder = Path(tempfile.mkdtemp(prefix="tastemap-serving-"))
    try:
        start = time.perf_counter()
        fitted = TastemapModel.fit(data, catalog, item_vectors, encoder=encoder, seed=config.seed)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        path = fitted.save(folder / "model")
        save_seconds = time.perf_counter() - start
        size_mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20

        load_seconds = _median_seconds(lambda: TastemapModel.load(path), config.load_repeats)
        load_unverified = _median_seconds(lambda: TastemapModel.load(path, verify=False), config.load_repeats)
        model = TastemapModel.load(path)
        cpu = time.process_time()
        served = latency_summary(time_calls(lambda user: model.recommend(user, k=config.k), users))
        served_cpu = (time.process_time() - cpu) / (len(users) + 1)
        start = time.perf_counter()
        model.recommend_batch(k=config.k)
        batch_seconds = time.perf_counter() - start

        def refit_and_recommend(user):
            TastemapRecommender(seed=config.seed).fit(data, catalog, item_vectors).recommend(user, k=config.k)

        cpu = time.process_time()
        refit = latency_summary(time_calls(refit_and_recommend, users[: config.refit_calls], warmup=0))
        refit_cpu = (time.process_time() - cpu) / config.refit_calls
        start = time.perf_counter()
        TastemapRecommender(seed=config.seed).fit(data, catalog, item_vectors).recommend_batch(k=config.k)
        refit_batch_seconds = time.perf_counter() - start

        update = latency_summary(_time_updates(model, users[: config.n_updates], data))
        events = pd.DataFrame({"user_id": [users[0]], "item_id": [data.item_ids[0]],
                               "timestamp": [int(data.timestamps.max()) + 7], "weight": [1.0]})
        start = time.perf_counter()
        round_trip = TastemapModel.load(path)
        round_trip.update(events)
        round_trip.save()
        update_command_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    n_users = data.n_users
    served_rate = n_users / max(batch_seconds, 1e-9)
    refit_rate = n_users / max(refit_batch_seconds, 1e-9)
    prefix = "serving/movielens"
    figures = {
        f"{prefix}/fit_seconds": figure(fit_seconds, "s", better="lower"),
        f"{prefix}/save_seconds": figure(save_seconds, "s", better="lower"),
        f"{prefix}/model_dir_mib": figure(size_mib, "MiB", better="lower"),
        f"{prefix}/load_seconds": figure(load_seconds, "s", better="lower"),
        f"{prefix}/load_unverified_seconds": figure(load_unverified, "s", better="lower"),
        f"{prefix}/recommend/served/p50_ms": figure(served["p50"], "ms", better="lower"),
        f"{prefix}/recommend/served/p99_ms": figure(served["p99"], "ms", better="lower"),
        f"{prefix}/recommend/refit/p50_ms": figure(refit["p50"], "ms", better="lower"),
        f"{prefix}/recommend/refit/p99_ms": figure(refit["p99"], "ms", better="lower"),
        f"{prefix}/recommend/refit_over_served_p50": figure(refit["p50"] / max(served["p50"], 1e-9), "x", gated=True),
        f"{prefix}/recommend/served/cpu_ms_per_request": figure(served_cpu * 1e3, "ms", better="lower"),
        f"{prefix}/recommend/refit/cpu_ms_per_request": figure(refit_cpu * 1e3, "ms", better="lower"),
        f"{prefix}/recommend/refit_over_served_cpu": figure(refit_cpu / max(served_cpu, 1e-12), "x"),
        f"{prefix}/batch/served/users_per_s": figure(served_rate, "users/s"),
        f"{prefix}/batch/refit/users_per_s": figure(refit_rate, "users/s"),
        f"{prefix}/batch/served_over_refit": figure(served_rate / max(refit_rate, 1e-9), "x", gated=True),
        f"{prefix}/update/one_user/p50_ms": figure(update["p50"], "ms", better="lower"),
        f"{prefix}/update/one_user/p99_ms": figure(update["p99"], "ms", better="lower"),
        f"{prefix}/update/command_seconds": figure(update_command_seconds, "s", better="lower"),
    }
    context = {
        "n_users": int(n_users), "n_items": int(data.n_items), "n_events": int(data.n_events),
        "dim": int(item_vectors.shape[1]), "k": config.k, "n_requests": config.n_requests,
        "refit_calls": config.refit_calls, "n_updates": config.n_updates,
        "encoder": None if encoder is None else {"package": str(package_dir), "variant": encoder.variant},
        "refit_path": "TastemapRecommender.fit on in-memory inputs, then recommend (reading and embedding excluded)",
    }
    notes = [f"serving: refit path timed over {config.refit_calls} calls (each a full fit), served path over "
             f"{config.n_requests} requests"]
    return figures, context, notes


def _median_seconds(call, repeats: int) -> float:
    durations = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return float(np.median(durations))


def _time_updates(model, users: list, data) -> list[float]:
    """Seconds of ``model.update`` with one new event of one known user, per user (in memory)."""
    later = int(data.timestamps.max()) + 1
    durations = []
    model.events  # read the stored events once, as a serving process would
    for step, user in enumerate(users):
        event = pd.DataFrame({"user_id": [user], "item_id": [data.item_ids[step % data.n_items]],
                              "timestamp": [later + step], "weight": [np.float32(1.0)]})
        start = time.perf_counter()
        model.update(event)
        durations.append(time.perf_counter() - start)
    return durations
