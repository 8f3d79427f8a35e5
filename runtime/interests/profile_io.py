"""Profiles on disk: ``profiles.parquet``, ``profiles.jsonl`` and ``topics.json``.

Ranked per-user lists are built as Arrow list columns straight from the flat arrays (no loop over
users). Every file is written to a temporary name in the output folder and renamed only when all
of them are complete. The schemas are documented in ``docs/commands/profile.md`` ("Outputs").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.layers import rank_rows
from tastemap.runtime.io.outputs import write_atomically
from tastemap.runtime.interests.profiles import UserProfiles

SCHEMA_VERSION = 1
_META = b"tastemap"


def write_profiles(profiler, out_dir: str | Path, profiles: UserProfiles | None = None, *,
                   jsonl: bool = True, extra: dict | None = None) -> dict[str, Path]:
    """Write a fitted :class:`InterestProfiler`'s profiles (or ``profiles`` from its
    ``transform``) and its topic tree into ``out_dir``. ``extra`` is merged into ``topics.json``
    (e.g. the model used). Returns the written paths by file name."""
    profiles = profiles if profiles is not None else profiler.profiles_
    table = profiles_table(profiles, profiler.item_ids_, profiler.item_titles_)
    topics = profiler.topic_tree_.to_dict(profiler.item_ids_, profiler.item_titles_)
    topics = {"schema_version": SCHEMA_VERSION, "backend": profiler.backend_, **(extra or {}), **topics}
    writers = {
        "profiles.parquet": lambda path: pq.write_table(table, path),
        "topics.json": lambda path: path.write_text(json.dumps(topics, indent=1, ensure_ascii=False)),
    }
    if jsonl:
        writers["profiles.jsonl"] = lambda path: _write_jsonl(table.drop_columns(["vector"]), path)
    return write_atomically(out_dir, writers)


def profiles_table(profiles: UserProfiles, item_ids: np.ndarray, titles: np.ndarray) -> pa.Table:
    """One row per user (see the schema in ``docs/commands/profile.md``); labels are dictionary-encoded strings."""
    fine_names = profiles.topic_names[-1]
    n_users = len(profiles.user_ids)
    columns = {
        "user_id": pa.array(profiles.user_ids),
        "n_events": pa.array(profiles.n_events.astype(np.int64)),
        "last_seen": pa.array(profiles.last_seen.astype(np.int64)),
        "short_term": _ranked([profiles.short_term], [fine_names], "topic", n_users),
        "long_term": _ranked([profiles.topics[-1]], [fine_names], "topic", n_users),
        "topics": _ranked(profiles.topics, profiles.topic_names, "topic", n_users),
        "categories": _ranked(profiles.categories, profiles.category_names, "category", n_users),
        "interests": _interests(profiles, item_ids, titles, fine_names),
    }
    if profiles.vectors is not None:
        dim = profiles.vectors.shape[1]
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(profiles.vectors.astype(np.float32).ravel()), dim)
    meta = {"schema_version": SCHEMA_VERSION,
            "topic_names": [list(map(str, n)) for n in profiles.topic_names],
            "category_names": [list(map(str, n)) for n in profiles.category_names]}
    return pa.table(columns).replace_schema_metadata({_META: json.dumps(meta).encode()})


def read_profiles(path: str | Path) -> UserProfiles:
    """Read ``profiles.parquet`` (a file, the folder holding it, or a fitted model directory: its
    current version's) back into :class:`UserProfiles` (``interests`` is None: on disk they are
    item ids, see the ``interests`` column)."""
    path = Path(path)
    if path.is_dir():
        from tastemap.runtime.pipeline.model_io import is_fitted_model, open_version

        if is_fitted_model(path):
            version = open_version(path, verify=False)  # pinned while it is read
            try:
                return read_profiles(version.root / "profiles.parquet")
            finally:
                version.pin.close()
    path = path / "profiles.parquet" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"profiles file {path} does not exist; run `tastemap profile` first")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"cannot read profiles file {path}: {exc}") from None
    required = {"user_id", "n_events", "last_seen", "short_term", "topics", "categories"}
    if not required <= set(table.column_names):
        raise InputError(f"{path} is not a tastemap profiles file: it lacks the columns {sorted(required)}")
    meta = profiles_metadata(table.schema, path)
    n = table.num_rows
    topics = [layer_matrix(table["topics"], names, level) for level, names in enumerate(meta["topic_names"])]
    categories = [layer_matrix(table["categories"], names, level) for level, names in enumerate(meta["category_names"])]
    vectors = None
    if "vector" in table.column_names:
        column = table["vector"].combine_chunks()
        vectors = column.flatten().to_numpy().reshape(n, column.type.list_size).astype(np.float32)
    return UserProfiles(
        user_ids=table["user_id"].to_numpy(),
        n_events=table["n_events"].to_numpy(),
        last_seen=table["last_seen"].to_numpy(),
        topics=topics,
        topic_names=meta["topic_names"],
        short_term=layer_matrix(table["short_term"], meta["topic_names"][-1]),
        categories=categories,
        category_names=meta["category_names"],
        vectors=vectors,
    )


def profiles_metadata(schema: pa.Schema, path: str | Path) -> dict:
    """The topic and category names per level that a ``profiles.parquet`` file carries in its
    schema metadata (see :func:`profiles_table`)."""
    raw = (schema.metadata or {}).get(_META)
    if raw is None:
        raise InputError(f"{path} is not a tastemap profiles file: it has no tastemap metadata")
    return json.loads(raw)


def layer_matrix(column: pa.Array | pa.ChunkedArray, names: list, level: int | None = None) -> sparse.csr_matrix:
    """``[n_rows, len(names)]`` float32 weights of one level rebuilt from a ranked ``list<struct>``
    column (``topics``, ``short_term`` or ``categories`` of :func:`profiles_table`, one row per
    user); ``level=None`` keeps every entry. Category labels may be plain or dictionary-encoded
    strings; labels not in ``names`` are dropped."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n_rows = len(column)
    entries = column.flatten()
    rows = np.repeat(np.arange(n_rows), np.diff(column.offsets.to_numpy()))
    fields = [f.name for f in entries.type]
    if "topic" in fields:
        cols = entries.field("topic").to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        labels = entries.field("category")
        labels = labels.dictionary_decode() if pa.types.is_dictionary(labels.type) else labels
        cols = pd.Index(names).get_indexer(labels.to_numpy(zero_copy_only=False))
    values = entries.field("weight").to_numpy(zero_copy_only=False)
    keep = cols >= 0
    if level is not None and "level" in fields:
        keep &= entries.field("level").to_numpy(zero_copy_only=False) == level
    return sparse.csr_matrix((values[keep].astype(np.float32), (rows[keep], cols[keep])),
                             shape=(n_rows, max(len(names), 1)))


def _ranked(matrices: list, names: list, key: str, n_rows: int) -> pa.ListArray:
    """``list<struct<level?, key, label, weight>>`` for each of ``n_rows`` rows; levels stacked
    coarse first, each ranked by decreasing weight. A single matrix gives no ``level`` field; no
    matrix (a catalog without categories) gives empty lists."""
    users, levels, columns, values = [], [], [], []
    offsets = np.cumsum([0] + [len(n) for n in names])
    for level, matrix in enumerate(matrices):
        indptr, cols, vals = rank_rows(matrix)
        users.append(np.repeat(np.arange(n_rows), np.diff(indptr)))
        levels.append(np.full(cols.size, level, np.int8))
        columns.append(cols)
        values.append(vals)
    user = np.concatenate(users) if users else np.zeros(0, np.int64)
    level = np.concatenate(levels) if levels else np.zeros(0, np.int8)
    col = np.concatenate(columns) if columns else np.zeros(0, np.int64)
    val = np.concatenate(values) if values else np.zeros(0, np.float32)
    order = np.lexsort((np.arange(user.size), level, user))
    user, level, col, val = user[order], level[order], col[order], val[order]
    dictionary = pa.array([str(x) for n in names for x in n], pa.string())
    label = pa.DictionaryArray.from_arrays(pa.array((col + offsets[level]).astype(np.int32)), dictionary)
    fields = [pa.array(col.astype(np.int32)) if key == "topic" else label, pa.array(val.astype(np.float32))]
    field_names = [key, "weight"]
    if key == "topic":
        fields.insert(1, label)
        field_names.insert(1, "label")
    if len(matrices) > 1:
        fields.insert(0, pa.array(level))
        field_names.insert(0, "level")
    struct = pa.StructArray.from_arrays(fields, names=field_names)
    indptr = np.searchsorted(user, np.arange(n_rows + 1)).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(indptr), struct)


def _interests(profiles: UserProfiles, item_ids: np.ndarray, titles: np.ndarray, topic_names) -> pa.ListArray:
    found = profiles.interests
    members = pa.ListArray.from_arrays(pa.array(found.member_indptr.astype(np.int32)),
                                       pa.array(item_ids[found.members]))
    struct = pa.StructArray.from_arrays(
        [pa.array(item_ids[found.medoid]),
         strings(np.asarray(titles)[found.medoid]),
         pa.array(found.importance.astype(np.float32)),
         pa.array(found.share.astype(np.float32)),
         pa.array(found.size.astype(np.int32)),
         pa.array(found.topic.astype(np.int32)),
         pa.DictionaryArray.from_arrays(pa.array(found.topic.astype(np.int32)), pa.array(list(map(str, topic_names)))),
         members],
        names=["medoid_item_id", "medoid_title", "importance", "share", "size", "topic", "topic_label", "item_ids"],
    )
    return pa.ListArray.from_arrays(pa.array(found.indptr.astype(np.int32)), struct)


def strings(values) -> pa.StringArray:
    """``values`` as text in one Arrow array (from a NumPy unicode array of about a million
    strings on, ``pa.array`` returns a chunked array, which a struct field cannot hold)."""
    return pa.array(np.asarray(values).astype(str).astype(object), pa.string())


def _write_jsonl(table: pa.Table, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for batch in table.to_batches(max_chunksize=5_000):
            for row in batch.to_pylist():
                handle.write(json.dumps(row, ensure_ascii=False, default=_json_default))
                handle.write("\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
