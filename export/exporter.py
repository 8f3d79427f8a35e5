"""``export_model``: source folder in, gated model package out."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from tastemap.cpu import CpuInfo, cpu_info
from tastemap.errors import InputError, ParityError
from tastemap.versions import installed_versions
from tastemap.export import parity
from tastemap.export.graph import OUTPUT_NAME, export_fp32
from tastemap.package import (
    MANIFEST,
    SCHEMA_VERSION,
    TOKENIZER_FILES,
    VARIANT_FILES,
    ModelPackage,
    atomic_directory,
    sha256_file,
)
from tastemap.export.parity import ParityFigures, ParityGate
from tastemap.export.source import SourceModel
from tastemap.export.source_index import remember_source

log = logging.getLogger(__name__)
VARIANTS = tuple(VARIANT_FILES)
MIN_OPSET, MAX_OPSET = 14, 21
_DEFAULT_GATES = {"fp32": ParityGate.fp32(), "int8": ParityGate.int8(), "fp16": ParityGate.fp16()}
# ONNX Runtime graph optimization level per variant, chosen by measurement on an AVX-512 CPU
# (bench/quantization.py): int8 gains 8-12% at "extended", where MatMulInteger, Cast and the
# row/column scaling fuse into one kernel; fp32 gains nothing beyond "basic", and the transformer
# fusions of "all" were slower for MiniLM. fp16 targets CUDA, where it was not measured here.
ORT_OPTIMIZATION = {"fp32": "basic", "int8": "extended", "fp16": "basic"}


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how. Invalid combinations are rejected here, before any work.

    ``max_excluded_nodes`` bounds the int8 fallback: when the int8 gate fails, the most sensitive
    MatMuls are kept in float (1, 2, 4, ... up to this many) and the variant is quantized again.
    """

    out: Path
    source: str | Path | None = None
    variants: tuple[str, ...] = VARIANTS
    max_seq_len: int | None = None
    opset: int = 18
    validation: Path | None = None
    calibration: Path | None = None
    force: bool = False
    gates: dict = field(default_factory=lambda: dict(_DEFAULT_GATES))
    max_excluded_nodes: int = 16

    def __post_init__(self):
        unknown = [name for name in self.variants if name not in VARIANTS]
        if unknown or not self.variants:
            raise InputError(
                f"variants={list(self.variants)} is not valid: choose one or more of {list(VARIANTS)}"
            )
        if len(set(self.variants)) != len(self.variants):
            raise InputError(f"variants={list(self.variants)} lists a variant twice")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError(f"opset={self.opset} must be between {MIN_OPSET} and {MAX_OPSET}")
        if self.max_seq_len is not None and self.max_seq_len < 1:
            raise InputError(f"max_seq_len={self.max_seq_len} must be >= 1")
        if self.calibration is not None and "int8" not in self.variants:
            raise InputError("--calibration sets up static int8 quantization: add int8 to --variants")
        if self.max_excluded_nodes < 0:
            raise InputError(f"max_excluded_nodes={self.max_excluded_nodes} must be >= 0")


@dataclass(frozen=True)
class VariantResult:
    """One variant's outcome: its file, parity figures and the gate rules it broke (if any)."""

    name: str
    file: str
    size: int
    figures: ParityFigures | None
    failures: tuple[str, ...]
    details: dict

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class ExportResult:
    """The written package, each variant's outcome, and the CPU the parity gates ran on."""

    package: ModelPackage | None
    variants: tuple[VariantResult, ...]
    cpu: CpuInfo


def export_model(config: ExportConfig) -> ExportResult:
    """Export, quantize and gate each variant; write the package atomically to ``config.out``.

    When a variant fails its gate and ``config.force`` is false, nothing is written and
    :class:`ParityError` carries the figures of every variant.
    """
    source = SourceModel.resolve(config.source, config.max_seq_len)
    texts = parity.validation_texts(config.validation)
    log.info("parity gates run on %s (int8 ISA class %s)", cpu_info().model, cpu_info().isa)
    calibration = parity.read_text_lines(Path(config.calibration)) if config.calibration else None
    out = Path(config.out)
    with atomic_directory(out) as staging:
        _copy_tokenizer(source, staging)
        fp32_path = staging / VARIANT_FILES["fp32"]
        log.info("exporting fp32 graph (pooling=%s, max_seq_len=%d)", source.pooling, source.max_seq_len)
        model = export_fp32(source, fp32_path, config.opset)
        log.info("computing the PyTorch reference on %d validation texts", len(texts))
        reference = parity.reference_embeddings(source, texts)
        results = []
        for name in config.variants:
            results.append(_build_variant(name, staging, source, texts, reference, config, calibration))
        if "fp32" not in config.variants:
            fp32_path.unlink()
        failed = [r for r in results if r.failures]
        if failed and not config.force:
            raise ParityError(
                "parity gate failed, nothing was written (use --force to keep failing variants):\n"
                + format_results(results)
            )
        manifest = _manifest(source, config, model, staging, results)
        (staging / MANIFEST).write_text(_dumps(manifest), encoding="utf-8")
    remember_source(source.sha256, source.path)  # the manifest names the source by hash, not by this machine's path
    return ExportResult(package=ModelPackage.load(out), variants=tuple(results), cpu=cpu_info())


def _build_variant(name, staging, source, texts, reference, config, calibration) -> VariantResult:
    fp32_path = staging / VARIANT_FILES["fp32"]
    path = staging / VARIANT_FILES[name]
    gate = config.gates[name]
    details: dict = {}
    if name == "fp32":
        figures = _measure(path, staging, source, texts, reference)
    elif name == "fp16":
        from tastemap.export.half import convert_fp16

        log.info("converting to fp16")
        convert_fp16(fp32_path, path)
        figures = _measure_fp16(path, staging, source, texts, reference, details)
    elif calibration is not None:
        from tastemap.export.static_quant import quantize_static_int8

        log.info("quantizing int8 (static QDQ, calibrated on %d texts)", len(calibration))
        quantize_static_int8(fp32_path, path, _feeds(staging, source, calibration))
        details.update(mode="static-qdq", weight_limit=64)
        figures = _measure(path, staging, source, texts, reference)
    else:
        figures = _quantize_int8_gated(fp32_path, path, staging, source, texts, reference, gate, config, details)
    failures = tuple(gate.failures(figures)) if figures is not None else ()
    log.info("%s: %s", name, "passed" if not failures else "FAILED " + ", ".join(failures))
    return VariantResult(name, VARIANT_FILES[name], path.stat().st_size, figures, failures, details)


def _quantize_int8_gated(fp32_path, path, staging, source, texts, reference, gate, config, details):
    """Per-token dynamic int8, retried with the most sensitive nodes kept in float (1, 2, 4, ...)
    until the gate passes or ``config.max_excluded_nodes`` is reached."""
    from tastemap.export.quantize import DEFAULT_SCHEME, WEIGHT_LIMIT, quantize_int8
    from tastemap.export.sensitivity import rank_sensitive_nodes

    def attempt(excluded: list[str]):
        log.info("quantizing int8 (%s per-token activations, per-channel weights, %d nodes in float)", DEFAULT_SCHEME, len(excluded))
        report = quantize_int8(fp32_path, path, exclude_nodes=excluded)
        return report, _measure(path, staging, source, texts, reference)

    excluded: list[str] = []
    report, figures = attempt(excluded)
    ranked: list[str] | None = None
    while gate.failures(figures) and len(excluded) < config.max_excluded_nodes:
        if ranked is None:
            ranked = rank_sensitive_nodes(fp32_path, _feeds(staging, source, texts[:64]))
        grown = min(max(1, 2 * len(excluded)), config.max_excluded_nodes, len(ranked))
        if grown <= len(excluded):
            break
        log.warning("int8 gate failed (%s); keeping the %d most sensitive nodes in float", ", ".join(gate.failures(figures)), grown)
        excluded = ranked[:grown]
        report, figures = attempt(excluded)
    # operands: the integer kernel ONNX Runtime dispatches on every CPU (u8 activations x s8
    # weights, zero point inside the product): what the bench's per-ISA figures are about.
    details.update(mode="dynamic-per-token", scheme=DEFAULT_SCHEME, weight_limit=WEIGHT_LIMIT, operands="u8s8",
                   quantized_nodes=len(report.quantized_nodes), float_nodes=excluded)
    return figures


def _measure(path, staging, source, texts, reference, providers=None) -> ParityFigures:
    """Parity of the variant at ``path``, run at the optimization level the runtime will use."""
    log.info("validating %s", path.name)
    variant = next(name for name, file in VARIANT_FILES.items() if file == path.name)
    vectors = parity.onnx_embeddings(path, staging / "tokenizer.json", texts, source.max_seq_len,
                                     providers=providers, graph_optimization=ORT_OPTIMIZATION[variant])
    return parity.compare(reference, vectors)


def _measure_fp16(path, staging, source, texts, reference, details) -> ParityFigures | None:
    """fp16 is validated on CUDA where present; ONNX Runtime's CPU provider lacks float16 kernels."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        details["validated_on"] = "CUDAExecutionProvider"
        return _measure(path, staging, source, texts, reference, ["CUDAExecutionProvider"])
    try:
        figures = _measure(path, staging, source, texts, reference)
    except Exception as exc:  # noqa: BLE001 - any ORT failure here means "cannot validate on CPU"
        log.warning("fp16 not validated: no CUDA device and the CPU provider cannot run it (%s)", type(exc).__name__)
        details["validated_on"] = None
        return None
    details["validated_on"] = "CPUExecutionProvider"
    return figures


def _feeds(staging: Path, source: SourceModel, texts: list[str]) -> dict[str, np.ndarray]:
    """One padded batch of ``texts`` as ONNX inputs (for calibration and sensitivity ranking)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(staging / "tokenizer.json"))
    tokenizer.enable_truncation(source.max_seq_len)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    inputs = {i.name for i in onnx.load(str(staging / VARIANT_FILES["fp32"])).graph.input}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    return feeds


def _copy_tokenizer(source: SourceModel, staging: Path) -> None:
    """Copy the tokenizer files; ``tokenizer.json`` gets the package's truncation and no padding, so
    that a consumer using it as it is gets the ids the package was validated with."""
    from tokenizers import Tokenizer

    for name in TOKENIZER_FILES:
        if (source.path / name).is_file():
            shutil.copy2(source.path / name, staging / name)
    tokenizer = Tokenizer.from_file(str(staging / "tokenizer.json"))
    tokenizer.enable_truncation(source.max_seq_len)
    tokenizer.no_padding()
    tokenizer.save(str(staging / "tokenizer.json"))


def _manifest(source, config, model, staging, results) -> dict:
    dim = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    inputs = [
        {"name": i.name, "dtype": "int64", "shape": ["batch_size", "sequence_length"]}
        for i in model.graph.input
    ]
    tokenizer_files = {n: sha256_file(staging / n) for n in TOKENIZER_FILES if (staging / n).is_file()}
    variants = {}
    for result in results:
        variants[result.name] = {
            "file": result.file,
            "size": result.size,
            "sha256": sha256_file(staging / result.file),
            "precision": {"fp32": "float32", "int8": "int8", "fp16": "float16"}[result.name],
            "target": "cuda" if result.name == "fp16" else "cpu",
            "ort_graph_optimization": ORT_OPTIMIZATION[result.name],
            "parity": result.figures.to_dict() if result.figures else {},
            "passed": result.passed and result.figures is not None,
            "details": {**result.details, "gate": _gate_dict(config.gates[result.name]), "failures": list(result.failures)},
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "name": source.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"name": source.name, "sha256": source.sha256},  # no path: it is the exporting machine's
        **_finetune_entry(source),
        "embedding_dim": dim,
        "max_seq_len": source.max_seq_len,
        "pooling": source.pooling,
        "normalize": True,
        "opset": config.opset,
        "inputs": inputs,
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch_size", dim]}],
        "tokenizer": {"files": tokenizer_files, "pad_token_id": _pad_token_id(source), "truncation": source.max_seq_len},
        "variants": variants,
        "parity_cpu": cpu_info().to_dict(),
        "versions": _versions(),
    }


def _finetune_entry(source: SourceModel) -> dict:
    """``{"finetune": record}`` when the source folder was written by ``tastemap finetune``
    (base model and its hash, training-data hash, seed, epochs, loss), else ``{}``."""
    from tastemap.export.finetune import read_record

    record = read_record(source.path)
    return {"finetune": record} if record is not None else {}


def _gate_dict(gate: ParityGate) -> dict:
    return {"min_mean_cosine": gate.min_mean_cosine, "min_cosine": gate.min_cosine, "min_top10_overlap": gate.min_top10_overlap}


def _pad_token_id(source: SourceModel) -> int:
    import json

    config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    return int(config.get("pad_token_id") or 0)


def _versions() -> dict:
    names = ("tastemap", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers")
    return installed_versions(names)


def _dumps(data: dict) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


def format_results(results) -> str:
    """A plain-text table of the variants' sizes and parity figures."""
    lines = [f"{'variant':8} {'size MB':>8} {'mean cos':>9} {'min cos':>9} {'top10':>6}  gate"]
    for r in results:
        f = r.figures
        figures = f"{f.mean_cosine:9.5f} {f.min_cosine:9.5f} {f.top10_overlap:6.3f}" if f else f"{'-':>9} {'-':>9} {'-':>6}"
        gate = "pass" if r.passed and f else ("not validated" if not f else "FAIL: " + "; ".join(r.failures))
        lines.append(f"{r.name:8} {r.size / 1e6:8.1f} {figures}  {gate}")
    return "\n".join(lines)
