"""Which quantizable nodes lose the most to int8, so that a failing parity gate can keep them in float.

One fp32 run captures the tensor entering every node :mod:`tastemap.export.quantize` would quantize;
each node's error is then computed in numpy with the quantizer's own arithmetic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tastemap.errors import InputError
from tastemap.export.quantize import (
    DEFAULT_SCHEME,
    TABLE_LIMIT,
    check_scheme,
    constant_tensors,
    fake_quantized_matmul,
    find_targets,
    load_onnx,
    quantize_weight,
)

logger = logging.getLogger(__name__)


def rank_sensitive_nodes(
    fp32_path: str | Path,
    feeds: Mapping[str, np.ndarray],
    *,
    limit: int | None = None,
    scheme: str = DEFAULT_SCHEME,
) -> list[str]:
    """Quantizable node names, most sensitive to int8 quantization first.

    One fp32 run of the model on ``feeds`` (``input name -> array``, e.g. ``input_ids`` and
    ``attention_mask`` ``[batch, seq]``) captures the tensor entering every quantizable node.
    A MatMul's sensitivity is ``||x @ W - q(x) @ q(W)|| / ||x @ W||`` computed in numpy with the
    quantizer's own arithmetic (``scheme``); an embedding table's is the relative error of the
    int8 rows looked up. Rows of padding tokens (``attention_mask == 0``) are left out when the
    tensor's leading axes match the mask. Ties keep graph order; ``limit`` keeps the first
    ``limit`` names.
    """
    check_scheme(scheme)
    if limit is not None and limit < 0:
        raise InputError(f"limit={limit} should be >= 0 or None")
    model = load_onnx(Path(fp32_path))
    targets, _ = find_targets(model.graph)
    if not targets:
        return []
    captured = _capture(model, [t.activation for t in targets], feeds)
    mask = feeds.get("attention_mask")
    keep = None if mask is None else np.asarray(mask) != 0
    scores = []
    for target in targets:
        value = captured[target.activation]
        if keep is not None and value.shape[: keep.ndim] == keep.shape:
            value = value[keep]
        if target.kind == "gather":
            exact = target.weight[np.unique(value.astype(np.int64).reshape(-1))].astype(np.float64)
            wq_t, scale = quantize_weight(exact.T, TABLE_LIMIT)
            approx = wq_t.T * scale[:, None].astype(np.float64)
        else:
            x = value.reshape(-1, value.shape[-1])
            exact = x.astype(np.float64) @ target.weight.astype(np.float64)
            approx = fake_quantized_matmul(x, target.weight, scheme)
        norm = np.linalg.norm(exact)
        scores.append(float(np.linalg.norm(approx - exact) / norm) if norm > 0 else 0.0)
    order = sorted(range(len(targets)), key=lambda i: -scores[i])
    logger.debug("int8 sensitivity: %s", [(targets[i].name, round(scores[i], 5)) for i in order])
    ranked = [targets[i].name for i in order]
    return ranked if limit is None else ranked[:limit]


def _capture(
    model: onnx.ModelProto, names: Sequence[str], feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``model`` in fp32 once and return the tensors ``names`` (made extra graph outputs)."""
    import onnxruntime as ort

    constants = constant_tensors(model.graph)
    found = {name: numpy_helper.to_array(constants[name]) for name in names if name in constants}
    wanted = [name for name in dict.fromkeys(names) if name not in found]
    existing = {value.name for value in model.graph.output}
    model.graph.output.extend(
        helper.make_empty_tensor_value_info(name) for name in wanted if name not in existing
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inputs = [value.name for value in session.get_inputs()]
    missing = sorted(set(inputs) - set(feeds))
    if missing:
        raise InputError(f"feeds lack model input(s) {missing}; the model takes {inputs}")
    values = session.run(wanted, {name: np.asarray(feeds[name]) for name in inputs})
    return {**found, **dict(zip(wanted, values))}
