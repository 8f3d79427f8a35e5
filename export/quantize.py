"""Batch-invariant int8 quantization of an fp32 ONNX encoder that computes the same numbers on every CPU.

Every ``MatMul`` (and ``Gemm``) whose weight input is a constant float matrix is rewritten as:

- **weights**: int8 in ``[-64, 64]`` (:data:`WEIGHT_LIMIT`), symmetric, one scale per output column
  (``W[:, n] ~ Wq[:, n] * s_col[n]``), stored as int8 initializers;
- **activations**: quantized at run time to uint8 with one scale (and zero point) *per row*, i.e.
  per token, computed from that row alone (``ReduceMax``/``ReduceMin`` over the last axis, then a
  per-axis ``QuantizeLinear`` over the flattened rows); rows that feed several MatMuls (query,
  key, value) are quantized once;
- **product**: ``MatMulInteger`` (uint8 x int8), ``Cast`` to float and one ``Mul`` by the outer
  product ``s_row * s_col``, then the bias (the MatMul's following bias ``Add`` is folded into the
  quantized node). ONNX Runtime (``ORT_ENABLE_EXTENDED`` or higher) fuses ``MatMulInteger -> Cast
  -> Mul`` into one ``MatMulIntegerToFloat`` kernel. The per-row zero point is subtracted inside
  the integer product (see below), so nothing but the bias follows it.

**Why the weights stop at ±64.** On x86 CPUs without VNNI (AVX2, and AVX-512 before Cascade Lake),
ONNX Runtime's MLAS u8 x s8 kernels multiply with ``vpmaddubsw``, which adds each pair of adjacent
u8·s8 products into a *saturating* int16. With weights at ±127 a pair reaches 2·255·127 = 64,770
and is clipped to 32,767, so the same file gave other, wrong numbers there (up to 226 in absolute
value on a test MatMul). With ``|Wq| <= 64`` a pair is at most 2·255·64 = 32,640, so no CPU can
saturate: VNNI (``vpdpbusd``), AMX and ARM64 (``sdot``/``udot``, or widening multiplies)
accumulate in int32 anyway. One file is therefore exact on every CPU and there is nothing to pick.

Measured on all-MiniLM-L6-v2 against fp32, 1,000 texts (the export's validation set plus MovieLens
titles), ONNX Runtime 1.32 at ``extended`` optimization, 2 threads, AMD Zen 5 (AVX-512 VNNI), in one
run (``python -m tastemap.bench.quantization MODEL.onnx --movies 800 --rounds 5``); "pair Spearman"
is the rank correlation of all pairwise similarities with fp32's, an STS-like figure:

==========================================  =========  ========  ==============  ===============
scheme (weights / activations)              mean cos   min cos   pair Spearman   speed vs fp32
==========================================  =========  ========  ==============  ===============
±64 / asymmetric u8 (**used**)              0.99801    0.99622   0.99727         2.56x
±64 / symmetric u8                          0.99672    0.99425   0.99538         2.53x
±127 / asymmetric u8 (saturates on AVX2)    0.99897    0.99817   0.99834         2.36x
==========================================  =========  ========  ==============  ===============

Measured once with a modified quantizer on the same texts (length-sorted batches) and not kept:
u8 x u8 (weights + 128, zero point 128) is exact too (MLAS widens it to int16 ``vpmaddwd``) and
as accurate as ±127, but ran at 1.25x fp32 against 2.02x for the scheme used; 7-bit activations
with ±127 weights lost more than 7-bit weights (mean cosine 0.99700 asymmetric, 0.99469
symmetric), because one activation scale covers a whole token row while weights have one scale
per column. ``s8 x s8`` has no fast x86 kernel in MLAS outside AVX-VNNI-INT8. On an AVX2-only CPU
the scheme used gives the same parity as on AVX-512 VNNI (mean 0.998011, min 0.996223 under
qemu-user's Haswell model), where ±127 weights fell to mean 0.98151, min 0.94722
(``python -m tastemap.bench.int8_portability PACKAGE [--weight-limit 127]``).

Two activation schemes, both batch-invariant:

- ``"asymmetric"`` (default): per-row scale and zero point over ``[min, max]``. ONNX Runtime's
  integer kernels take one zero point per matrix only, so the row's zero point travels as ``C``
  extra uint8 columns of the activation (each holding it) and the weight gets ``C`` extra int8
  rows within ±64 that add up to ``-colsum(Wq)`` (:func:`zero_point_rows`): the kernel then
  computes ``(xq - zp_row) @ Wq`` itself, exactly, with the same pair bound. ``C`` is
  ``max|colsum| / 64`` rounded up to a multiple of 4, 8 to 60 on all-MiniLM-L6-v2 (2-16% more
  depth). It replaced a float correction after the product (``[zp * s_row, 1] @ [-colsum; bias]``,
  a ``Concat`` and an ``Add`` per MatMul, three passes over every output): as close to fp32
  (mean cosine 0.99802 against 0.99801; the old correction's float rounding moved some
  activations by a step, so the two agree to mean cosine 0.99978), and 5-25% fewer CPU seconds
  per text on MovieLens item texts on an AMX Xeon (1 and 2 threads).
- ``"symmetric"``: per-row scale over ``max |x|`` and the scalar zero point 128, which
  ``MatMulInteger`` handles itself.

Both add the bias as ``Sub(product, -bias)`` so that it is not fused into
``MatMulIntegerToFloat``, which would scale it by the per-row scale too (1.32).

Large embedding tables (``Gather`` on a constant ``[V, D]`` table of at least
:data:`MIN_TABLE_ELEMENTS` values) are stored as int8 in ``[-127, 127]`` with one scale per table
row (no integer product, so no pair limit), so the file is about 4x smaller than fp32.

Measured with ONNX Runtime 1.32's CPU provider and not used: its fused ``com.microsoft`` kernels
for the bias epilogues (``BiasGelu``, ``SkipLayerNormalization``) ran slower than the standard
operators they replace, and ``MultiHeadAttention`` no faster; ``MatMulNBits`` (8 bits, int8
compute) ran at 52-62% of the speed of ``MatMulIntegerToFloat``; fixed calibrated per-tensor
activation scales were 13% faster but less accurate (mean cosine 0.993) and clip inputs outside
the calibrated range. Measured on an AMX Xeon and not kept either: one zero point per tensor,
calibrated at export, with per-row scales (``MatMulInteger`` takes a scalar zero point) was no
more accurate than ``"symmetric"`` (mean cosine 0.99674 against 0.99672: the rows of a
layer-norm output lean each their own way); one integer product for a layer's query, key and
value (weights side by side, then ``Split``) ran 2-8% slower than three.

Because no statistic is shared between rows, a text's embedding does not depend on the other
texts of its batch or on their padding. Per-tensor dynamic quantization (``DynamicQuantizeLinear``)
shares one activation scale across the whole batch and loses that property.

When a parity gate fails, :func:`tastemap.export.sensitivity.rank_sensitive_nodes` says which
nodes to keep in float.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tastemap.errors import InputError, ModelPackageError

logger = logging.getLogger(__name__)

MIN_OPSET = 13
SCHEMES = ("asymmetric", "symmetric")
DEFAULT_SCHEME = "asymmetric"
# |Wq| <= 64 keeps every pair of u8·s8 products within int16 (2 * 255 * 64 = 32,640 <= 32,767),
# so CPUs whose kernel adds pairs with saturation (vpmaddubsw: AVX2, AVX-512 without VNNI) compute
# the exact integer product too. Embedding tables feed no integer product and keep the full range.
WEIGHT_LIMIT = 64
TABLE_LIMIT = 127
# Embedding tables smaller than this stay float: they weigh little (position and token-type
# tables) and some carry outlier columns that per-row int8 would blur.
MIN_TABLE_ELEMENTS = 1 << 20
_EPS = np.float32(1e-30)  # floor of a row scale, so that an all-zero row quantizes to zeros


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize_int8` did.

    ``quantized_nodes`` and ``excluded_nodes`` are node names of the fp32 graph (a node without a
    name is called ``<op_type>_<index>``); ``skipped_nodes`` are weight MatMul/Gemm nodes that
    cannot be quantized (``Gemm`` with ``transA=1``, a 3-D weight). Sizes are in bytes.
    """

    source: Path
    output: Path
    scheme: str
    quantized_nodes: tuple[str, ...]
    excluded_nodes: tuple[str, ...]
    skipped_nodes: tuple[str, ...]
    fp32_weight_bytes: int
    int8_weight_bytes: int
    fp32_file_bytes: int
    int8_file_bytes: int

    @property
    def size_ratio(self) -> float:
        """fp32 file size divided by int8 file size (about 4 for a BERT encoder)."""
        return self.fp32_file_bytes / self.int8_file_bytes


@dataclass(frozen=True)
class _Target:
    """One quantizable node.

    ``kind="matmul"``: ``y = alpha * x @ W + bias``, ``W`` ``[K, N]`` (MatMul or Gemm); ``bias_add``
    is the ``Add`` node of a MatMul's bias, folded into the quantized node.
    ``kind="gather"``: ``y = W[ids]``, an embedding lookup in the table ``W`` ``[V, D]``.
    """

    name: str
    kind: str
    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None = None
    alpha: float = 1.0
    bias_add: onnx.NodeProto | None = None

    @property
    def activation(self) -> str:
        """The name of the tensor the quantizer measures: activation ``x`` or the ``ids``."""
        return self.node.input[1] if self.kind == "gather" else self.node.input[0]

    @property
    def output(self) -> str:
        return (self.bias_add or self.node).output[0]


def node_name(node: onnx.NodeProto, index: int) -> str:
    """The name a node is known by here: its own name, or ``<op_type>_<index>`` when it has none."""
    return node.name or f"{node.op_type}_{index}"


def quantize_weight(weight: np.ndarray, limit: int = WEIGHT_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 quantization.

    ``weight`` ``[K, N]`` float -> (``wq`` ``[K, N]`` int8 in ``[-limit, limit]``, ``scale`` ``[N]``
    float32) with ``weight ~ wq * scale``. An all-zero column gets scale 1.
    """
    if not 1 <= limit <= 127:
        raise InputError(f"limit={limit} should be between 1 and 127")
    weight = np.asarray(weight, dtype=np.float32)
    amax = np.abs(weight).max(axis=0)
    scale = np.where(amax > 0, amax / np.float32(limit), np.float32(1.0)).astype(np.float32)
    wq = np.clip(np.rint(weight / scale), -limit, limit).astype(np.int8)
    return wq, scale


def quantize_rows(
    x: np.ndarray, scheme: str = DEFAULT_SCHEME
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 quantization with one scale and zero point per row (last axis).

    ``x`` ``[..., K]`` float -> (``xq`` ``[..., K]`` uint8, ``scale`` ``[..., 1]`` float32,
    ``zero_point`` ``[..., 1]`` float32 holding integers in ``[0, 255]``), with
    ``x ~ (xq - zero_point) * scale``. ``"asymmetric"`` maps ``[min(x, 0), max(x, 0)]`` onto
    ``[0, 255]``; ``"symmetric"`` maps ``[-max|x|, max|x|]`` onto ``[1, 255]`` with zero point 128.
    This is the numpy twin of the graph the quantizer inserts.
    """
    check_scheme(scheme)
    x = np.asarray(x, dtype=np.float32)
    high = np.maximum(x.max(axis=-1, keepdims=True), np.float32(0.0))
    low = np.minimum(x.min(axis=-1, keepdims=True), np.float32(0.0))
    if scheme == "asymmetric":
        scale = np.maximum((high - low) / np.float32(255.0), _EPS).astype(np.float32)
        zero_point = np.rint(-low / scale).astype(np.float32)
    else:
        scale = np.maximum(np.maximum(high, -low) / np.float32(127.0), _EPS).astype(np.float32)
        zero_point = np.full_like(scale, 128.0)
    xq = np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)
    return xq, scale, zero_point


def fake_quantized_matmul(
    x: np.ndarray, weight: np.ndarray, scheme: str = DEFAULT_SCHEME, weight_limit: int = WEIGHT_LIMIT
) -> np.ndarray:
    """``x @ weight`` as the quantized graph computes it: ``x`` ``[..., K]``, ``weight`` ``[K, N]``."""
    xq, scale, zero_point = quantize_rows(x, scheme)
    wq, wscale = quantize_weight(weight, weight_limit)
    acc = (xq.astype(np.float64) - zero_point) @ wq.astype(np.float64)
    return (acc * wscale * scale).astype(np.float32)


def zero_point_columns(wq: np.ndarray, limit: int = WEIGHT_LIMIT) -> int:
    """How many weight rows within ``±limit`` add up to ``-colsum(wq)`` for every column, rounded
    up to a multiple of 4 (the depth MLAS packs ``K`` by, so the padding is free), at least 4."""
    needed = -(-int(np.abs(wq.astype(np.int64).sum(axis=0)).max()) // limit)
    return max(4, -(-needed // 4) * 4)


def zero_point_rows(wq: np.ndarray, count: int, limit: int = WEIGHT_LIMIT) -> np.ndarray:
    """``count`` int8 rows within ``±limit`` whose sum is ``-colsum(wq)``: the weights that the
    asymmetric scheme's zero-point columns multiply, so that the integer product itself computes
    ``(xq - zp) @ wq``. Raises ``ValueError`` when ``count`` rows are too few."""
    target = -wq.astype(np.int64).sum(axis=0)
    steps = np.arange(count, dtype=np.int64)[:, None] * limit
    rows = np.sign(target) * np.clip(np.abs(target) - steps, 0, limit)
    if (rows.sum(axis=0) != target).any():
        raise ValueError(f"{count} rows within ±{limit} cannot add up to the column sums of the weight")
    return rows.astype(np.int8)


def find_quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes :func:`quantize_int8` quantizes by default, in graph order."""
    return [target.name for target in find_targets(model.graph)[0]]


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    exclude_nodes: Sequence[str] = (),
    scheme: str = DEFAULT_SCHEME,
    weight_limit: int = WEIGHT_LIMIT,
) -> QuantizeReport:
    """Write a batch-invariant int8 copy of the fp32 ONNX model at ``fp32_path`` to ``out_path``.

    Every MatMul/Gemm with a constant float weight and every large embedding table is quantized
    (see the module docstring), except the nodes named in ``exclude_nodes``, which stay in float.
    ``scheme`` is ``"asymmetric"`` (default) or ``"symmetric"`` (activations). ``weight_limit``
    bounds the int8 weights; above the default 64 the result is no longer exact on CPUs without
    VNNI (kept for measurements). Inputs, outputs and their dynamic axes are unchanged. The output is checked with ``onnx.checker`` (full check) and
    written to a temporary name first, then renamed.

    Raises ``InputError`` for an unknown name in ``exclude_nodes`` or an unknown scheme, and
    ``ModelPackageError`` for a file that is not a readable ONNX model or has an opset below 13.
    """
    check_scheme(scheme)
    quantize_weight(np.zeros((1, 1), np.float32), weight_limit)  # validates the limit
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = load_onnx(fp32_path)
    targets, skipped = find_targets(model.graph)
    unknown = sorted(set(exclude_nodes) - {t.name for t in targets} - set(skipped))
    if unknown:
        raise InputError(
            f"exclude_nodes has {len(unknown)} name(s) that are not quantizable nodes of "
            f"{fp32_path}: {unknown[:5]}; allowed are the names returned by "
            "find_quantizable_nodes() or rank_sensitive_nodes()"
        )
    excluded = set(exclude_nodes)
    chosen = [t for t in targets if t.name not in excluded]

    graph = model.graph
    builder = _Builder(graph, _default_opset(model), scheme, weight_limit, chosen)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for target in chosen:
        replaced[id(target.node)] = builder.emit(target)
        if target.bias_add is not None:
            replaced[id(target.bias_add)] = []
    new_nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = node_name(node, index)
        new_nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(builder.initializers)
    remove_unused_constants(graph)
    _save_checked(model, out_path)

    report = QuantizeReport(
        source=fp32_path,
        output=out_path,
        scheme=scheme,
        quantized_nodes=tuple(t.name for t in chosen),
        excluded_nodes=tuple(t.name for t in targets if t.name in excluded),
        skipped_nodes=tuple(skipped),
        fp32_weight_bytes=sum(t.weight.nbytes for t in chosen),
        int8_weight_bytes=sum(
            t.weight.size + 4 * (t.weight.shape[0] if t.kind == "gather" else t.weight.shape[1])
            for t in chosen
        ),
        fp32_file_bytes=fp32_path.stat().st_size,
        int8_file_bytes=out_path.stat().st_size,
    )
    logger.info(
        "int8 (%s): quantized %d node(s), kept %d in float, %d skipped; %.1f MB -> %.1f MB",
        scheme,
        len(report.quantized_nodes),
        len(report.excluded_nodes),
        len(report.skipped_nodes),
        report.fp32_file_bytes / 1e6,
        report.int8_file_bytes / 1e6,
    )
    return report


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise InputError(f"scheme={scheme!r} is not one of {SCHEMES}")


def load_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ModelPackageError(f"ONNX model {path} does not exist; export the fp32 model first")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError, ValueError, OSError...
        raise ModelPackageError(f"{path} is not a readable ONNX model: {error}") from error
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise ModelPackageError(
            f"{path} uses opset {opset}; int8 quantization needs opset >= {MIN_OPSET} "
            "(per-axis QuantizeLinear); export it again with opset 17"
        )
    return model


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def constant_tensors(graph: onnx.GraphProto) -> dict[str, TensorProto]:
    """Initializers and ``Constant`` node outputs (``value`` attribute), by tensor name."""
    found = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = node.attribute[0].t
    return found


def find_targets(graph: onnx.GraphProto) -> tuple[list[_Target], list[str]]:
    """(quantizable nodes, weight MatMul/Gemm nodes that cannot be quantized), in graph order."""
    constants = {
        name: numpy_helper.to_array(tensor)
        for name, tensor in constant_tensors(graph).items()
        if tensor.data_type == TensorProto.FLOAT
    }
    for value in graph.input:  # an initializer that is also a graph input can be overridden
        constants.pop(value.name, None)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {value.name for value in graph.output}
    targets: list[_Target] = []
    skipped: list[str] = []
    for index, node in enumerate(graph.node):
        if node.op_type not in ("MatMul", "Gemm", "Gather") or len(node.input) < 2:
            continue
        name = node_name(node, index)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gather":
            table = constants.get(node.input[0])
            if (
                table is not None
                and table.ndim == 2
                and table.size >= MIN_TABLE_ELEMENTS
                and attrs.get("axis", 0) == 0
            ):
                targets.append(_Target(name, "gather", node, table))
            continue
        weight = constants.get(node.input[1])
        if weight is None:
            continue
        if node.op_type == "MatMul":
            if weight.ndim != 2:
                skipped.append(name)
                continue
            bias, bias_add = _bias_of(node, weight.shape[1], constants, consumers, graph_outputs)
            targets.append(_Target(name, "matmul", node, weight, bias, 1.0, bias_add))
            continue
        has_bias = len(node.input) > 2 and bool(node.input[2])
        bias = constants.get(node.input[2]) if has_bias else None
        if attrs.get("transA", 0) or weight.ndim != 2 or (has_bias and bias is None):
            skipped.append(name)
            continue
        if attrs.get("transB", 0):
            weight = weight.T
        if bias is not None:
            bias = np.float32(attrs.get("beta", 1.0)) * np.broadcast_to(bias, (weight.shape[1],))
        alpha = float(attrs.get("alpha", 1.0))
        targets.append(_Target(name, "matmul", node, weight, bias, alpha))
    return targets, skipped


def _bias_of(
    node: onnx.NodeProto,
    n: int,
    constants: Mapping[str, np.ndarray],
    consumers: Mapping[str, list[onnx.NodeProto]],
    graph_outputs: set[str],
) -> tuple[np.ndarray | None, onnx.NodeProto | None]:
    """The bias ``[N]`` and its ``Add`` when a MatMul's only consumer adds a constant vector."""
    users = consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in graph_outputs or users[0].op_type != "Add":
        return None, None
    add = users[0]
    others = [name for name in add.input if name != node.output[0]]
    bias = constants.get(others[0]) if len(others) == 1 else None
    if bias is None or bias.shape != (n,):  # a wider bias could broadcast to more axes
        return None, None
    return bias.astype(np.float32), add


class _Builder:
    """Emits the quantized replacement of one node at a time; collects new initializers."""

    def __init__(self, graph: onnx.GraphProto, opset: int, scheme: str, weight_limit: int,
                 targets: Sequence[_Target]) -> None:
        self.opset = opset
        self.scheme = scheme
        self.weight_limit = weight_limit
        # Zero-point columns per activation: enough for every MatMul that reads it (asymmetric).
        self.zero_point_columns: dict[str, int] = {}
        for target in targets:
            if target.kind == "matmul":
                columns = zero_point_columns(quantize_weight(target.weight, weight_limit)[0], weight_limit)
                self.zero_point_columns[target.activation] = max(
                    columns, self.zero_point_columns.get(target.activation, 0))
        self.initializers: list[TensorProto] = []
        self._taken = {n.name for n in graph.node} | {init.name for init in graph.initializer}
        self._taken |= {out for n in graph.node for out in n.output}
        self._taken |= {value.name for value in graph.input}
        self._shared: dict[str, str] = {}
        self._rows: dict[str, dict[str, str]] = {}
        self._nodes: list[onnx.NodeProto] = []

    def unique(self, base: str) -> str:
        name, count = base, 1
        while name in self._taken:
            name, count = f"{base}_{count}", count + 1
        self._taken.add(name)
        return name

    def constant(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def shared(self, key: str, array: np.ndarray) -> str:
        """A small constant used by many nodes, stored once."""
        if key not in self._shared:
            self._shared[key] = self.constant(f"int8_{key}", array)
        return self._shared[key]

    def op(self, op_type: str, inputs: Sequence[str], base: str, output: str = "", **attrs) -> str:
        """Append one node named after ``base``; returns its (single) output name."""
        output = output or self.unique(f"{base}/{op_type}_output")
        node = helper.make_node(op_type, list(inputs), [output], **attrs)
        node.name = self.unique(f"{base}/{op_type}")
        self._nodes.append(node)
        return output

    def emit(self, target: _Target) -> list[onnx.NodeProto]:
        self._nodes = []
        if target.kind == "gather":
            self._emit_gather(target)
        else:
            self._emit_matmul(target)
        return self._nodes

    def _emit_gather(self, target: _Target) -> None:
        """``W[ids]`` -> ``Cast(Wq[ids]) * s_row[ids]``: int8 table, one scale per table row."""
        ids, base = target.node.input[1], f"{target.name}/int8"
        wq_t, scale = quantize_weight(target.weight.T, TABLE_LIMIT)
        table = self.constant(f"{target.name}_Wq", np.ascontiguousarray(wq_t.T))
        scales = self.constant(f"{target.name}_Wscale", scale.reshape(-1, 1))
        rows = self.op("Cast", [self.op("Gather", [table, ids], base, axis=0)], base, to=TensorProto.FLOAT)
        row_scales = self.op("Gather", [scales, ids], base, axis=0)
        self.op("Mul", [rows, row_scales], base, output=target.output)

    def _emit_matmul(self, target: _Target) -> None:
        """``x @ W + bias`` -> per-row uint8 ``x``, ``MatMulInteger`` with int8 ``W``, rescale.

        The layout ``Mul(Cast(MatMulInteger(xq, Wq[, zp])), Mul(s_row, s_col))`` is the pattern
        ONNX Runtime fuses into one kernel. The bias is added as ``Sub(product, -bias)`` so that it
        is not fused too: that kernel (1.32) would multiply it by the per-row scale as well.
        """
        name, base = target.name, f"{target.name}/int8"
        wq, wscale = quantize_weight(target.weight, self.weight_limit)
        wscale = (wscale * np.float32(target.alpha)).astype(np.float32)
        rows = self._quantized_rows(target.activation, wq.shape[0], base)
        if self.scheme == "asymmetric":
            # (xq - zp) @ Wq = [xq, zp, ..., zp] @ [Wq; R] where the rows R add up to -colsum(Wq).
            columns = self.zero_point_columns[target.activation]
            wq = np.concatenate([wq, zero_point_rows(wq, columns, self.weight_limit)])
            inputs = [rows["xq_with_zero_point"], self.constant(f"{name}_Wq", wq)]
        else:
            inputs = [rows["xq"], self.constant(f"{name}_Wq", wq), self.shared("zp_128", np.array(128, np.uint8))]
        acc = self.op("Cast", [self.op("MatMulInteger", inputs, base)], base, to=TensorProto.FLOAT)
        scales = self.op("Mul", [rows["scale"], self.constant(f"{name}_Wscale", wscale)], base)
        if target.bias is None:
            self.op("Mul", [acc, scales], base, output=target.output)
        else:
            negated = self.constant(f"{name}_negated_bias", -target.bias.astype(np.float32))
            self.op("Sub", [self.op("Mul", [acc, scales], base), negated], base, output=target.output)

    def _quantized_rows(self, x: str, k: int, base: str) -> dict[str, str]:
        """Per-row uint8 quantization of ``x`` ``[..., K]``, emitted once per tensor and shared.

        Returns tensor names: ``scale`` ``[..., 1]`` float and ``xq`` ``[..., K]`` uint8 or, for
        the asymmetric scheme, ``xq_with_zero_point`` ``[..., K + C]``: ``xq`` followed by ``C``
        copies of the row's zero point (:func:`zero_point_columns`).
        """
        if x in self._rows:
            return self._rows[x]
        zero = self.shared("zero", np.array(0.0, np.float32))
        eps = self.shared("eps", np.array(_EPS, np.float32))
        flat = self.shared("flat", np.array([-1], np.int64))
        high = self.op("Max", [self._reduce("ReduceMax", x, base), zero], base)
        low = self.op("Min", [self._reduce("ReduceMin", x, base), zero], base)
        found: dict[str, str] = {}
        if self.scheme == "asymmetric":
            levels = self.shared("levels_255", np.array(255.0, np.float32))
            width = self.op("Sub", [high, low], base)
            scale = self.op("Max", [self.op("Div", [width, levels], base), eps], base)
            zp = self.op("Round", [self.op("Div", [self.op("Neg", [low], base), scale], base)], base)
            zp_u8 = self.op("Cast", [zp], base, to=TensorProto.UINT8)
            zp_rows = self.op("Reshape", [zp_u8, flat], base)
            columns = self.shared(f"columns_{self.zero_point_columns[x]}",
                                  np.array([self.zero_point_columns[x]], np.int64))
            found["zero_point_columns"] = self.op("Expand", [zp_u8, columns], base)
        else:
            levels = self.shared("levels_127", np.array(127.0, np.float32))
            amax = self.op("Max", [high, self.op("Neg", [low], base)], base)
            scale = self.op("Max", [self.op("Div", [amax, levels], base), eps], base)
            zp_128 = self.shared("zp_128_1d", np.array([128], np.uint8))
            zp_rows = self.op("Expand", [zp_128, self.op("Shape", [scale], base)], base)
            zp_rows = self.op("Reshape", [zp_rows, flat], base)
        scale_rows = self.op("Reshape", [scale, flat], base)
        x_rows = self.op("Reshape", [x, self.shared(f"rows_{k}", np.array([-1, k], np.int64))], base)
        xq_rows = self.op("QuantizeLinear", [x_rows, scale_rows, zp_rows], base, axis=0)
        found["xq"] = self.op("Reshape", [xq_rows, self.op("Shape", [x], base)], base)
        if "zero_point_columns" in found:
            found["xq_with_zero_point"] = self.op("Concat", [found["xq"], found["zero_point_columns"]], base, axis=-1)
        found["scale"] = scale
        self._rows[x] = found
        return found

    def _reduce(self, op_type: str, x: str, base: str) -> str:
        """``op_type`` over the last axis, keepdims: ``[..., K]`` -> ``[..., 1]``."""
        if self.opset >= 18:
            axes = self.shared("last_axis", np.array([-1], np.int64))
            return self.op(op_type, [x, axes], base, keepdims=1)
        return self.op(op_type, [x], base, axes=[-1], keepdims=1)


def remove_unused_constants(graph: onnx.GraphProto) -> None:
    """Drop initializers and ``Constant`` nodes nothing reads any more (the fp32 weights)."""
    used = {name for node in graph.node for name in node.input}
    used |= {value.name for value in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del graph.node[:]
    graph.node.extend(nodes)


def _save_checked(model: onnx.ModelProto, out_path: Path) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ModelPackageError(f"the int8 graph for {out_path} is not valid ONNX: {error}") from error
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        onnx.save(model, str(tmp))
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
