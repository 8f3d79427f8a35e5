"""Where tastemap keeps its files: the default model package and the caches, per user.

Everything lives under one folder, :func:`home`: ``$TASTEMAP_HOME`` when it is set, otherwise the
user's cache folder from ``platformdirs.user_cache_dir("tastemap")`` (``~/.cache/tastemap`` on
Linux, following ``$XDG_CACHE_HOME``; ``~/Library/Caches/tastemap`` on macOS;
``%LOCALAPPDATA%\\tastemap\\Cache`` on Windows). Never the current folder, so a command finds the
same model wherever it runs.

- ``home()/models/<name>``: packages written by ``tastemap export`` without ``--out``; the
  default model is ``home()/models/all-MiniLM-L6-v2``, or ``$TASTEMAP_MODEL_DIR`` when set;
- ``home()/embeddings``: the embedding cache of ``tastemap demo``, ``recommend`` and ``evaluate``;
- ``home()/bench``: the bench's exports of sentence-transformers' ONNX backends;
- ``home()/finetuned``: encoders fine-tuned on one training part by ``evaluate``/``demo --finetune``,
  with their packages, keyed by the part's data hash;
- ``home()/sources.json``: where this machine's exports found their source models, by weights
  hash (:func:`tastemap.export.local_source`; a manifest records no path).

A relative ``$TASTEMAP_HOME`` or ``$TASTEMAP_MODEL_DIR`` is taken from the folder the command
starts in. :func:`resolve_model_dir` is the one place that decides what a missing default
package means (see there).

>>> default_model_dir()  # doctest: +SKIP
PosixPath('/home/me/.cache/tastemap/models/all-MiniLM-L6-v2')
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from tastemap.errors import InputError, MissingDependencyError, ModelPackageError
from tastemap.package import MANIFEST

logger = logging.getLogger(__name__)

HOME_ENV = "TASTEMAP_HOME"
MODEL_DIR_ENV = "TASTEMAP_MODEL_DIR"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
CACHES = ("embeddings", "bench", "finetuned")
_DEFAULT_HELP = (f"Model package folder [default: ${MODEL_DIR_ENV}, else {DEFAULT_MODEL_NAME} in the tastemap "
                 "cache folder (~/.cache/tastemap/models on Linux)")
MODEL_HELP = _DEFAULT_HELP + ", written by `tastemap export`]."
MODEL_HELP_EXPORTING = _DEFAULT_HELP + ", exported there if missing]."


def home() -> Path:
    """The folder holding tastemap's models and caches: ``$TASTEMAP_HOME`` or the user cache folder."""
    configured = _from_env(HOME_ENV)
    if configured is not None:
        return configured
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tastemap", appauthor=False))


def models_dir() -> Path:
    """Where ``tastemap export`` writes packages when given no ``--out``: ``home()/models``."""
    return home() / "models"


def default_model_dir() -> Path:
    """The default model package folder: ``$TASTEMAP_MODEL_DIR``, else ``home()/models/all-MiniLM-L6-v2``."""
    configured = _from_env(MODEL_DIR_ENV)
    return configured if configured is not None else models_dir() / DEFAULT_MODEL_NAME


def cache_dir(kind: str) -> Path:
    """The cache folder ``home()/<kind>`` for ``kind`` in :data:`CACHES`."""
    if kind not in CACHES:
        raise InputError(f"cache kind={kind!r} is not one of {list(CACHES)}")
    return home() / kind


def resolve_model_dir(
    model_dir: str | os.PathLike | None = None,
    *,
    export_missing: bool = False,
    variants: Sequence[str] | None = None,
) -> Path:
    """The model package folder a command uses: ``model_dir`` when given, else the default one.

    A folder given explicitly is returned as it is; :meth:`tastemap.package.ModelPackage.load`
    checks it when the encoder loads. When the default package is missing:

    - commands that can export (``export_missing=True``: ``tastemap demo`` and the bench) export it
      (``variants``, default all) if the export stage is installed, and otherwise raise
      :class:`MissingDependencyError` naming ``pip install "tastemap[export]"``;
    - every other command raises :class:`ModelPackageError` naming ``tastemap export``.
    """
    if model_dir is not None:
        return Path(model_dir)
    path = default_model_dir()
    if (path / MANIFEST).is_file():
        return path
    where = f"no model package at {path} (the default model folder; ${MODEL_DIR_ENV} or ${HOME_ENV} moves it)"
    if not export_missing:
        raise ModelPackageError(f"{where}; create it with `tastemap export`, or pass a package folder with --model")
    from tastemap.export import ensure_default_model, require_dependencies

    try:
        require_dependencies()
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"{where}, and exporting it needs the export stage: {exc}; or pass a package folder with --model"
        ) from exc
    logger.info("exporting the default model package to %s (first run only)", path)
    ensure_default_model(path, variants=variants)
    return path


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().absolute() if value else None
