"""A fine-tuned, exported package for exactly one training part, cached by that part's data hash.

``tastemap evaluate --finetune`` and ``tastemap demo --finetune`` call :func:`finetuned_package`
with the training part of their split: it fine-tunes the base encoder on those events only
(:func:`~tastemap.export.finetune.finetune_encoder`), exports the result through the parity gate
(:func:`~tastemap.export.exporter.export_model`, default variants) and returns the package. The
work is cached in ``home()/finetuned/<data sha256>-<settings sha256>/`` (see
:func:`tastemap.paths.cache_dir`), so a second run on the same part reuses it.

``--finetuned DIR`` goes through :func:`package_trained_on`: the folder (a fine-tuned
sentence-transformers folder or a package exported from one) must record the same data hash as
the split's training part, else it may have seen test interactions and is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from tastemap.errors import InputError
from tastemap.package import MANIFEST
from tastemap.runtime.io.fingerprint import training_sha256

log = logging.getLogger(__name__)

PACKAGE = "package"


def finetuned_package(events: pd.DataFrame, catalog: pd.DataFrame, config=None, *, export: dict | None = None,
                      cache: Path | None = None) -> Path:
    """The package of ``config.base`` fine-tuned on ``events``, trained and exported on the first
    call, reused from ``cache`` afterwards. ``config``: a
    :class:`~tastemap.export.finetune.FinetuneConfig` whose ``out`` is ignored (None: the
    defaults); ``export``: :class:`~tastemap.export.exporter.ExportConfig` options such as
    ``variants``. The cache key holds the data hash, the settings and the base model's hash."""
    from tastemap.export.exporter import ExportConfig, export_model
    from tastemap.export.finetune import FINETUNE_RECORD, FinetuneConfig, config_dict, finetune_encoder
    from tastemap.export.source import SourceModel
    from tastemap.paths import cache_dir

    config = config or FinetuneConfig()
    base = SourceModel.resolve(config.base)
    data_sha256 = training_sha256(events, catalog, config.template)
    settings = {**{key: value for key, value in config_dict(config).items() if key != "out"}, "base": base.sha256}
    settings_sha256 = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    folder = (cache or cache_dir("finetuned")) / f"{data_sha256[:16]}-{settings_sha256[:8]}"
    # the package takes its name from this folder: say what it is
    model, package = folder / f"{base.name}-finetuned", folder / PACKAGE
    if (package / MANIFEST).is_file():
        log.info("reusing the fine-tuned package %s (data sha256 %s...)", package, data_sha256[:12])
        return package
    if not (model / FINETUNE_RECORD).is_file():
        result = finetune_encoder(events, catalog, replace(config, out=model))
        if result.data_sha256 != data_sha256:
            raise RuntimeError("the fine-tune hashed its data differently from the caller")
    log.info("exporting the fine-tuned model to %s (parity gate)", package)
    export_model(ExportConfig(out=package, source=model, **(export or {})))
    return package


def trained_on(folder: str | Path) -> str | None:
    """The data hash recorded by a fine-tuned folder (``finetune.json``) or by a package exported
    from one (its manifest's ``finetune`` entry); None for a model that was never fine-tuned here."""
    from tastemap.export.finetune import read_record

    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        from tastemap.package import ModelPackage

        record = ModelPackage.load(folder).manifest.get("finetune")
    else:
        record = read_record(folder)
    return None if record is None else record.get("data", {}).get("sha256")


def package_trained_on(folder: str | Path, data_sha256: str, *, part: str, export: dict | None = None,
                       cache: Path | None = None) -> Path:
    """The package of the fine-tuned ``folder`` after checking that it was trained on the data
    hashing to ``data_sha256`` (``part`` names that data in the error); a sentence-transformers
    folder is exported first (cached beside the other fine-tuned packages)."""
    from tastemap.export.exporter import ExportConfig, export_model
    from tastemap.export.source import SourceModel
    from tastemap.paths import cache_dir

    folder = Path(folder)
    recorded = _recorded_hash(folder)
    if recorded != data_sha256:
        raise InputError(f"--finetuned {folder} was fine-tuned on data with sha256 {recorded[:12]}..., but the training "
                         f"part of {part} hashes to {data_sha256[:12]}...; it may have seen test interactions: "
                         "fine-tune on that training part (or use --finetune)")
    if (folder / MANIFEST).is_file():
        return folder
    package = (cache or cache_dir("finetuned")) / f"{data_sha256[:16]}-{SourceModel.resolve(folder).sha256[:8]}" / PACKAGE
    if not (package / MANIFEST).is_file():
        export_model(ExportConfig(out=package, source=folder, **(export or {})))
    return package


def _recorded_hash(folder: Path) -> str:
    if not folder.is_dir():
        raise InputError(f"--finetuned {folder}: no such folder; pass a folder written by `tastemap finetune` or its package")
    recorded = trained_on(folder)
    if recorded is None:
        raise InputError(f"--finetuned {folder}: records no training data (no finetune.json, no 'finetune' in its "
                         "manifest); pass a folder written by `tastemap finetune` or a package exported from one")
    return recorded


def tuned_encoder(*, folder: str | Path | None = None, config=None, export: dict | None = None,
                  cache: Path | None = None):
    """A :data:`~tastemap.runtime.pipeline.evaluation.TunedEncoder`: for each training part it
    is given, the encoder of ``folder`` after the data-hash check (``--finetuned DIR``), or of a
    fine-tune on that part with ``config`` (``--finetune``; cached, see :func:`finetuned_package`)."""
    from tastemap.runtime.encode.default_encoder import make_encoder

    if folder is not None:
        _recorded_hash(Path(folder))  # a wrong folder fails before any data is read

    def encoder_for(events: pd.DataFrame, catalog: pd.DataFrame, part: str):
        template = config.template if config is not None else None
        if folder is not None:
            package = package_trained_on(folder, training_sha256(events, catalog, template), part=part,
                                         export=export, cache=cache)
        else:
            package = finetuned_package(events, catalog, config, export=export, cache=cache)
        return make_encoder(package), trained_on(package)

    return encoder_for
