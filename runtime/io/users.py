"""User attributes: the users table (``user_id`` plus attribute columns) and ``key=value`` strings.

:func:`read_users` reads the table with the one table reader
(:func:`~tastemap.runtime.io.tables.read_table`): CSV, TSV, Parquet or JSON lines. Every column
other than ``user_id`` is an attribute:

- **numeric** attributes are the columns named in ``numeric`` (default ``age``) and the Parquet or
  JSON columns typed as numbers; a value that is not a number is an error naming its row;
- every other column is **categorical** (text as written; a zip code is categorical).

Missing values (an empty field, ``NA``, ``null``...) are allowed in every attribute column: a
user without an age simply has none. :func:`parse_attributes` reads the attributes of one new user
from ``"age=24,gender=M,occupation=student"``, and :func:`check_known` refuses attributes the
fitted model does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tastemap.errors import InputError
from tastemap.runtime.io.tables import MISSING_MARKERS, check_columns, normalize_ids, read_table, row_error

USER_ID = "user_id"
DEFAULT_NUMERIC = ("age",)


@dataclass(frozen=True)
class UserAttributes:
    """Attributes of ``n_users`` users.

    ``user_ids`` ``[n_users]`` (unique); ``values`` a frame of ``n_users`` rows (row = position in
    ``user_ids``), one column per attribute: float64 for the ``numeric`` ones (NaN when missing),
    object (str, or None when missing) for the categorical ones.
    """

    user_ids: np.ndarray
    values: pd.DataFrame
    numeric: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [str(column) for column in self.values.columns]

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    def aligned(self, user_ids: np.ndarray) -> pd.DataFrame:
        """The attribute rows of ``user_ids`` ``[n]`` in that order; users without a row get
        missing values everywhere."""
        positions = pd.Index(self.user_ids).get_indexer(np.asarray(user_ids))
        frame = self.values.reindex(np.where(positions >= 0, positions, -1)).reset_index(drop=True)
        return frame


def read_users(path: str | Path, *, numeric: Sequence[str] = DEFAULT_NUMERIC) -> UserAttributes:
    """Read the users table at ``path`` (see the module docstring). ``numeric`` names the numeric
    columns; one of them absent from the table is skipped unless it was asked for explicitly
    (every name other than the default ``age`` must be a column)."""
    frame = read_table(path, what="users")
    return users_from_frame(frame, source=path, numeric=numeric)


def users_from_frame(frame: pd.DataFrame, *, source: str | Path = "users table",
                     numeric: Sequence[str] = DEFAULT_NUMERIC) -> UserAttributes:
    """:func:`read_users` for a frame already in memory (``source`` names it in messages)."""
    check_columns(source, frame.columns, [USER_ID], fix="the users table needs a user_id column")
    columns = [str(column) for column in frame.columns if str(column) != USER_ID]
    if not columns:
        raise InputError(f"{source}: has no attribute column besides user_id; add columns such as age, gender, occupation")
    unknown = [name for name in numeric if name not in columns and name not in DEFAULT_NUMERIC]
    if unknown:
        raise InputError(f"{source}: numeric column(s) {unknown} are not in the table; it has {columns}")
    user_ids = normalize_ids(frame[USER_ID], source, USER_ID)
    duplicated = pd.Index(user_ids).duplicated()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise row_error(source, row, USER_ID, f"user {user_ids[row]!r} appears twice; give each user one row")
    numeric_columns = [c for c in columns if c in numeric or _typed_numeric(frame[c])]
    values = {}
    for column in columns:
        series = frame[column].reset_index(drop=True)
        values[column] = (_numbers(series, source, column) if column in numeric_columns
                          else _categories(series, source, column))
    return UserAttributes(user_ids=user_ids, values=pd.DataFrame(values), numeric=tuple(numeric_columns))


def parse_attributes(text: str) -> dict[str, str]:
    """``"age=24,gender=M,occupation=student"`` -> ``{"age": "24", "gender": "M", ...}``."""
    attributes: dict[str, str] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"attributes {text!r}: {part!r} is not key=value; write e.g. \"age=24,gender=M\"")
        if key in attributes:
            raise InputError(f"attributes {text!r}: {key!r} is given twice; give each attribute once")
        attributes[key] = value
    if not attributes:
        raise InputError(f"attributes {text!r} are empty; write e.g. \"age=24,gender=M,occupation=student\"")
    return attributes


def check_known(attributes: Mapping[str, object], known: Sequence[str], numeric: Sequence[str]) -> dict[str, object]:
    """Refuse an attribute the model was not fitted with and a numeric one that is not a number;
    return the attributes with numbers as float and missing markers as None."""
    unknown = [key for key in attributes if key not in known]
    if unknown:
        raise InputError(f"unknown attribute(s) {unknown}; the model knows {list(known)}")
    out: dict[str, object] = {}
    for key, value in attributes.items():
        if _is_missing(value):
            out[key] = None
        elif key in numeric:
            number = _to_number(value)
            if number is None:
                raise InputError(f"attribute {key}={value!r} is not a number; {key} is numeric (e.g. {key}=24)")
            out[key] = number
        else:
            out[key] = str(value)
    return out


def _typed_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _numbers(series: pd.Series, source, column: str) -> pd.Series:
    out = np.full(len(series), np.nan)
    for row, value in enumerate(series.tolist()):
        if _is_missing(value):
            continue
        number = _to_number(value)
        if number is None:
            raise row_error(source, row, column, f"{value!r} is not a number; {column} is numeric "
                                                 "(leave the field empty when unknown)")
        out[row] = number
    return pd.Series(out, name=column)


def _categories(series: pd.Series, source, column: str) -> pd.Series:
    values = []
    for row, value in enumerate(series.tolist()):
        if isinstance(value, (list, tuple, dict, np.ndarray)):
            raise row_error(source, row, column, f"a {type(value).__name__} is not an attribute value; use text")
        values.append(None if _is_missing(value) else str(value).strip())
    return pd.Series(values, dtype=object, name=column)


def _is_missing(value) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, str):
        return value.strip() in MISSING_MARKERS
    return isinstance(value, float) and np.isnan(value)


def _to_number(value) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
