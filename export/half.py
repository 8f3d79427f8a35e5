"""The fp16 variant (for GPUs): float16 weights and compute, float32 inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import onnx

from tastemap.export.graph import HEAD_PREFIX


def convert_fp16(fp32_path: Path, out_path: Path) -> onnx.ModelProto:
    """Write a float16 copy of ``fp32_path``.

    Inputs and outputs stay int64 / float32 so callers feed and read the same tensors for every
    variant. The pooling head (masked sums over the sequence and the L2 norm) stays in float32,
    where long sequences cannot overflow float16.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    head = [node.name for node in model.graph.node if node.name.startswith(HEAD_PREFIX)]
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=head)
    _sort_topologically(half.graph)
    onnx.checker.check_model(half)
    onnx.save(half, str(out_path))
    return half


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after its inputs' producers (the converter appends its Casts)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or dangling inputs at {pending[0].name}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        pending = [n for n in pending if all(name not in available for name in n.output)]
    del graph.node[:]
    graph.node.extend(ordered)
