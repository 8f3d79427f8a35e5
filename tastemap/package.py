"""The model package format: ``model*.onnx``, tokenizer files and ``manifest.json``.

Both stages use this one module: the export stage writes a package (:func:`tastemap.export.export_model`),
the runtime reads it with :meth:`ModelPackage.load`, which checks the schema version and, for
every file used, its sha256 against the manifest. It needs the standard library only
(onnxruntime and tokenizers are imported by the methods that use them), so the runtime can read
packages without the export stage. The manifest schema is documented in ``models/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

from tastemap.errors import ModelPackageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
VARIANT_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def graph_optimization_level(name: str):
    """The :class:`onnxruntime.GraphOptimizationLevel` for a manifest's ``ort_graph_optimization``."""
    import onnxruntime as ort

    levels = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
    if name not in levels:
        raise ModelPackageError(f"ort_graph_optimization={name!r} is not one of {sorted(levels)}")
    return getattr(ort.GraphOptimizationLevel, levels[name])


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class VariantInfo:
    """One exported ONNX file: ``fp32``, ``int8`` or ``fp16``, and its parity figures."""

    name: str
    file: str
    size: int
    sha256: str
    precision: str
    target: str
    parity: dict = field(default_factory=dict)
    passed: bool = True
    details: dict = field(default_factory=dict)
    ort_graph_optimization: str = "basic"

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "VariantInfo":
        return cls(name=name, **{key: data[key] for key in data if key in _VARIANT_FIELDS})

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in _VARIANT_FIELDS}

    @property
    def exact_on_every_cpu(self) -> bool:
        """False for an int8 file whose weights exceed ±64 (exported before ``weight_limit`` was
        recorded): its products saturate on CPUs without VNNI (:data:`tastemap.cpu.SATURATING_INT8_CLASSES`)."""
        return self.precision != "int8" or self.details.get("weight_limit", 127) <= 64


_VARIANT_FIELDS = ("file", "size", "sha256", "precision", "target", "parity", "passed", "details", "ort_graph_optimization")


@dataclass(frozen=True)
class ModelPackage:
    """A loaded, schema-checked model package. File hashes are checked when a file is first used.

    Attributes mirror ``manifest.json``: ``embedding_dim``, ``max_seq_len``, ``pooling``,
    ``input_names`` (``input_ids``, ``attention_mask`` and ``token_type_ids`` where the model has
    them) and ``variants`` (name to :class:`VariantInfo`).
    """

    path: Path
    manifest: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelPackage":
        """Read and validate ``path/manifest.json``; raise :class:`ModelPackageError` if it is unusable."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise ModelPackageError(
                f"model package {path} does not exist; create it with `tastemap export --out {path}`"
            )
        if not manifest_path.is_file():
            raise ModelPackageError(
                f"{path} has no {MANIFEST}, so it is not a tastemap model package; "
                f"create one with `tastemap export --out {path}`"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackageError(f"{manifest_path} is not valid JSON: {exc}") from exc
        version = manifest.get("schema_version") if isinstance(manifest, dict) else None
        if version != SCHEMA_VERSION:
            raise ModelPackageError(
                f"{manifest_path} has schema_version={version!r}, this tastemap reads "
                f"schema_version={SCHEMA_VERSION}; re-export the model with this version"
            )
        missing = [key for key in _REQUIRED_KEYS if key not in manifest]
        if missing:
            raise ModelPackageError(f"{manifest_path} lacks the keys {missing}")
        return cls(path=path, manifest=manifest)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def max_seq_len(self) -> int:
        return int(self.manifest["max_seq_len"])

    @property
    def pooling(self) -> str:
        return self.manifest["pooling"]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(item["name"] for item in self.manifest["inputs"])

    @property
    def output_name(self) -> str:
        return self.manifest["outputs"][0]["name"]

    @cached_property
    def variants(self) -> dict[str, VariantInfo]:
        return {
            name: VariantInfo.from_dict(name, data)
            for name, data in self.manifest["variants"].items()
        }

    def variant(self, name: str) -> VariantInfo:
        """The manifest entry of variant ``name``, or a clear error listing those exported."""
        if name not in self.variants:
            raise ModelPackageError(
                f"variant {name!r} is not in {self.path} (it has {sorted(self.variants)}); "
                f"export it with `tastemap export --variants {name} --out {self.path}`"
            )
        return self.variants[name]

    def variant_path(self, name: str) -> Path:
        """Path of variant ``name``'s ONNX file after checking its size and sha256."""
        info = self.variant(name)
        return self._verified(info.file, info.sha256)

    def tokenizer_path(self) -> Path:
        """Path of ``tokenizer.json`` after checking its sha256."""
        return self._verified("tokenizer.json", self.manifest["tokenizer"]["files"]["tokenizer.json"])

    def load_tokenizer(self):
        """A fast (Rust) :class:`tokenizers.Tokenizer`, truncating at ``max_seq_len``, not padding."""
        from tokenizers import Tokenizer

        path = self.tokenizer_path()
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception
            raise ModelPackageError(f"{path} cannot be loaded as a tokenizer: {str(exc).splitlines()[0]}; "
                                    "re-export the package") from None
        tokenizer.enable_truncation(self.max_seq_len)
        tokenizer.no_padding()
        return tokenizer

    @property
    def pad_token_id(self) -> int:
        return int(self.manifest["tokenizer"]["pad_token_id"])

    def _verified(self, file: str, expected: str) -> Path:
        target = self.path / file
        if not target.is_file():
            raise ModelPackageError(f"{target} is missing from the model package; re-export it")
        actual = _cached_sha256(target)
        if actual != expected:
            raise ModelPackageError(
                f"{target} is corrupted or was replaced: its sha256 is {actual[:12]}..., the "
                f"manifest expects {expected[:12]}...; re-export the package"
            )
        return target


_REQUIRED_KEYS = (
    "name",
    "embedding_dim",
    "max_seq_len",
    "pooling",
    "inputs",
    "outputs",
    "tokenizer",
    "variants",
)
_HASHES: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered per (path, size, mtime) so a file is hashed once per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success replace ``final`` with it.

    On any error the temporary folder is removed, so nothing half-written is left behind.
    """
    final = Path(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a package is meant to be shared
    except OSError as exc:
        raise ModelPackageError(f"cannot write to {parent}: {exc.strerror}") from exc
    try:
        yield staging
        if final.exists():
            backup = parent / f".{final.name}.old"
            shutil.rmtree(backup, ignore_errors=True)
            final.rename(backup)
            staging.rename(final)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
