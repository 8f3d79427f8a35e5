"""The fitted model directory on disk: files, hashes, schema version and atomic versions.

A fitted model is a directory whose ``model.json`` names every other file with its sha256 and
size, the schema version and what the model was fitted with (see
:mod:`tastemap.runtime.pipeline.model` for the layout). Files are Parquet, ``.npy`` (read with
``allow_pickle=False``; large arrays memory-mapped) and JSON; nothing is pickled.

Writing is atomic at the level of the directory: every file goes into a temporary folder beside
the target, ``model.json`` last; the finished folder then takes the target's place (the previous
version is renamed aside, the new one renamed in, the previous one removed). A crash before the
swap leaves the previous version untouched; a crash between the two renames leaves the previous
version beside the target, and :func:`read_manifest` puts it back. Unchanged files of the
previous version are hard-linked, not rewritten. One writer at a time per directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from scipy import sparse

from tastemap.errors import FittedModelError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FORMAT = "tastemap-fitted-model"
MODEL_FILE = "model.json"
MMAP_BYTES = 16 << 20
"""Arrays larger than this are memory-mapped when loaded."""

Writer = Callable[[Path], object]


def is_fitted_model(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a fitted model directory (holds ``model.json``), or the place of one
    whose replacement was interrupted (see :func:`read_manifest`)."""
    if path is None:
        return False
    path = Path(path)
    return (path / MODEL_FILE).is_file() or (not path.exists() and _previous_version(path) is not None)


def write_model(out_dir: str | os.PathLike, writers: Mapping[str, Writer], meta: dict, *,
                reuse: Mapping[str, tuple[Path, dict]] | None = None) -> Path:
    """Write a fitted model directory atomically.

    ``writers[name](path)`` writes the file ``name`` (a relative path such as ``state/x.npy``) to
    ``path``; ``reuse[name] = (existing_path, {"sha256", "bytes"})`` takes an unchanged file of a
    previous version (hard-linked, or copied where links are not possible). ``meta`` goes into
    ``model.json`` with ``format``, ``schema_version``, ``written`` and ``files``. Returns the
    directory.
    """
    out_dir = Path(out_dir).absolute()
    reuse = dict(reuse or {})
    clash = sorted(set(writers) & set(reuse))
    if clash:
        raise FittedModelError(f"files {clash} are both written and reused; give each file once")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise FittedModelError(f"cannot create the model directory {out_dir}: {exc.strerror}") from None
    try:
        files = {}
        for name, (source, record) in reuse.items():
            target = _target(tmp, name)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            files[name] = {"sha256": record["sha256"], "bytes": record["bytes"]}
        for name, write in writers.items():
            target = _target(tmp, name)
            write(target)
            files[name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
        document = {"format": FORMAT, "schema_version": SCHEMA_VERSION,
                    "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **meta, "files": dict(sorted(files.items()))}
        (tmp / MODEL_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False, default=_json_default),
                                      encoding="utf-8")
        _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_manifest(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Read ``path/model.json``, check the format and schema version and, with ``verify``, the
    sha256 of every file it lists; raise :class:`FittedModelError` on any mismatch."""
    path = Path(path)
    if not path.exists():
        previous = _previous_version(path)
        if previous is None:
            raise FittedModelError(f"fitted model {path} does not exist; create it with `tastemap fit --out {path}`")
        logger.warning("%s was being replaced when a write stopped; restoring the previous version %s",
                       path, previous.name)
        os.rename(previous, path)
    manifest_path = path / MODEL_FILE
    if not manifest_path.is_file():
        raise FittedModelError(f"{path} has no {MODEL_FILE}, so it is not a fitted tastemap model; "
                               f"create one with `tastemap fit --out {path}`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FittedModelError(f"{manifest_path} is not valid JSON ({exc}); fit the model again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FittedModelError(f"{manifest_path} is not a fitted tastemap model (format "
                               f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {FORMAT!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FittedModelError(f"{path} has schema_version={version!r}; this tastemap reads schema_version="
                               f"{SCHEMA_VERSION}: fit the model again with this version (`tastemap fit`)")
    for name, record in manifest.get("files", {}).items():
        _check_name(name)
        file = path / name
        if not file.is_file():
            raise FittedModelError(f"{path} lacks {name}, listed in {MODEL_FILE}; the directory is incomplete, fit again")
        if file.stat().st_size != record["bytes"]:
            raise FittedModelError(f"{file} has {file.stat().st_size} bytes; {MODEL_FILE} records {record['bytes']}: "
                                   "the file was changed or truncated; fit the model again")
        if verify:
            digest = sha256_file(file)
            if digest != record["sha256"]:
                raise FittedModelError(f"{file} has sha256 {digest[:16]}...; {MODEL_FILE} records "
                                       f"{record['sha256'][:16]}...: the file was changed; fit the model again")
    return manifest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (the same digest as model packages use)."""
    from tastemap.package import sha256_file as digest

    return digest(path)


def array_writer(array: np.ndarray) -> Writer:
    """Write ``array`` as ``.npy`` (numeric dtypes only: object arrays would need pickle)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise FittedModelError(f"array of dtype {array.dtype} cannot be stored without pickle; store it as Parquet")

    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return write


def load_array(path: Path) -> np.ndarray:
    """Read a ``.npy`` file with ``allow_pickle=False``; memory-mapped (read-only) above
    :data:`MMAP_BYTES`."""
    mmap = "r" if path.stat().st_size > MMAP_BYTES else None
    try:
        return np.load(path, allow_pickle=False, mmap_mode=mmap)
    except ValueError as exc:
        raise FittedModelError(f"cannot read {path}: {exc}") from None


def sparse_writers(name: str, matrix: sparse.csr_matrix) -> dict[str, Writer]:
    """Writers of a CSR matrix as ``name.indptr.npy``, ``name.indices.npy`` and ``name.data.npy``
    (its shape is recorded by the caller)."""
    matrix = sparse.csr_matrix(matrix)
    return {f"{name}.{part}.npy": array_writer(getattr(matrix, part)) for part in ("indptr", "indices", "data")}


def load_sparse(root: Path, name: str, shape: tuple[int, int]) -> sparse.csr_matrix:
    """The CSR matrix written by :func:`sparse_writers`."""
    parts = [np.asarray(load_array(root / f"{name}.{part}.npy")) for part in ("data", "indices", "indptr")]
    return sparse.csr_matrix(tuple(parts), shape=tuple(shape))


def json_writer(document) -> Writer:
    """Write ``document`` as indented UTF-8 JSON."""
    return lambda path: path.write_text(json.dumps(document, indent=1, ensure_ascii=False, default=_json_default),
                                        encoding="utf-8")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _target(root: Path, name: str) -> Path:
    _check_name(name)
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _check_name(name: str) -> None:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise FittedModelError(f"file name {name!r} is not a relative path inside the model directory")


def _swap(tmp: Path, out_dir: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``out_dir`` (see the module docstring)."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MODEL_FILE).is_file():
        raise FittedModelError(f"{out_dir} exists and is not a fitted model; choose an empty or new folder for --out")
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _previous_version(path: Path) -> Path | None:
    """A previous version left beside ``path`` by an interrupted swap (the newest one)."""
    if not path.parent.is_dir():
        return None
    candidates = [p for p in path.parent.glob(f".{path.name}.old-*") if (p / MODEL_FILE).is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
