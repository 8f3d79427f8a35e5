"""Export stage: a local BERT-family encoder folder in, a gated ONNX model package out.

>>> from tastemap.export import ExportConfig, export_model
>>> result = export_model(ExportConfig(out="models/my-bert", source="./my-bert"))  # doctest: +SKIP

The stage needs the ``export`` extra (PyTorch, transformers, optimum, onnx). Its names are
imported on first use, after those dependencies are checked, so that ``tastemap --help`` and the
runtime work without them, and a command that needs the stage on a lean install fails with
``pip install "tastemap[export]"``. The package format (:class:`ModelPackage`) is
:mod:`tastemap.package` and needs none of them.
"""

from importlib import import_module

from tastemap.errors import require
from tastemap.export.source_index import local_source, remember_source
from tastemap.package import ModelPackage, VariantInfo

# The export stage's own dependencies, checked before any of its modules is imported.
DEPENDENCIES = ("onnx", "torch", "transformers", "optimum.exporters.onnx")

_EXPORTS = {
    "exporter": ("VARIANTS", "ExportConfig", "ExportResult", "VariantResult", "export_model"),
    "parity": ("ParityFigures", "ParityGate"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_MODULE_OF, "ModelPackage", "VariantInfo", "ensure_default_model", "local_source",
                  "remember_source"])


def require_dependencies() -> None:
    """Raise :class:`~tastemap.errors.MissingDependencyError` with the install hint when the
    ``export`` extra is not installed."""
    for module in DEPENDENCIES:
        require(module, "export")


def ensure_default_model(path, variants=None) -> ModelPackage:
    """The default package (all-MiniLM-L6-v2) at ``path`` (such as
    :func:`tastemap.paths.default_model_dir`), exported first if it is not there yet."""
    from pathlib import Path

    path = Path(path)
    if not (path / "manifest.json").is_file():
        require_dependencies()
        from tastemap.export.exporter import ExportConfig, export_model

        export_model(ExportConfig(out=path, **({} if variants is None else {"variants": tuple(variants)})))
    return ModelPackage.load(path)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'tastemap.export' has no attribute {name!r}")
    require_dependencies()
    value = getattr(import_module(f"tastemap.export.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
