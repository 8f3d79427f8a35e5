"""Run the selected suites at one thread count and assemble the result document.

>>> doc = run_bench(BenchConfig.quick_preset(models=("minilm",)))     # doctest: +SKIP
>>> write_result(doc, "bench-quick.json")                              # doctest: +SKIP

Order: the roofline ceilings are measured before and after the encoder suite (the best of both
counts, so a burst of load at one moment does not lower the ceiling), then clustering, then the
pipeline. Every library's thread pool is capped at ``threads`` for the whole run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tastemap.bench.schema import SCHEMA_VERSION, figure
from tastemap.errors import InputError

logger = logging.getLogger(__name__)

SUITES = ("encoder", "roofline", "cluster", "pipeline", "serving")
DEFAULT_SUITES = ("encoder", "roofline", "cluster", "pipeline")
"""Run when no suite is named; ``serving`` (fit once vs refit per call) is run with ``--suite serving``."""


def default_cache_dir() -> Path:
    """Where sentence-transformers' ONNX exports are kept between runs: ``bench`` in the tastemap
    folder (:func:`tastemap.paths.cache_dir`; ``~/.cache/tastemap/bench`` on Linux)."""
    from tastemap.paths import cache_dir

    return cache_dir("bench")


@dataclass(frozen=True)
class BenchConfig:
    """One bench run. ``models`` are presets (``minilm``, ``bert-base``) or package folders; presets
    are built in ``models_dir`` (default: see :func:`tastemap.bench.models.resolve_models`)."""

    quick: bool = False
    threads: int = 2
    suites: tuple[str, ...] = DEFAULT_SUITES
    models: tuple[str, ...] = ("minilm", "bert-base")
    models_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    seed: int = 0

    def __post_init__(self):
        unknown = [suite for suite in self.suites if suite not in SUITES]
        if unknown or not self.suites:
            raise InputError(f"suites={list(self.suites)} is not valid: choose one or more of {list(SUITES)}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise InputError(f"threads={self.threads!r} should be an integer >= 1")
        if not self.models and ({"encoder", "pipeline", "serving"} & set(self.suites)):
            raise InputError("the encoder, pipeline and serving suites need at least one model (--models minilm)")

    @classmethod
    def quick_preset(cls, **changes) -> "BenchConfig":
        """CI-sized: all-MiniLM-L6-v2 only, small workloads, well under a minute once exported."""
        return cls(**{"quick": True, "models": ("minilm",), **changes})


def run_bench(config: BenchConfig, command: str = "tastemap bench") -> dict:
    """Run the suites of ``config``; returns the result document (see :mod:`tastemap.bench.schema`)."""
    from tastemap.bench.machine import machine_info
    from tastemap.bench.measure import thread_limits
    from tastemap.bench.models import resolve_models

    started = time.perf_counter()
    needs_models = bool({"encoder", "pipeline", "serving"} & set(config.suites))
    packages = resolve_models(list(config.models), config.models_dir) if needs_models else []
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config": {"quick": config.quick, "threads": config.threads, "suites": list(config.suites),
                   "models": [str(path) for path in packages] or list(config.models), "seed": config.seed},
        "machine": machine_info(config.threads),
        "seconds": 0.0,
        "suites": {},
        "figures": {},
        "notes": [],
    }
    with thread_limits(config.threads):
        ceilings = None
        if "roofline" in config.suites:
            ceilings = _run(doc, "roofline", lambda: _ceilings(config))["ceilings"]
        if "encoder" in config.suites:
            encoder_context = _run(doc, "encoder", lambda: _encoder(config, packages))
            if ceilings is not None:
                ceilings = _merge_ceilings(doc, ceilings, _ceilings(config)[1]["ceilings"])
                from tastemap.bench.roofline import roofline_figures

                doc["figures"].update(roofline_figures(encoder_context, ceilings))
        if "cluster" in config.suites:
            _run(doc, "cluster", lambda: _cluster(config))
        if "pipeline" in config.suites:
            _run(doc, "pipeline", lambda: _pipeline(config, packages[0]))
        if "serving" in config.suites:
            _run(doc, "serving", lambda: _serving(config, packages[0]))
    from tastemap.bench.machine import load_average

    doc["machine"]["load_average_end"] = load_average()
    doc["seconds"] = round(time.perf_counter() - started, 2)
    return doc


def _run(doc: dict, name: str, suite) -> dict:
    logger.info("bench: %s suite", name)
    start = time.perf_counter()
    figures, context, notes = suite()
    doc["figures"].update(figures)
    doc["notes"].extend(notes)
    doc["suites"][name] = {"seconds": round(time.perf_counter() - start, 2), "context": context}
    return context


def _ceilings(config: BenchConfig):
    from tastemap.bench.roofline import measure_ceilings

    ceilings = measure_ceilings(config.threads, size=2048, repeats=3)
    figures = {"roofline/ceiling/fp32": figure(ceilings["fp32"], "GFLOP/s"),
               "roofline/ceiling/int8": figure(ceilings["int8"], "GOP/s")}
    context = {"ceilings": ceilings, "method": "2048x2048x2048 products through ONNX Runtime (MatMul float32, "
                                               "MatMulInteger uint8 x int8), best of 3 before and 3 after the "
                                               "encoder suite"}
    return figures, context, []


def _merge_ceilings(doc: dict, first: dict, second: dict) -> dict:
    """The best of two ceiling measurements; updates the roofline figures and context in ``doc``."""
    best = {key: max(first[key], second[key]) for key in first}
    doc["figures"]["roofline/ceiling/fp32"] = figure(best["fp32"], "GFLOP/s")
    doc["figures"]["roofline/ceiling/int8"] = figure(best["int8"], "GOP/s")
    doc["suites"]["roofline"]["context"]["ceilings"] = best
    doc["suites"]["roofline"]["context"]["measurements"] = [first, second]
    return best


def _encoder(config: BenchConfig, packages: list[Path]):
    from tastemap.bench.encoder import EncoderSuiteConfig, run_encoder_suite

    suite = EncoderSuiteConfig.quick() if config.quick else EncoderSuiteConfig()
    suite = EncoderSuiteConfig(**{**suite.__dict__, "seed": config.seed})
    return run_encoder_suite(packages, suite, threads=config.threads, cache_dir=config.cache_dir)


def _cluster(config: BenchConfig):
    from tastemap.bench.cluster import ClusterSuiteConfig, run_cluster_suite

    suite = ClusterSuiteConfig.quick() if config.quick else ClusterSuiteConfig.full()
    return run_cluster_suite(suite, threads=config.threads)


def _pipeline(config: BenchConfig, package: Path):
    from tastemap.bench.pipeline import PipelineSuiteConfig, run_pipeline_suite

    suite = PipelineSuiteConfig.quick() if config.quick else PipelineSuiteConfig()
    return run_pipeline_suite(package, suite, threads=config.threads)


def _serving(config: BenchConfig, package: Path):
    from tastemap.bench.serving import ServingSuiteConfig, run_serving_suite

    suite = ServingSuiteConfig.quick() if config.quick else ServingSuiteConfig()
    return run_serving_suite(package, ServingSuiteConfig(**{**suite.__dict__, "seed": config.seed}),
                             threads=config.threads)
