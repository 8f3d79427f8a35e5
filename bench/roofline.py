"""Roofline: the encoder's FLOPs per text, this machine's matrix-product ceiling, and the fraction reached.

**FLOPs per text.** For a BERT-family encoder with ``L`` layers, hidden size ``H`` and feed-forward
size ``I``, a text of ``s`` real tokens costs, per layer (one multiply-add = 2 FLOPs):

- Q, K, V and output projections: ``4 · 2·s·H·H = 8·s·H²``;
- attention scores ``QKᵀ`` and the weighted sum ``AV``: ``2 · 2·s²·H = 4·s²·H``;
- feed-forward, up and down: ``2 · 2·s·H·I = 4·s·H·I``;

so ``flops(s) = L · (8·s·H² + 4·s·H·I + 4·s²·H)``. Embeddings, layer norms, softmax, GELU and
pooling are element-wise, a few percent at most, and left out. Only real tokens are counted:
FLOPs spent on padding are waste and lower the achieved fraction, as they should.

**Ceiling.** A large square matrix product through ONNX Runtime at the bench's thread count:
``MatMul`` in float32 and ``MatMulInteger`` (uint8 × int8 → int32) for int8; the best of several
repeats is the ceiling (GFLOP/s, or GOP/s for int8).

**Fraction.** Achieved = the workload's FLOPs / the backend's median round of wall time
(tokenization included); fraction = achieved / ceiling of the backend's precision (int8 backends
against the int8 ceiling, the others against float32). The same ratio per process CPU second
(``cpu_fraction_of_ceiling``) is the gated one: on a shared machine it does not count the time
spent waiting for a core.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tastemap.bench.schema import figure
from tastemap.errors import ModelPackageError

GATED_FRACTIONS = ("tastemap-int8", "tastemap-fp32")


@dataclass(frozen=True)
class ModelShape:
    """The sizes that set an encoder's cost: ``layers``, ``hidden``, ``intermediate``."""

    layers: int
    hidden: int
    intermediate: int

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        """From a Hugging Face ``config.json`` (BERT, RoBERTa, MPNet names, or DistilBERT's)."""
        for keys in (("num_hidden_layers", "hidden_size", "intermediate_size"), ("n_layers", "dim", "hidden_dim")):
            if all(key in config for key in keys):
                return cls(*(int(config[key]) for key in keys))
        raise ModelPackageError(
            "config.json has neither num_hidden_layers/hidden_size/intermediate_size nor "
            f"n_layers/dim/hidden_dim (keys found: {sorted(config)[:12]}); cannot count FLOPs"
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelShape":
        path = Path(folder) / "config.json"
        try:
            return cls.from_config(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ModelPackageError(f"{path} not found; a model package holds the model's config.json") from None

    @property
    def linear_flops_per_token(self) -> float:
        """FLOPs per token of the projections and feed-forward (the part linear in length)."""
        return float(self.layers * (8 * self.hidden**2 + 4 * self.hidden * self.intermediate))

    def as_dict(self) -> dict:
        return asdict(self)


def text_flops(shape: ModelShape, tokens: np.ndarray) -> np.ndarray:
    """FLOPs per text for real token counts ``tokens`` ``[n]``: ``[n]`` float64 (module docstring)."""
    s = np.asarray(tokens, dtype=np.float64)
    h, i = float(shape.hidden), float(shape.intermediate)
    return shape.layers * (8 * s * h * h + 4 * s * h * i + 4 * s * s * h)


def measure_ceilings(threads: int, *, size: int = 2048, repeats: int = 3) -> dict[str, float]:
    """Best GFLOP/s of a ``size``³ product through ONNX Runtime: ``{"fp32", "int8"}`` per wall
    second and ``{"fp32_cpu", "int8_cpu"}`` per process CPU second (all threads)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    inputs = {
        "fp32": rng.standard_normal((size, size), dtype=np.float32),
        "int8": rng.integers(0, 256, (size, size), dtype=np.uint8),
    }
    weights = {
        "fp32": rng.standard_normal((size, size), dtype=np.float32),
        "int8": rng.integers(-128, 128, (size, size), dtype=np.int8),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    ceilings = {}
    for precision in ("fp32", "int8"):
        model = _matmul_model(weights[precision], precision)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"a": inputs[precision]}
        session.run(None, feed)
        timings = [_timed(session, feed) for _ in range(repeats)]
        ceilings[precision] = 2.0 * size**3 / min(wall for wall, _ in timings) / 1e9
        ceilings[f"{precision}_cpu"] = 2.0 * size**3 / min(cpu for _, cpu in timings) / 1e9
    return ceilings


def roofline_figures(encoder_context: dict, ceilings: dict[str, float]) -> dict:
    """Achieved GFLOP/s and fraction of the ceiling per model, workload and backend."""
    figures = {}
    for model, model_context in encoder_context.get("models", {}).items():
        for workload, info in model_context["workloads"].items():
            for backend, seconds in info["seconds"].items():
                precision = backend.rsplit("-", 1)[-1]
                if precision == "fp16":
                    continue  # runs on a GPU; the ceilings are the CPU's
                achieved = info["flops"] / seconds / 1e9
                prefix = f"roofline/{model}/{workload}/{backend}"
                figures[f"{prefix}/gflops"] = figure(achieved, "GFLOP/s")
                figures[f"{prefix}/fraction_of_ceiling"] = figure(achieved / ceilings[precision], "fraction")
                cpu_seconds = info.get("cpu_seconds", {}).get(backend)
                if cpu_seconds and f"{precision}_cpu" in ceilings:
                    figures[f"{prefix}/cpu_fraction_of_ceiling"] = figure(
                        info["flops"] / cpu_seconds / 1e9 / ceilings[f"{precision}_cpu"], "fraction",
                        gated=backend in GATED_FRACTIONS)
    return figures


def _timed(session, feed) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one run."""
    start, start_cpu = time.perf_counter(), time.process_time()
    session.run(None, feed)
    return time.perf_counter() - start, time.process_time() - start_cpu


def _matmul_model(weight: np.ndarray, precision: str):
    from onnx import TensorProto, helper, numpy_helper

    size = weight.shape[0]
    if precision == "fp32":
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "ceiling", [a], [y], initializer=[numpy_helper.from_array(weight, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
