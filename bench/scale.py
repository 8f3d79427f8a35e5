"""Scale benchmark of interest modeling: profile and segment a synthetic log, time and memory per stage.

    python -m tastemap.bench.scale --users 10000,30000,100000 --out scale.json

Each size runs in its own process so that its peak memory is its own. Items (default 200k, with
precomputed 384-d vectors) stay fixed; events grow with users (default 50 per user, so 100k users
give 5M events). Stages: ``generate`` (not part of the budget), ``profile`` (align, topics,
layers, per-user interest clusters; its sub-stages come from ``InterestProfiler.stats_``),
``write_profiles``, ``segment`` (k-means, k chosen by silhouette over 2..12) and
``write_segments``. Memory is the process's resident set size, sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tastemap.bench.measure import cpu_seconds, reset_peak, resident_peak_mib, rss_mib, sample_memory


class StageMeter:
    """Wall time, CPU time (every thread's) and peak resident memory (MiB) per named stage, of
    this process and its worker processes (:func:`~tastemap.bench.measure.rss_mib`), sampled by a
    background thread every ``interval`` seconds, less often where a sample is slow
    (:func:`~tastemap.bench.measure.sample_memory`), and at least this process's exact peak over
    the stage (:func:`~tastemap.bench.measure.resident_peak_mib`); each stage is also printed to
    stderr when it ends, so that a long run that stops leaves its finished stages."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.results: dict[str, dict] = {}
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stage(self, name: str):
        meter = self

        class _Stage:
            def __enter__(self):
                reset_peak()
                meter._peak = rss_mib()
                self.start, self.cpu = time.perf_counter(), cpu_seconds()

            def __exit__(self, *exc):
                peak = max(meter._peak, rss_mib(), resident_peak_mib())  # the sampled sum, or this process's exact peak
                meter.results[name] = {"seconds": round(time.perf_counter() - self.start, 2),
                                       "cpu_seconds": round(cpu_seconds() - self.cpu, 2),
                                       "peak_rss_mib": round(peak, 1)}
                print(f"{name}: {meter.results[name]}", file=sys.stderr, flush=True)

        return _Stage()

    def peak_mib(self) -> float:
        """The peak over every stage (workers included) and over this process's life since the
        last stage began: :func:`~tastemap.bench.measure.reset_peak` restarts the kernel's peak,
        its lifetime one included, at each stage."""
        return round(max([resident_peak_mib()] + [stage["peak_rss_mib"] for stage in self.results.values()]), 1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        for mib in sample_memory(self._stop, self.interval):
            self._peak = max(self._peak, mib)


def run_size(n_users: int, n_items: int, events_per_user: int, dim: int, seed: int) -> dict:
    """Profile and segment one synthetic log; returns the figures as a dict."""
    from tastemap.runtime.io.synthetic import make_synthetic
    from tastemap.runtime.interests.profile_io import write_profiles
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.interests.segments import UserSegmenter, write_segments

    meter = StageMeter()
    with meter.stage("generate"):
        data = make_synthetic(n_users=n_users, n_items=n_items, n_events=n_users * events_per_user,
                              n_topics=100, dim=dim, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        with meter.stage("profile"):
            profiler = InterestProfiler(seed=seed)
            profiles = profiler.fit_transform(data.events, data.catalog, data.item_vectors)
        with meter.stage("write_profiles"):
            write_profiles(profiler, out)
        with meter.stage("segment"):
            segmenter = UserSegmenter(method="kmeans", k_range=(2, 12), seed=seed).fit(profiles)
        with meter.stage("write_segments"):
            write_segments(segmenter, out)
        sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in Path(out).iterdir()}
    meter.close()
    budget = sum(v["seconds"] for k, v in meter.results.items() if k != "generate")
    return {
        "n_users": n_users, "n_items": n_items, "n_events": int(len(data.events)), "dim": dim,
        "stages": meter.results, "profile_breakdown": profiler.stats_,
        "seconds_excluding_generate": round(budget, 2),
        "peak_rss_mib": meter.peak_mib(),
        "interests_per_user": round(float(profiles.interests.counts().mean()), 3),
        "n_segments": segmenter.n_segments_, "backend": profiler.backend_, "file_mib": sizes,
    }


def run_in_process(module: str, *options) -> dict:
    """Run ``python -m module --single *options`` in a process of its own (so that its peak memory
    is its own) and return the JSON figures it prints last. Its stderr passes through, so a run
    that stops leaves its finished stages on the terminal; a run that fails ends this one with a
    message naming the run and how it ended."""
    command = [sys.executable, "-m", module, "--single", *map(str, options)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        how = (f"was killed by signal {-done.returncode}" + (" (the system's out-of-memory killer sends it)"
                                                               if done.returncode == -signal.SIGKILL else "")
               if done.returncode < 0 else f"exited with code {done.returncode}")
        raise SystemExit(f"the run {' '.join(map(str, options))} {how}; the stages above are the ones it finished")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,30000,100000", help="Comma-separated user counts.")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--events-per-user", type=int, default=50)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for the figures.")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.users.split(",")]
    if args.single:
        print(json.dumps(run_size(sizes[0], args.items, args.events_per_user, args.dim, args.seed)))
        return
    runs = []
    for n_users in sizes:
        runs.append(run_in_process("tastemap.bench.scale", "--users", n_users, "--items", args.items,
                                   "--events-per-user", args.events_per_user, "--dim", args.dim, "--seed", args.seed))
        print(json.dumps(runs[-1]), flush=True)
    base = runs[0]
    growth = [{"n_users": r["n_users"], "users_ratio": r["n_users"] / base["n_users"],
               "time_ratio": round(r["seconds_excluding_generate"] / base["seconds_excluding_generate"], 2),
               "memory_ratio": round(r["peak_rss_mib"] / base["peak_rss_mib"], 2)} for r in runs]
    report = {"runs": runs, "growth": growth}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({"growth": growth}))


if __name__ == "__main__":
    main()
