"""The fitted model directory on disk: versions, the ``current`` pointer, hashes and the schema.

A fitted model is a directory of immutable versions and a pointer to the one in use::

    DIR/current                 the name of the current version, e.g. "00000007"
    DIR/versions/00000007/      model.json and the model's files (see tastemap.runtime.pipeline.model)
    DIR/versions/00000006/      the previous version, kept one generation for readers that opened it
    DIR/writer.lock             the writer lock, and writer.queue where writers wait for it
                                (see tastemap.runtime.pipeline.model_lock)

Each version's ``model.json`` records the format, the schema version, the version number, what the
model was fitted with and every file with its sha256 and size. Files are Parquet, ``.npy`` (read
with ``allow_pickle=False``; large arrays memory-mapped) and JSON; nothing is pickled.

**Writers** (:func:`write_model`) hold the directory's writer lock, so there is one at a time; a
second one waits (``wait`` seconds) or stops with an error. A writer first removes the leftovers of
interrupted writes, then writes every file of the new version into ``versions/.tmp-<random>``
(unchanged files of the previous version are hard-linked, not rewritten), ``model.json`` last,
renames the finished folder to its version number and replaces ``current`` atomically
(``os.replace``). Versions older than the previous one are removed, unless a reader still pins
them. A crash at any point leaves the current version untouched; what the crash left behind is
removed by the next writer.

**Readers** (:func:`open_version`) resolve ``current`` once, pin that version (a shared lock on
its ``model.json``, so that no writer removes it while it is read) and read only its files; they
never repair, rename or remove anything. What a version must hold is decided by the schema
(:func:`tastemap.runtime.pipeline.model_state.required_files`), not by ``model.json``'s own list:
every name is a relative path inside the version, a required file that is missing or unlisted, or
a file that the schema does not know, is a :class:`~tastemap.errors.FittedModelError`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

import numpy as np
from scipy import sparse

from tastemap.errors import FittedModelError, InputError, TastemapError
from tastemap.runtime.io.outputs import remove_path
from tastemap.runtime.pipeline import model_lock

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3
FORMAT = "tastemap-fitted-model"
MODEL_FILE = "model.json"
POINTER = "current"
VERSIONS = "versions"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".old-"
POINTER_TMP_PREFIX = ".current.tmp-"
TOP_LEVEL = frozenset({POINTER, VERSIONS, model_lock.LOCK_FILE, model_lock.QUEUE_FILE})
"""Everything a model directory holds besides leftovers of interrupted writes."""
DEFAULT_WAIT = model_lock.DEFAULT_WAIT
OPEN_TRIES = 5
MMAP_BYTES = 16 << 20
"""Arrays larger than this are memory-mapped when loaded."""

_VERSION_NAME = re.compile(r"^[0-9]{8}$")
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")

Writer = Callable[[Path], object]


@dataclass(frozen=True)
class ModelVersion:
    """One published version of the model in ``home``: its ``number``, its ``manifest`` (the
    parsed ``model.json``) and the :class:`~tastemap.runtime.pipeline.model_lock.Pin` that keeps
    it on disk while it is used (None on systems without ``flock``)."""

    home: Path
    number: int
    manifest: dict
    pin: model_lock.Pin | None = None

    @property
    def root(self) -> Path:
        """The folder holding this version's files."""
        return version_root(self.home, self.number)


def is_fitted_model(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a fitted model directory (it has a ``current`` pointer), or a folder
    of the earlier one-folder layout (its ``model.json`` is refused with the schema message)."""
    if path is None:
        return False
    path = Path(path)
    return path.is_dir() and ((path / POINTER).is_file() or (path / MODEL_FILE).is_file())


def version_root(home: Path, number: int) -> Path:
    return Path(home) / VERSIONS / f"{number:08d}"


def check_model_target(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Refuse ``path`` as the place of a model directory unless it is missing, an empty folder
    or a model directory: a file (an input file among them) or a folder of other files is never
    replaced. Raises :class:`~tastemap.errors.InputError`; returns ``path``."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputError(f"{flag} {path} is a broken symbolic link; give a new folder for the model")
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} is an existing file; a model directory never replaces a file: give a new "
                         "or empty folder, or an existing model directory")
    if not path.is_dir():
        return path
    if (path / MODEL_FILE).is_file() and not (path / POINTER).is_file():
        raise InputError(f"{flag} {path} holds a model of the earlier one-folder layout (model.json at its top); "
                         "remove that folder or give another one")
    others = sorted(name for name in os.listdir(path)
                    if name not in TOP_LEVEL and not name.startswith(POINTER_TMP_PREFIX))
    if others:
        raise InputError(f"{flag} {path} is a folder of other files (e.g. {others[:3]}), not a tastemap model "
                         "directory; give a new or empty folder, or an existing model directory")
    return path


def write_model(out_dir: str | os.PathLike, writers: Mapping[str, Writer], meta: dict, *,
                reuse: Mapping[str, tuple[Path, dict]] | None = None, expect: int | None = None,
                wait: float = DEFAULT_WAIT) -> ModelVersion:
    """Publish a new version of the model directory ``out_dir`` (see the module docstring).

    ``writers[name](path)`` writes the file ``name`` (a relative path such as ``state/x.npy``) to
    ``path``; ``reuse[name] = (existing_path, {"sha256", "bytes"})`` takes an unchanged file of a
    previous version (hard-linked, or copied where links are not possible). ``meta`` goes into
    ``model.json`` with ``format``, ``schema_version``, ``version``, ``written`` and ``files``.
    ``expect``: the version the caller's model was read from; when another writer published a
    newer one since, nothing is written and :class:`~tastemap.errors.FittedModelError` says so
    (its changes would otherwise be lost). ``wait``: seconds to wait for another writer. Returns
    the new version, pinned.
    """
    reuse = dict(reuse or {})
    clash = sorted(set(writers) & set(reuse))
    if clash:
        raise FittedModelError(f"files {clash} are both written and reused; give each file once")
    check_model_target(out_dir, flag="the model directory")
    with model_lock.writer_lock(out_dir, wait=wait) as home:
        check_model_target(home, flag="the model directory")
        current = current_number(home)
        if expect is not None and current != expect:
            raise FittedModelError(
                f"{home} was changed by another writer since this model was read from it (version {current} is "
                f"current, this model holds version {expect}); saving would lose that writer's changes: load the "
                "model again and apply the change to it")
        remove_leftovers(home)
        number = max([current or 0, *version_numbers(home)]) + 1
        try:
            document = _write_version(home, number, writers, reuse, meta)
            _point(home, number)
        except OSError as exc:
            raise _write_failure(home, exc) from None
        pinned = model_lock.pin(version_root(home, number) / MODEL_FILE)
        prune(home, keep={number, current})
    logger.debug("wrote version %d of the model %s", number, home)
    return ModelVersion(home=home, number=number, manifest=document, pin=pinned)


def _write_version(home: Path, number: int, writers: Mapping[str, Writer], reuse: dict, meta: dict) -> dict:
    """Write every file into a temporary folder, ``model.json`` last, and rename it to the
    version's folder; returns the manifest. The temporary folder is removed when this fails."""
    (home / VERSIONS).mkdir(exist_ok=True)
    tmp = home / VERSIONS / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # the umask decides its mode, as for any folder the user creates
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
        header = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "version": number,
                  "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        document = {**header, **{key: value for key, value in meta.items() if key not in (*header, "files")},
                    "files": dict(sorted(files.items()))}
        (tmp / MODEL_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False, default=_json_default),
                                      encoding="utf-8")
        os.rename(tmp, version_root(home, number))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return document


def _point(home: Path, number: int) -> None:
    """Make version ``number`` the current one: a new pointer file replaces ``current`` atomically."""
    tmp = home / f"{POINTER_TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        tmp.write_text(f"{number:08d}\n", encoding="ascii")
        os.replace(tmp, home / POINTER)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def current_number(home: Path) -> int | None:
    """The number of the current version of the model in ``home`` (None before the first)."""
    try:
        text = (Path(home) / POINTER).read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not _VERSION_NAME.match(text):
        raise FittedModelError(f"{Path(home) / POINTER} holds {text[:40]!r}; it should name a version such as "
                               "'00000001' (the pointer was edited): fit the model again")
    return int(text)


def version_numbers(home: Path) -> list[int]:
    """The numbers of the version folders present in ``home`` (sorted)."""
    folder = Path(home) / VERSIONS
    if not folder.is_dir():
        return []
    return sorted(int(name) for name in os.listdir(folder) if _VERSION_NAME.match(name))


def remove_leftovers(home: Path) -> None:
    """Remove what interrupted writes left (temporary versions and pointers, half-removed
    versions, and the ``.DIR.tmp-*`` / ``.DIR.old-*`` folders of the earlier layout). Only a
    holder of the writer lock may call this: no other write can be under way."""
    leftovers = [home / VERSIONS / name for name in _listdir(home / VERSIONS)
                 if name.startswith((TMP_PREFIX, TRASH_PREFIX))]
    leftovers += [home / name for name in _listdir(home) if name.startswith(POINTER_TMP_PREFIX)]
    earlier = re.compile(rf"^\.{re.escape(home.name)}\.(tmp-[a-z0-9_]{{8}}|old-[0-9a-f]{{8}})$")
    leftovers += [home.parent / name for name in _listdir(home.parent) if earlier.match(name)]
    for path in leftovers:
        logger.info("removing %s, left by an interrupted write", path)
        remove_path(path)


def prune(home: Path, *, keep: set) -> None:
    """Remove the versions not in ``keep`` that no reader pins (a pinned one waits for a later
    writer). A version is renamed aside before it is removed, so that it is never seen half-removed."""
    for number in version_numbers(home):
        if number in keep:
            continue
        root = version_root(home, number)
        fd = model_lock.claim(root / MODEL_FILE)
        if fd is None and (root / MODEL_FILE).exists():
            logger.debug("version %d of %s is in use by a reader; it is removed by a later writer", number, home)
            continue
        try:
            trash = home / VERSIONS / f"{TRASH_PREFIX}{root.name}-{uuid.uuid4().hex[:8]}"
            os.rename(root, trash)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError as exc:
            logger.warning("cannot remove the old version %s: %s", root, exc)
        finally:
            if fd is not None:
                os.close(fd)


def open_version(path: str | os.PathLike, *, verify: bool = True) -> ModelVersion:
    """Open the current version of the model in ``path`` for reading: resolve ``current`` once,
    pin that version and check it against the schema (with ``verify``, the sha256 of every file).
    When a writer removes the version between the two steps, the pointer is resolved again."""
    home = Path(path)
    check_is_model(home)
    for _ in range(OPEN_TRIES):
        number = current_number(home)
        if number is None:
            raise FittedModelError(f"{home} holds no finished version (its first write is under way or was "
                                   f"interrupted); write it with `tastemap fit --out {home}`")
        root = version_root(home, number)
        try:
            pinned = model_lock.pin(root / MODEL_FILE)
        except FileNotFoundError:
            pinned = None
            if current_number(home) == number:
                raise FittedModelError(f"{home}: the current version {root.name} has no {MODEL_FILE}; the directory "
                                       "was edited, fit the model again") from None
        if pinned is None:
            continue  # removed by a writer after we read the pointer: read it again
        try:
            manifest = read_document(root)
            check_version(root, manifest, number, verify=verify)
        except BaseException:
            pinned.close()
            raise
        return ModelVersion(home=home, number=number, manifest=manifest, pin=pinned)
    raise FittedModelError(f"{home} changed {OPEN_TRIES} times while it was being opened; writers replace it "
                           "faster than it can be read: try again")


def read_manifest(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """The checked ``model.json`` of the current version of the model in ``path`` (see
    :func:`open_version`)."""
    return open_version(path, verify=verify).manifest


def check_is_model(home: Path) -> None:
    """Raise :class:`~tastemap.errors.FittedModelError` saying why ``home`` is not a fitted model
    directory (missing, of the earlier layout, not a model); return when it is one."""
    home = Path(home)
    if not home.exists():
        raise FittedModelError(f"fitted model {home} does not exist; create it with `tastemap fit --out {home}`")
    if (home / POINTER).is_file():
        return
    if (home / MODEL_FILE).is_file():  # the earlier one-folder layout: its schema version says what to do
        _check_header(read_document(home), home / MODEL_FILE)
    if (home / VERSIONS).is_dir():
        return  # its first version is being written: open_version says so
    raise FittedModelError(f"{home} has no {POINTER} pointer, so it is not a fitted tastemap model; create one "
                           f"with `tastemap fit --out {home}`")


def read_document(root: Path) -> dict:
    """The parsed ``root/model.json`` with its format and schema version checked."""
    manifest_path = root / MODEL_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FittedModelError(f"{root} has no {MODEL_FILE}; the directory is incomplete, "
                               "fit the model again") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FittedModelError(f"{manifest_path} is not valid JSON ({type(exc).__name__}: {str(exc)[:80]}); "
                               "fit the model again") from None
    _check_header(manifest, manifest_path)
    return manifest


def _check_header(manifest, manifest_path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise FittedModelError(f"{manifest_path} is not a fitted tastemap model (format {found!r}, "
                               f"expected {FORMAT!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FittedModelError(f"{manifest_path.parent} has schema_version={version!r}; this tastemap reads "
                               f"schema_version={SCHEMA_VERSION}: fit the model again with this version "
                               "(`tastemap fit`)")


def check_version(root: Path, manifest: dict, number: int, *, verify: bool = True) -> None:
    """Check one version against the schema: its number, that every path is relative and inside
    it, that it holds exactly the files the schema requires (listed and on disk, nothing else),
    their sizes and (with ``verify``) their sha256. Raises :class:`~tastemap.errors.FittedModelError`."""
    from tastemap.runtime.pipeline.model_state import required_files

    if manifest.get("version") != number:
        raise FittedModelError(f"{root / MODEL_FILE} records version {manifest.get('version')!r} but lies in the "
                               f"folder of version {number}; the directory was edited, fit the model again")
    files = _listed_files(root, manifest)
    try:
        required = required_files(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FittedModelError(f"{root / MODEL_FILE} is incomplete ({type(exc).__name__}: {exc}); it cannot say "
                               "which files the model holds: fit the model again") from None
    _compare(root, "does not list", sorted(required - set(files)), "which the schema requires of this model")
    _compare(root, "lists", sorted(set(files) - required), "which the schema does not know")
    unknown = sorted(set(_files_on_disk(root)) - set(files) - {MODEL_FILE})
    _compare(root, "does not list the file on disk", unknown, "which the schema does not know")
    for name, record in files.items():
        _check_file(root / name, record, verify)


def _listed_files(root: Path, manifest: dict) -> dict:
    """``files`` of the manifest, each name checked, each record ``{"sha256": str, "bytes": int}``;
    and every name of ``event_parts`` checked and listed."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise FittedModelError(f"{root / MODEL_FILE} has no 'files' object; fit the model again")
    for name, record in files.items():
        check_name(name)
        if not (isinstance(record, dict) and isinstance(record.get("sha256"), str)
                and isinstance(record.get("bytes"), int)):
            raise FittedModelError(f"{root / MODEL_FILE}: the record of {name!r} is {record!r}; expected "
                                   "{'sha256': ..., 'bytes': ...}: fit the model again")
    parts = manifest.get("event_parts")
    if not isinstance(parts, list) or not all(isinstance(part, str) for part in parts):
        raise FittedModelError(f"{root / MODEL_FILE}: event_parts={parts!r} should be a list of file names")
    for part in parts:
        check_name(part)
        if part not in files:
            raise FittedModelError(f"{root / MODEL_FILE}: event part {part!r} is not among the files; the file list "
                                   "was edited, fit the model again")
    return files


def _compare(root: Path, verb: str, names: list, why: str) -> None:
    if names:
        raise FittedModelError(f"{root / MODEL_FILE} {verb} {names[:5]}, {why} (schema_version={SCHEMA_VERSION}); "
                               "the directory was edited or is incomplete: fit the model again")


def _files_on_disk(root: Path) -> list[str]:
    """Every file below ``root`` as a relative POSIX name; a symbolic link is an error."""
    names = []
    for folder, subfolders, files in os.walk(root):
        for name in [*subfolders, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                raise FittedModelError(f"{path} is a symbolic link; a model's files are plain files inside its "
                                       "directory: fit the model again")
        names += [(Path(folder) / name).relative_to(root).as_posix() for name in files]
    return names


def _check_file(file: Path, record: dict, verify: bool) -> None:
    if not file.is_file():
        raise FittedModelError(f"{file.parent} lacks {file.name}, listed in {MODEL_FILE}; the directory is "
                               "incomplete, fit the model again")
    size = file.stat().st_size
    if size != record["bytes"]:
        raise FittedModelError(f"{file} has {size} bytes; {MODEL_FILE} records {record['bytes']}: the file was "
                               "changed or truncated; fit the model again")
    if verify:
        digest = sha256_file(file)
        if digest != record["sha256"]:
            raise FittedModelError(f"{file} has sha256 {digest[:16]}...; {MODEL_FILE} records "
                                   f"{record['sha256'][:16]}...: the file was changed; fit the model again")


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
    check_name(name)
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def check_name(name) -> None:
    """Refuse a file name that is not a plain relative path inside the model (``a/b.npy``): an
    absolute path, ``..``, ``.``, an empty part or a backslash."""
    text = name if isinstance(name, str) else ""
    parts = text.split("/")
    if (not text or "\\" in text or PurePosixPath(text).is_absolute() or any(p in ("", ".", "..") for p in parts)
            or text == MODEL_FILE):
        raise FittedModelError(f"file name {name!r} in {MODEL_FILE} is not a relative path inside the model "
                               "directory (such as 'state/vectors.npy'); the file was edited: fit the model again")


def _write_failure(home: Path, exc: OSError) -> TastemapError:
    """The error of a write that failed for a reason of the file system (full, read-only...)."""
    from tastemap.runtime.io.outputs import write_error

    code = exc.errno
    if code is None and (_SHORT_WRITE.search(str(exc)) or "No space left" in str(exc)):
        code = errno.ENOSPC  # numpy and Arrow report a full disk as a short write
    if code is None:
        return FittedModelError(f"cannot write the model directory {home}: {exc}; its current version is unchanged")
    return write_error(home, OSError(code, os.strerror(code)), what="write the model directory")


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []




def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
