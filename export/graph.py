"""The fp32 ONNX graph: the transformer exported by optimum, with pooling and L2 normalization appended.

The finished graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` where the
architecture has them: BERT yes, DistilBERT no), int64 ``[batch, sequence]``, and returns only
``sentence_embedding``, float32 ``[batch, dim]``, unit-norm.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from tastemap.errors import ModelPackageError
from tastemap.export.source import SourceModel

log = logging.getLogger(__name__)
OUTPUT_NAME = "sentence_embedding"
HIDDEN_STATE = "last_hidden_state"
HEAD_PREFIX = "pooling_head_"


def export_fp32(source: SourceModel, out_path: Path, opset: int) -> onnx.ModelProto:
    """Export ``source`` to ``out_path`` with the pooling head; return the finished model."""
    with tempfile.TemporaryDirectory(prefix="tastemap-optimum-") as scratch:
        transformer = _export_transformer(source, Path(scratch), opset)
        model = onnx.load(str(transformer))
    model = add_pooling_head(model, source.pooling, opset)
    model.producer_name = "tastemap"
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return model


def _export_transformer(source: SourceModel, scratch: Path, opset: int) -> Path:
    """Run optimum's exporter on the bare transformer (``feature-extraction``, no pooling)."""
    from optimum.exporters.onnx import main_export

    log.info("exporting %s to ONNX (opset %d) with optimum", source.path, opset)
    try:
        main_export(
            str(source.path),
            output=scratch,
            task="feature-extraction",
            library_name="transformers",
            opset=opset,
            device="cpu",
            do_validation=False,
            local_files_only=True,
        )
    except (ValueError, KeyError, OSError) as exc:
        raise ModelPackageError(f"optimum could not export {source.path}: {exc}") from exc
    return scratch / "model.onnx"


def add_pooling_head(model: onnx.ModelProto, pooling: str, opset: int) -> onnx.ModelProto:
    """Append ``pooling`` ('mean', 'cls' or 'max') and L2 normalization to the transformer graph.

    ``last_hidden_state`` [batch, seq, hidden] becomes ``sentence_embedding`` [batch, hidden].
    Padding positions (attention_mask == 0) never contribute, so a text's vector does not
    depend on how far its batch is padded.
    """
    graph = model.graph
    hidden = next((o for o in graph.output if o.name == HIDDEN_STATE), None)
    if hidden is None:
        names = [o.name for o in graph.output]
        raise ModelPackageError(f"the exported transformer has outputs {names}, expected {HIDDEN_STATE!r}")
    dim = hidden.type.tensor_type.shape.dim[2].dim_value
    nodes, inits = _pooling_nodes(pooling, opset)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch_size", dim or "dim"])
    )
    return model


def _pooling_nodes(pooling: str, opset: int):
    """Nodes computing pooled, L2-normalized ``sentence_embedding`` from ``last_hidden_state``."""
    make = helper.make_node
    inits = [
        helper.make_tensor("pool_axis_seq", TensorProto.INT64, [1], [1]),
        helper.make_tensor("pool_axis_last", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("pool_eps", TensorProto.FLOAT, [], [1e-9]),
        helper.make_tensor("norm_eps", TensorProto.FLOAT, [], [1e-12]),
        helper.make_tensor("pool_one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("pool_neg_big", TensorProto.FLOAT, [], [-1e9]),
        helper.make_tensor("pool_first", TensorProto.INT64, [], [0]),
    ]
    mask = [
        make("Cast", ["attention_mask"], ["pool_mask_f"], to=TensorProto.FLOAT),
        make("Unsqueeze", ["pool_mask_f", "pool_axis_last"], ["pool_mask"]),
    ]
    if pooling == "mean":
        body = mask + [
            make("Mul", [HIDDEN_STATE, "pool_mask"], ["pool_masked"]),
            make("ReduceSum", ["pool_masked", "pool_axis_seq"], ["pool_sum"], keepdims=0),
            make("ReduceSum", ["pool_mask", "pool_axis_seq"], ["pool_count_raw"], keepdims=0),
            make("Max", ["pool_count_raw", "pool_eps"], ["pool_count"]),
            make("Div", ["pool_sum", "pool_count"], ["pooled"]),
        ]
    elif pooling == "cls":
        body = [make("Gather", [HIDDEN_STATE, "pool_first"], ["pooled"], axis=1)]
    elif pooling == "max":
        body = mask + [
            make("Sub", ["pool_one", "pool_mask"], ["pool_pad"]),
            make("Mul", ["pool_pad", "pool_neg_big"], ["pool_penalty"]),
            make("Add", [HIDDEN_STATE, "pool_penalty"], ["pool_shifted"]),
            _reduce("ReduceMax", "pool_shifted", "pooled", "pool_axis_seq", 1, opset),
        ]
    else:
        raise ModelPackageError(f"pooling={pooling!r} is not supported; use one of mean, cls, max")
    norm = [
        _reduce("ReduceL2", "pooled", "pool_norm_raw", "pool_axis_last", -1, opset, keepdims=1),
        make("Max", ["pool_norm_raw", "norm_eps"], ["pool_norm"]),
        make("Div", ["pooled", "pool_norm"], [OUTPUT_NAME]),
    ]
    nodes = body + norm
    for index, node in enumerate(nodes):
        node.name = f"{HEAD_PREFIX}{index}"
    used = {name for node in nodes for name in node.input}
    return nodes, [init for init in inits if init.name in used]


def _reduce(op: str, x: str, y: str, axes_name: str, axis: int, opset: int, keepdims: int = 0):
    """ReduceMax / ReduceL2 took ``axes`` as an attribute before opset 18 and as an input since."""
    if opset >= 18:
        return helper.make_node(op, [x, axes_name], [y], keepdims=keepdims)
    return helper.make_node(op, [x], [y], axes=[axis], keepdims=keepdims)
