"""Encoder suite: throughput, latency, memory and quality retention of every backend, side by side.

The backends and the interleaved timing are those of :mod:`tastemap.bench.encoder_compare`
(sentence-transformers PyTorch fp32, its ONNX fp32 and int8 backends, tastemap fp32 and int8),
plus ``tastemap-fp16`` on CUDA where a GPU attaches. Every backend is loaded once, then timed in
interleaved rounds (round ``r`` runs each backend once over the whole workload), so that a burst
of load on a shared machine hits every backend alike; the median round counts. Each call's
process CPU time is recorded as well: wall time on a shared machine also measures the neighbours,
CPU time measures the work a backend needs, so the gated speed ratios are CPU-time ratios
(``cpu_speedup/...``) and the wall-clock ratios (``speedup/...``) are shown beside them. Latency is
measured per request size (texts per call; each library batches a call its own way) on the
``items`` workload, on consecutive slices of it, each backend's calls back to back.

Figures (names ``encoder/<model>/...``): texts/s, tokens/s and peak memory per workload and
backend; p50/p95/p99 latency per request size; mean and min cosine and Spearman of the
similarity ranking against the PyTorch fp32 reference; and the in-run speed ratios (tastemap
int8 over sentence-transformers PyTorch fp32 and ONNX int8, tastemap fp32 over
sentence-transformers ONNX fp32, tastemap int8 over tastemap fp32).

Workload sizes scale inversely with the model's FLOPs per token (all-MiniLM-L6-v2 = 1), so a
bert-base-shaped model gets about the same time budget as MiniLM.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tastemap.bench.measure import PeakMemory, latency_summary, quality_figures, time_calls
from tastemap.bench.roofline import ModelShape, text_flops
from tastemap.bench.schema import figure
from tastemap.bench.workloads import make_workloads

logger = logging.getLogger(__name__)

BACKENDS = ("st-torch-fp32", "st-onnx-fp32", "st-onnx-int8", "tastemap-fp32", "tastemap-int8", "tastemap-fp16")
# (numerator, denominator, gated): speed ratios measured in the same run.
RATIOS = (
    ("tastemap-int8", "st-torch-fp32", True),
    ("tastemap-int8", "st-onnx-int8", True),
    ("tastemap-fp32", "st-onnx-fp32", True),
    ("tastemap-int8", "tastemap-fp32", True),
    ("tastemap-fp16", "st-torch-fp32", False),
    ("st-onnx-fp32", "st-torch-fp32", False),
    ("st-onnx-int8", "st-torch-fp32", False),
)
GATED_QUALITY = ("tastemap-int8", "tastemap-fp16")
REFERENCE_FLOPS_PER_TOKEN = 21.2e6  # all-MiniLM-L6-v2 at short lengths


@dataclass(frozen=True)
class EncoderSuiteConfig:
    """What to measure. ``workloads`` maps a workload to its number of texts (for MiniLM-sized
    models), ``latency_texts`` is about how many texts each (backend, request size) cell encodes
    (2 to 20 calls); request sizes above ``latency_texts`` are skipped."""

    workloads: dict = field(default_factory=lambda: {"queries": 500, "items": 1000, "long": 32})
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128, 256)
    latency_texts: int = 256
    rounds: int = 3
    backends: tuple[str, ...] = BACKENDS
    quantization: bool = True
    seed: int = 0

    @classmethod
    def quick(cls) -> "EncoderSuiteConfig":
        """CI-sized: two workloads of 192 texts, 3 rounds, request sizes 1 and 32, no quantization study."""
        return cls(workloads={"queries": 192, "items": 192}, batch_sizes=(1, 32), latency_texts=64, rounds=3,
                   quantization=False)

    def scaled(self, factor: float) -> "EncoderSuiteConfig":
        """Workload sizes and latency budget times ``factor`` (at least 16 texts, 8 for ``long``)."""
        sizes = {name: max(8 if name == "long" else 16, int(n * factor)) for name, n in self.workloads.items()}
        return replace(self, workloads=sizes, latency_texts=max(8, int(self.latency_texts * factor)))

    def __post_init__(self):
        if not self.workloads or min(self.workloads.values()) < 1 or self.rounds < 1:
            from tastemap.errors import InputError

            raise InputError(f"workloads={self.workloads} and rounds={self.rounds} should all be >= 1")


def run_encoder_suite(package_dirs: list[Path], config: EncoderSuiteConfig, *, threads: int,
                      cache_dir: Path) -> tuple[dict, dict, list[str]]:
    """Measure every model package; returns ``(figures, context, notes)``."""
    figures: dict = {}
    context: dict = {"models": {}}
    notes: list[str] = []
    for package_dir in package_dirs:
        model_figures, model_context, model_notes = measure_model(Path(package_dir), config, threads=threads,
                                                                  cache_dir=cache_dir)
        figures.update(model_figures)
        context["models"][model_context["name"]] = model_context
        notes.extend(model_notes)
        gc.collect()
    if config.quantization and package_dirs:
        quantization_figures, context["quantization"] = measure_quantization(
            Path(package_dirs[0]), threads=threads, rounds=config.rounds, seed=config.seed)
        figures.update(quantization_figures)
    return figures, context, notes


def measure_quantization(package_dir: Path, *, threads: int, rounds: int, seed: int = 0,
                         n_movies: int = 200, batch_size: int = 32) -> tuple[dict, dict]:
    """The int8 schemes of :mod:`tastemap.bench.quantization` on the package's fp32 model.

    Quality (mean and min cosine to fp32, pairwise-similarity Spearman), texts per wall second and per process CPU second
    (interleaved rounds, batches of ``batch_size``, ONNX Runtime's basic graph optimizations) of
    tastemap's per-token int8 schemes and ONNX Runtime's per-channel and per-tensor dynamic
    quantization; returns ``(figures, context)``.
    """
    import tempfile

    from tastemap.bench import quantization
    from tastemap.package import ModelPackage

    package = ModelPackage.load(package_dir)
    tokenizer = package.load_tokenizer()
    texts = quantization.make_texts(n_movies, seed)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        variants = quantization.make_variants(package.variant_path("fp32"), Path(folder))
        encoders = {(key, "basic"): quantization.make_encoder(path, tokenizer, "basic", threads)
                    for key, path in variants.items()}
        reference = encoders["fp32", "basic"].encode(texts, batch_size)
        speed = quantization.time_encoders(encoders, texts, batch_size, rounds)
        prefix = f"encoder/{package.name}/quantization"
        for key, path in variants.items():
            label = key.replace(" ", "-")
            vectors = encoders[key, "basic"].encode(texts, batch_size)
            cosine = (vectors * reference).sum(axis=1)
            wall, cpu = speed[key, "basic"]
            figures[f"{prefix}/{label}/texts_per_s"] = figure(wall, "texts/s")
            figures[f"{prefix}/{label}/texts_per_cpu_s"] = figure(cpu, "texts/CPU-s")
            figures[f"{prefix}/{label}/size_mib"] = figure(path.stat().st_size / 2**20, "MiB", better="lower")
            figures[f"{prefix}/{label}/mean_cosine"] = figure(float(cosine.mean()), "cosine")
            figures[f"{prefix}/{label}/min_cosine"] = figure(float(cosine.min()), "cosine")
            figures[f"{prefix}/{label}/pair_spearman"] = figure(
                quantization.pair_spearman(reference, vectors), "spearman")
    context = {"model": package.name, "n_texts": len(texts), "batch_size": batch_size,
               "schemes": [key.replace(" ", "-") for key in variants],
               "texts": "export validation texts plus MovieLens titles with genres"}
    return figures, context


def make_functions(package_dir: Path, source: Path | None, threads: int, cache_dir: Path,
                   names: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Encode functions ``texts -> [n, dim]`` per backend name, loaded; and notes on missing ones.

    sentence-transformers and tastemap fp32/int8 come from
    :func:`tastemap.bench.encoder_compare.make_backends`; without sentence-transformers or the
    package's source folder only the tastemap backends run.
    """
    from tastemap.bench import encoder_compare
    from tastemap.package import ModelPackage
    from tastemap.runtime.encode.encoder import Encoder
    from tastemap.runtime.encode.providers import CUDA, available_providers

    package = ModelPackage.load(package_dir)
    notes = []
    if importlib.util.find_spec("sentence_transformers") is None:
        notes.append("st-*: not available (sentence-transformers not installed; pip install tastemap[bench])")
    elif source is None or not source.is_dir():
        notes.append(f"st-*: not available (source model folder {source} not found)")
    if not notes:
        work = Path(cache_dir) / f"{package.name}-{package.manifest['source']['sha256'][:12]}"
        functions = encoder_compare.make_backends(package_dir, source, threads, work)
    else:
        functions = {f"tastemap-{variant}": Encoder(package_dir, variant=variant, device="cpu", threads=threads)
                     .load().encode for variant in ("fp32", "int8")}
    if "tastemap-fp16" in names:
        if "fp16" not in package.variants:
            notes.append(f"tastemap-fp16: not available (package {package_dir} has no fp16 variant)")
        elif CUDA not in available_providers():
            notes.append("tastemap-fp16: not available (no CUDA execution provider; fp16 runs on a GPU)")
        else:
            functions["tastemap-fp16"] = Encoder(package_dir, variant="fp16", device="cuda").load().encode
    return {name: function for name, function in functions.items() if name in names}, notes


def measure_model(package_dir: Path, config: EncoderSuiteConfig, *, threads: int,
                  cache_dir: Path) -> tuple[dict, dict, list[str]]:
    """All figures of one model package (see the module docstring)."""
    from tastemap.package import ModelPackage

    package = ModelPackage.load(package_dir)
    shape = ModelShape.from_folder(package_dir)
    factor = min(1.0, REFERENCE_FLOPS_PER_TOKEN / shape.linear_flops_per_token)
    config = config.scaled(factor)
    name = package.name
    from tastemap.export import local_source

    source = local_source(package.manifest)
    workloads = make_workloads(package.load_tokenizer(), tuple(config.workloads), config.workloads, seed=config.seed)
    with PeakMemory() as memory:
        functions, notes = make_functions(Path(package_dir), source, threads, cache_dir, config.backends)
    notes = [f"encoder/{name}: {note}" for note in notes]
    figures: dict = {f"encoder/{name}/load_mib": figure(memory.peak_mib, "MiB", better="lower")}
    reference_name = "st-torch-fp32" if "st-torch-fp32" in functions else "tastemap-fp32"
    context = {
        "name": name,
        "package": str(package_dir),
        "source": str(source),
        "shape": shape.as_dict(),
        "size_factor": round(factor, 4),
        "threads": threads,
        "backends": sorted(functions),
        "quality_reference": reference_name,
        "workloads": {},
    }
    for workload in workloads.values():
        peaks = {key: 0.0 for key in functions}
        cpu: dict[str, list[float]] = {key: [] for key in functions}
        measured = _with_memory(functions, peaks, cpu, len(workload.texts))
        rounds, outputs = _rounds(measured, workload.texts, config.rounds)
        seconds = {key: statistics.median(values) for key, values in rounds.items()}
        cpu_seconds = {key: statistics.median(values) for key, values in cpu.items()}
        flops = float(text_flops(shape, workload.tokens).sum())
        context["workloads"][workload.name] = {
            **workload.context(), "flops": flops, "seconds": {key: round(s, 6) for key, s in seconds.items()},
            "round_seconds": {key: [round(s, 6) for s in values] for key, values in rounds.items()},
            "cpu_seconds": {key: round(s, 6) for key, s in cpu_seconds.items()}}
        prefix = f"encoder/{name}/{workload.name}"
        figures[f"{prefix}/gflop_per_text"] = figure(flops / len(workload.texts) / 1e9, "GFLOP/text", better="lower")
        for key, value in seconds.items():
            figures[f"{prefix}/{key}/texts_per_s"] = figure(len(workload.texts) / value, "texts/s")
            figures[f"{prefix}/{key}/texts_per_cpu_s"] = figure(len(workload.texts) / cpu_seconds[key], "texts/CPU-s")
            figures[f"{prefix}/{key}/tokens_per_s"] = figure(workload.tokens.sum() / value, "tokens/s")
            figures[f"{prefix}/{key}/encode_peak_mib"] = figure(peaks[key], "MiB", better="lower")
        figures.update(_ratio_figures(prefix, seconds, cpu_seconds))
        if reference_name in outputs:
            figures.update(_quality(prefix, outputs, reference_name, gated=workload.name == "items"))
    if "items" in workloads:
        figures.update(_latency(f"encoder/{name}/latency", functions, workloads["items"].texts, config))
    functions.clear()
    return figures, context, notes


def _rounds(functions: dict, texts: list[str], rounds: int) -> tuple[dict, dict]:
    """Seconds per round per backend (rounds interleaved by
    :func:`tastemap.bench.encoder_compare.compare`) and the first round's vectors."""
    from tastemap.bench.encoder_compare import compare

    seconds: dict[str, list[float]] = {key: [] for key in functions}
    outputs: dict = {}
    for _ in range(rounds):
        once, _, vectors = compare(functions, texts, 1)
        for key, value in once.items():
            seconds[key].append(value)
        outputs = outputs or vectors
    return seconds, outputs


def _with_memory(functions: dict, peaks: dict, cpu: dict | None = None, size: int = 0) -> dict:
    """``functions`` wrapped to record each one's peak memory growth per call (MiB) into ``peaks``
    and, for calls of ``size`` texts, the process CPU seconds of the call into ``cpu[key]``."""
    def wrap(key, function):
        def measured(texts):
            started = time.process_time()
            with PeakMemory() as memory:
                result = function(texts)
            if cpu is not None and len(texts) == size:
                cpu[key].append(time.process_time() - started)
            peaks[key] = max(peaks[key], memory.peak_mib)
            return result
        return measured

    return {key: wrap(key, function) for key, function in functions.items()}


def _latency(prefix: str, functions: dict, texts: list[str], config: EncoderSuiteConfig) -> dict:
    """p50/p95/p99 per backend and request size; calls cycle through consecutive slices of ``texts``.

    Each backend's calls run back to back after one untimed call. Interleaving single calls would
    time each one right after another runtime's call, while that runtime's threads still spin
    (ONNX Runtime's pool and PyTorch's OpenMP threads busy-wait a while after their work) and its
    weights fill the caches: measured here, that made a 2.5 ms tastemap call 3.9 ms and a 12 ms
    PyTorch call 23 ms.
    """
    figures = {}
    for batch_size in config.batch_sizes:
        if batch_size > config.latency_texts:
            continue
        calls = min(20, max(2, math.ceil(config.latency_texts / batch_size)))
        batches = [
            texts[start : start + batch_size]
            for start in ((call * batch_size) % max(1, len(texts) - batch_size + 1) for call in range(calls))
        ]
        for key, function in functions.items():
            # The untimed call lets the previous backend's threads go idle.
            for label, value in latency_summary(time_calls(function, batches, warmup=1)).items():
                figures[f"{prefix}/{key}/bs{batch_size}/{label}"] = figure(value, "ms", better="lower")
    return figures


def _ratio_figures(prefix: str, seconds: dict, cpu_seconds: dict) -> dict:
    """Speed ratios: wall-clock (shown) and CPU-time (gated where the pair is gated)."""
    figures = {}
    for numerator, denominator, gated in RATIOS:
        if numerator in seconds and denominator in seconds:
            figures[f"{prefix}/speedup/{numerator}_vs_{denominator}"] = figure(
                seconds[denominator] / seconds[numerator], "x")
            figures[f"{prefix}/cpu_speedup/{numerator}_vs_{denominator}"] = figure(
                cpu_seconds[denominator] / cpu_seconds[numerator], "x", gated=gated)
    return figures


def _quality(prefix: str, outputs: dict, reference_name: str, *, gated: bool) -> dict:
    figures = {}
    reference = outputs[reference_name]
    for key, vectors in outputs.items():
        if key == reference_name:
            continue
        quality = quality_figures(reference, vectors)
        gate = gated and key in GATED_QUALITY
        figures[f"{prefix}/{key}/quality/mean_cosine"] = figure(quality["mean_cosine"], "cosine", gated=gate)
        figures[f"{prefix}/{key}/quality/min_cosine"] = figure(quality["min_cosine"], "cosine")
        figures[f"{prefix}/{key}/quality/spearman"] = figure(quality["spearman"], "rho", gated=gate)
    return figures


