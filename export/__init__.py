"""Export stage: a local BERT-family encoder folder in, a gated ONNX model package out.

>>> from tastemap.export import ExportConfig, export_model
>>> result = export_model(ExportConfig(out="models/all-MiniLM-L6-v2"))  # doctest: +SKIP
"""

from tastemap.export.exporter import (
    DEFAULT_MODEL_DIR,
    VARIANTS,
    ExportConfig,
    ExportResult,
    VariantResult,
    export_model,
)
from tastemap.export.package import ModelPackage, VariantInfo
from tastemap.export.parity import ParityFigures, ParityGate


def ensure_default_model(path=None, variants=VARIANTS):
    """The default package (all-MiniLM-L6-v2) at ``path``, exported first if it is not there yet."""
    from pathlib import Path

    path = Path(path or DEFAULT_MODEL_DIR)
    if not (path / "manifest.json").is_file():
        export_model(ExportConfig(out=path, variants=tuple(variants)))
    return ModelPackage.load(path)


__all__ = [
    "DEFAULT_MODEL_DIR",
    "VARIANTS",
    "ExportConfig",
    "ExportResult",
    "ModelPackage",
    "ParityFigures",
    "ParityGate",
    "VariantInfo",
    "VariantResult",
    "ensure_default_model",
    "export_model",
]
