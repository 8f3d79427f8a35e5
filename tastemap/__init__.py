"""tastemap: layered, clustered user-interest models with an exported BERT encoder.

Stages are subpackages: :mod:`tastemap.export` (encoder to a quantized ONNX model package),
:mod:`tastemap.runtime` (batched inference, interest layers, clustering, recommendation) and
:mod:`tastemap.bench` (throughput, latency and quality figures).
"""

from pathlib import Path

__version__ = "0.1.0"

STAGE_FOLDERS = ("export", "runtime", "bench")


def _checkout_root() -> Path | None:
    """The repository root when this package is imported from a source checkout, else None.

    In the checkout the stages are the top-level folders ``export/``, ``runtime/`` and ``bench/``
    beside this one (pyproject.toml maps them onto ``tastemap.*``); an installed wheel has them
    inside the package instead, and then nothing is changed.
    """
    package_dir = Path(__file__).resolve().parent
    root = package_dir.parent
    if any((package_dir / stage).is_dir() for stage in STAGE_FOLDERS):
        return None
    if not (root / "pyproject.toml").is_file():
        return None
    if all((root / stage / "__init__.py").is_file() for stage in STAGE_FOLDERS):
        return root
    return None


# From a checkout, the stage folders are found through the package path, so that
# ``import tastemap.runtime`` and ``python -m tastemap.bench...`` run the checkout's files even when
# the root ``tastemap/`` folder shadows an installed copy (the root is searched after the package's
# own folder, so only the stage folders are reached through it).
_root = _checkout_root()
if _root is not None:
    __path__.append(str(_root))
del _root
