"""Pipeline suite: the MovieLens demo end to end and the synthetic scale generator, stage by stage.

**MovieLens**: ``load`` (read and validate the sample), ``encode`` (item texts through the int8
encoder of the first model package), ``profile`` (topics, layers, per-user interest clusters on
the encoded vectors), ``write_profiles``, ``segment`` (k-means users into segments, k chosen by
silhouette) and ``write_segments``; wall seconds and peak resident memory per stage, measured by
:class:`tastemap.bench.scale.StageMeter`. ``max_users`` keeps the first users (and the items they
rated) for a CI-sized run.

**Synthetic**: :mod:`tastemap.bench.scale` for each size in ``synthetic_users`` (events and items
as parameters), each in its own process so its peak memory is its own.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tastemap.bench.schema import figure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSuiteConfig:
    """``max_users`` of MovieLens (None: all 610); synthetic sizes (users), items and events per user."""

    max_users: int | None = None
    synthetic_users: tuple[int, ...] = (5_000,)
    synthetic_items: int = 20_000
    events_per_user: int = 50
    synthetic_dim: int = 384
    seed: int = 0

    @classmethod
    def quick(cls) -> "PipelineSuiteConfig":
        return cls(max_users=30, synthetic_users=(200,), synthetic_items=1_000, events_per_user=20, synthetic_dim=64)


def run_pipeline_suite(package_dir: Path, config: PipelineSuiteConfig, *, threads: int) -> tuple[dict, dict, list[str]]:
    """Both pipelines; returns ``(figures, context, notes)``."""
    figures, context = run_movielens(package_dir, config, threads=threads)
    notes: list[str] = []
    synthetic = []
    for n_users in config.synthetic_users:
        result = run_synthetic(n_users, config)
        synthetic.append(result)
        prefix = f"pipeline/synthetic/u{n_users}"
        for stage, values in result["stages"].items():
            figures[f"{prefix}/{stage}/seconds"] = figure(values["seconds"], "s", better="lower")
            figures[f"{prefix}/{stage}/peak_rss_mib"] = figure(values["peak_rss_mib"], "MiB", better="lower")
        figures[f"{prefix}/seconds_excluding_generate"] = figure(result["seconds_excluding_generate"], "s",
                                                                 better="lower")
        figures[f"{prefix}/events_per_s"] = figure(
            result["n_events"] / max(result["seconds_excluding_generate"], 1e-9), "events/s")
    return figures, {"movielens": context, "synthetic": synthetic}, notes


def run_movielens(package_dir: Path, config: PipelineSuiteConfig, *, threads: int) -> tuple[dict, dict]:
    """The MovieLens demo stage by stage: ``(figures, context)``."""
    from tastemap.bench.scale import StageMeter
    from tastemap.runtime.io.events import load_movielens, render_item_texts
    from tastemap.runtime.encode.encoder import Encoder
    from tastemap.runtime.interests.profile_io import write_profiles
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.interests.segments import UserSegmenter, write_segments

    meter = StageMeter()
    try:
        with meter.stage("load"):
            events, catalog = load_movielens()
            if config.max_users is not None:
                users = sorted(events["user_id"].unique())[: config.max_users]
                events = events[events["user_id"].isin(users)]
                catalog = catalog[catalog["item_id"].isin(events["item_id"].unique())].reset_index(drop=True)
        encoder = Encoder(package_dir, variant="int8", device="cpu", threads=threads)
        with meter.stage("encode"):
            vectors = encoder.encode(render_item_texts(catalog))
        with tempfile.TemporaryDirectory() as out:
            with meter.stage("profile"):
                profiler = InterestProfiler(seed=config.seed)
                profiles = profiler.fit_transform(events, catalog, vectors)
            with meter.stage("write_profiles"):
                write_profiles(profiler, out)
            with meter.stage("segment"):
                segmenter = UserSegmenter(method="kmeans", k_range=(2, 12), seed=config.seed).fit(profiles)
            with meter.stage("write_segments"):
                write_segments(segmenter, out)
    finally:
        meter.close()
    figures = {}
    for stage, values in meter.results.items():
        figures[f"pipeline/movielens/{stage}/seconds"] = figure(values["seconds"], "s", better="lower")
        figures[f"pipeline/movielens/{stage}/peak_rss_mib"] = figure(values["peak_rss_mib"], "MiB", better="lower")
    total = sum(values["seconds"] for values in meter.results.values())
    figures["pipeline/movielens/total_seconds"] = figure(total, "s", better="lower")
    figures["pipeline/movielens/encode/texts_per_s"] = figure(
        len(catalog) / max(meter.results["encode"]["seconds"], 1e-9), "texts/s")
    context = {
        "n_users": int(profiles.n_users), "n_items": int(len(catalog)), "n_events": int(len(events)),
        "encoder": {"package": str(package_dir), "variant": encoder.variant, "provider": encoder.provider,
                    "threads": encoder.threads},
        "profile_breakdown": profiler.stats_, "n_segments": int(segmenter.n_segments_),
        "clustering_backend": profiler.backend_,
    }
    return figures, context


def run_synthetic(n_users: int, config: PipelineSuiteConfig) -> dict:
    """One size of :mod:`tastemap.bench.scale` in a child process; its JSON result."""
    command = [sys.executable, "-m", "tastemap.bench.scale", "--single", "--users", str(n_users),
               "--items", str(config.synthetic_items), "--events-per-user", str(config.events_per_user),
               "--dim", str(config.synthetic_dim), "--seed", str(config.seed)]
    logger.info("pipeline: synthetic log with %d users", n_users)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        from tastemap.errors import TastemapError

        raise TastemapError(f"synthetic scale run failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
