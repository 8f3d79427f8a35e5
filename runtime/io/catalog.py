"""The catalog reader: CSV, Parquet or JSONL in, a validated catalog frame out.

:func:`read_catalog` returns ``item_id, title, categories`` (a list of paths per item, each path a
tuple of levels, coarse to fine), ``tags`` (list of str) and ``description``; errors name the file,
the (1-based, header excluded) data row and the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tastemap.errors import InputError
from tastemap.runtime.io.columns import CATALOG_COLUMNS_FIX, CatalogColumns, optional_columns, show_value
from tastemap.runtime.io.tables import check_columns, empty_table, normalize_ids, read_table, row_error


VALIDATED_CATALOG_COLUMNS = ("item_id", "title", "categories", "tags", "description")
"""The columns of a catalog frame after :func:`validate_catalog`."""
def read_catalog(path: str | Path, columns: CatalogColumns = CatalogColumns()) -> pd.DataFrame:
    """Read and validate a catalog file.

    Returns a frame with ``item_id``, ``title`` (str), ``categories`` (list of tuples: paths coarse
    to fine), ``tags`` (list of str) and ``description`` (str), one row per item in file order.
    """
    frame = read_table(path, what="catalog")
    return validate_catalog(frame, columns, source=str(path))


def validate_catalog(frame: pd.DataFrame, columns: CatalogColumns = CatalogColumns(), *, source: str = "catalog") -> pd.DataFrame:
    """Validate an in-memory catalog frame (see :func:`read_catalog`)."""
    if frame.empty:
        raise empty_table(source)
    frame = frame.reset_index(drop=True)
    check_columns(source, frame.columns, [columns.item_id, columns.title], fix=CATALOG_COLUMNS_FIX)
    optional = optional_columns(frame, columns, ("categories", "tags", "description"), source, CATALOG_COLUMNS_FIX)
    ids = pd.Series(normalize_ids(frame[columns.item_id], source, columns.item_id))
    duplicated = ids.duplicated(keep="first").to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise row_error(source, row, columns.item_id,
                        f"item_id {show_value(ids.iloc[row])} appears more than once (first in row {first + 1}); "
                        "each catalog item must be listed once")
    n = len(frame)
    out = pd.DataFrame({"item_id": ids.to_numpy()})
    out["title"] = _texts(frame[columns.title], source)
    cats = frame[optional["categories"]] if "categories" in optional else pd.Series([None] * n)
    tags = frame[optional["tags"]] if "tags" in optional else pd.Series([None] * n)
    out["categories"] = [_parse_paths(v, columns) for v in cats.to_numpy()]
    out["tags"] = [_parse_list(v, columns.list_separator) for v in tags.to_numpy()]
    desc = frame[optional["description"]] if "description" in optional else pd.Series([""] * n)
    out["description"] = _texts(desc, source)
    return out


def check_catalog_frame(catalog: pd.DataFrame) -> None:
    """Refuse a catalog frame that is empty or lacks the validated columns (see ``read_catalog``)."""
    missing = [c for c in VALIDATED_CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise InputError(
            f"catalog frame lacks column(s) {missing}; it has {[str(c) for c in catalog.columns]}; "
            "read it with read_catalog or validate_catalog"
        )
    if catalog.empty:
        raise InputError("catalog is empty: it has no rows")


def _parse_paths(value, columns: CatalogColumns) -> list[tuple[str, ...]]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if not isinstance(value, (str, list, tuple, np.ndarray)):
        value = str(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, str):
        parts = value.split(columns.list_separator) if columns.list_separator else [value]
        paths = [tuple(lvl.strip() for lvl in p.split(columns.path_separator)) for p in parts]
    elif len(value) and all(isinstance(path, (list, tuple, np.ndarray)) for path in value):
        paths = [tuple(str(lvl).strip() for lvl in path) for path in value]  # already parsed: validating is idempotent
    else:
        paths = [tuple(str(lvl).strip() for lvl in value)]
    return [p for p in (tuple(lvl for lvl in path if lvl) for path in paths) if p]


def _parse_list(value, separator: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if not isinstance(value, (str, list, tuple, np.ndarray)):
        value = str(value.item() if isinstance(value, np.generic) else value)
    items = value.split(separator) if isinstance(value, str) and separator else (
        [value] if isinstance(value, str) else [str(v) for v in value])
    return [s.strip() for s in items if s.strip()]


def _texts(column: pd.Series, source: str) -> np.ndarray:
    """str ``[n]``: text as is, numbers as their text, missing values as ``""``; other objects
    (lists, mappings) are an error naming the row."""
    objects = column.to_numpy(dtype=object)
    out = np.empty(len(objects), dtype=object)
    for row, value in enumerate(objects):
        if isinstance(value, str):
            out[row] = value
        elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            out[row] = ""
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            out[row] = str(value.item() if isinstance(value, np.generic) else value)
        else:
            raise row_error(source, row, column.name, f"{type(value).__name__} {show_value(value)} is not a text")
    return out
