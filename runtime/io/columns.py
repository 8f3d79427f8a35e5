"""Column names of events and catalog files, as options and as frozen configs.

:class:`EventColumns` and :class:`CatalogColumns` name the columns of the input files and validate
themselves; :func:`parse_mapping` reads the command-line form ``a=x,b=y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np
import pandas as pd

from tastemap.errors import InputError
from tastemap.runtime.io.tables import check_columns


EVENT_COLUMNS_FIX = "rename them or pass the column names (EventColumns; --event-columns on the command line)"
CATALOG_COLUMNS_FIX = "rename them or pass the column names (CatalogColumns; --catalog-columns on the command line)"
UNIT_SECONDS = {"s": 1, "ms": 1_000}


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_names(columns, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(columns, name)
        if not isinstance(value, str) or not value:
            raise InputError(f"{type(columns).__name__}: {name}={value!r} should be a column name (a non-empty string)")


def _known_keys(cls, mapping: dict, flag: str, exclude: tuple[str, ...] = ()) -> dict:
    known = [f.name for f in fields(cls) if f.name not in exclude]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise InputError(f"{flag}: unknown key(s) {unknown}; the keys are {known}")
    return mapping


@dataclass(frozen=True)
class EventColumns:
    """Column names of an events file and how feedback becomes a weight.

    ``weight``, ``rating`` and ``event_type`` are optional: a column left at its default name is
    used when present; a name you set must exist. ``event_weights`` maps event types to weights
    (``{"view": 0.2, "purchase": 3}``); a type not listed is an error. ``timestamp_unit`` applies to
    numeric timestamps (``s`` or ``ms``); text timestamps are parsed as dates. Ratings are divided
    by ``rating_scale`` (default: the largest rating in the file), so that they weigh in (0, 1].
    """

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"
    weight: str = "weight"
    rating: str = "rating"
    event_type: str = "event_type"
    event_weights: Mapping[str, float] | None = None
    timestamp_unit: str = "s"
    rating_scale: float | None = None

    def __post_init__(self):
        _check_names(self, ("user_id", "item_id", "timestamp", "weight", "rating", "event_type"))
        if self.timestamp_unit not in UNIT_SECONDS:
            raise InputError(f"timestamp_unit={self.timestamp_unit!r} is not supported; use 's' or 'ms'")
        if self.rating_scale is not None and not (_is_number(self.rating_scale) and 0 < self.rating_scale < math.inf):
            raise InputError(f"rating_scale={self.rating_scale!r} should be a finite number > 0")
        for name, value in (self.event_weights or {}).items():
            if not (_is_number(value) and 0 <= value < math.inf):
                raise InputError(f"event weight for {name!r} is {value!r}; weights must be finite numbers >= 0")

    @classmethod
    def from_option(cls, text: str, *, flag: str = "--event-columns", **fixed) -> "EventColumns":
        """Parse the command-line option ``"user_id=uid,timestamp=ts,timestamp_unit=ms"``; the
        ``fixed`` fields (``event_weights``, a ``rating_scale`` of its own option) are not keys of it."""
        mapping = parse_mapping(text, what=flag)
        mapping = _known_keys(cls, mapping, flag, exclude=("event_weights", *fixed))
        if "rating_scale" in mapping:
            try:
                mapping["rating_scale"] = float(mapping["rating_scale"])
            except ValueError:
                raise InputError(f"{flag}: rating_scale={mapping['rating_scale']!r} is not a number") from None
        return cls(**mapping, **fixed)


@dataclass(frozen=True)
class CatalogColumns:
    """Column names of a catalog file. Only ``item_id`` and ``title`` are required.

    A ``categories`` value is a path ``Books > Fiction > Crime`` (levels split on
    ``path_separator``), several paths joined by ``list_separator``, or a list of levels. ``tags``
    is a list or a string split on ``list_separator``.
    """

    item_id: str = "item_id"
    title: str = "title"
    categories: str = "categories"
    tags: str = "tags"
    description: str = "description"
    path_separator: str = ">"
    list_separator: str = "|"

    def __post_init__(self):
        _check_names(self, ("item_id", "title", "categories", "tags", "description"))
        if not isinstance(self.path_separator, str) or not self.path_separator:
            raise InputError(f"path_separator={self.path_separator!r} should be a non-empty string, e.g. '>'")
        if not isinstance(self.list_separator, str):
            raise InputError(f"list_separator={self.list_separator!r} should be a string, e.g. '|'")

    @classmethod
    def from_option(cls, text: str, *, flag: str = "--catalog-columns") -> "CatalogColumns":
        """Parse the command-line option ``"item_id=sku,title=name,categories=path"``."""
        return cls(**_known_keys(cls, parse_mapping(text, what=flag), flag))


def parse_mapping(text: str, *, what: str, numeric: bool = False) -> dict:
    """Parse ``"a=x,b=y"`` (a CLI option) into a dict; values become floats with ``numeric``."""
    result = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{what}: {part!r} is not of the form name=value; example: a=x,b=y")
        if numeric:
            try:
                result[key.strip()] = float(value)
            except ValueError:
                raise InputError(f"{what}: value {value!r} for {key!r} is not a number") from None
            if not 0 <= result[key.strip()] < math.inf:
                raise InputError(f"{what}: value {value!r} for {key!r} should be a finite number >= 0")
        else:
            result[key.strip()] = value.strip()
    return result


def optional_columns(frame: pd.DataFrame, columns, names: tuple[str, ...], source: str, fix: str) -> dict[str, str]:
    """``{field: column}`` for the optional fields of ``columns`` (an :class:`EventColumns` or
    :class:`CatalogColumns`) that ``frame`` has; a column name changed from its default must exist."""
    defaults = type(columns)()
    found = {}
    for name in names:
        column = getattr(columns, name)
        if column in frame.columns:
            found[name] = column
        elif column != getattr(defaults, name):
            check_columns(source, frame.columns, [column], fix=fix)
    return found


def show_value(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)
