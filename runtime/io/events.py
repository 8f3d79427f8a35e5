"""Events and catalog readers: CSV, Parquet or JSONL in, validated canonical tables out.

:func:`read_events` returns a frame with the columns ``user_id, item_id, timestamp`` (int64
seconds) and ``weight`` (float32 feedback weight: explicit weight x event-type weight x rating
scaled to (0, 1]). :func:`read_catalog` returns ``item_id, title, categories`` (a list of paths per
item, each path a tuple of levels, coarse to fine), ``tags`` (list of str) and ``description``.
:func:`align_events` matches events to the catalog and returns the shared
:class:`~tastemap.runtime.io.interactions.Interactions` plus a :class:`DataReport` that counts the
events dropped as duplicates or for items missing from the catalog.

Files are read by :func:`tastemap.runtime.io.tables.read_table`; errors name the file, the
(1-based, header excluded) data row and the column. Ids follow
:func:`~tastemap.runtime.io.tables.normalize_ids` (strings as written, unless the file types them
as integers); numbers must be finite; integer timestamps must be plausible for their unit (years
1900 to 2200), so that milliseconds read as seconds are an error, not a wrong answer.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

import tastemap
from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.tables import check_columns, empty_table, normalize_ids, read_table, row_error

logger = logging.getLogger(__name__)

MOVIELENS_DIR = Path(tastemap.__file__).parent / "data" / "movielens-small"
MOVIELENS_RATINGS = "ratings.csv.gz"
DEFAULT_TEMPLATE = "{title}. {categories}. Tags: {tags}. {description}"
TEMPLATE_FIELDS = ("item_id", "title", "categories", "tags", "description")
EVENT_COLUMNS_FIX = "rename them or pass the column names (EventColumns; --event-columns on the command line)"
CATALOG_COLUMNS_FIX = "rename them or pass the column names (CatalogColumns; --catalog-columns on the command line)"
EARLIEST, LATEST = -2_208_988_800, 7_258_118_400
"""Plausible timestamps, seconds since the epoch: 1900-01-01 to 2200-01-01 (UTC)."""
_UNIT_SECONDS = {"s": 1, "ms": 1_000}


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
        if self.timestamp_unit not in _UNIT_SECONDS:
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


MOVIELENS_COLUMNS = EventColumns(user_id="userId", item_id="movieId", rating="rating", rating_scale=5.0)
"""How MovieLens ``ratings.csv.gz`` (in :data:`MOVIELENS_DIR`) maps to events: stars 0.5 to 5 weigh stars / 5."""


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


@dataclass(frozen=True)
class DataReport:
    """What :func:`align_events` kept and dropped. Dropped events are counted, never silent."""

    n_events_read: int
    n_duplicates: int
    n_unknown_items: int
    n_events: int
    n_users: int
    n_items: int
    n_items_with_events: int
    unknown_item_examples: list = field(default_factory=list)
    n_users_without_weight: int = 0

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


def read_events(path: str | Path, columns: EventColumns = EventColumns()) -> pd.DataFrame:
    """Read and validate an events file.

    Returns a frame with ``user_id``, ``item_id``, ``timestamp`` (int64 seconds) and ``weight``
    (float32 >= 0), one row per input row, in file order. ``frame.attrs["rating_scale"]`` is
    what ratings were divided by (``columns.rating_scale``, else the largest rating), None
    without a rating column: a fitted model records it so that its updates use the same.
    """
    frame = read_table(path, what="events")
    return validate_events(frame, columns, source=str(path))


def validate_events(frame: pd.DataFrame, columns: EventColumns = EventColumns(), *, source: str = "events") -> pd.DataFrame:
    """Validate an in-memory events frame (see :func:`read_events`)."""
    if frame.empty:
        raise empty_table(source)
    frame = frame.reset_index(drop=True)
    required = [columns.user_id, columns.item_id, columns.timestamp]
    check_columns(source, frame.columns, required, fix=EVENT_COLUMNS_FIX)
    optional = _optional_columns(frame, columns, ("weight", "rating", "event_type"), source, EVENT_COLUMNS_FIX)
    out = pd.DataFrame({"user_id": normalize_ids(frame[columns.user_id], source, columns.user_id),
                        "item_id": normalize_ids(frame[columns.item_id], source, columns.item_id)})
    out["timestamp"] = _parse_timestamps(frame[columns.timestamp], columns.timestamp_unit, source)
    weight, scale = np.ones(len(frame), dtype=np.float64), None
    if "weight" in optional:
        weight *= _parse_numbers(frame[optional["weight"]], source)
    if "rating" in optional:
        rating = _parse_numbers(frame[optional["rating"]], source)
        scale = columns.rating_scale or float(rating.max())
        weight *= rating / scale if scale > 0 else rating
    if "event_type" in optional:
        weight *= _event_type_weights(frame[optional["event_type"]], columns.event_weights, source)
    too_large = ~(weight <= np.finfo(np.float32).max)
    if too_large.any():
        row = int(np.flatnonzero(too_large)[0])
        column = next((optional[name] for name in ("weight", "rating", "event_type") if name in optional), "weight")
        raise row_error(source, row, column, f"the event's weight {weight[row]:g} is too large (at most "
                        f"{np.finfo(np.float32).max:.3g}); scale the weights down")
    out["weight"] = weight.astype(np.float32)
    if not (out["weight"].to_numpy() > 0).any():
        raise InputError(f"{source}: every event weighs 0 (weight x rating x event-type weight); at least one "
                         "event needs a weight > 0 to say what a user likes")
    out.attrs["rating_scale"] = scale
    return out


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
    optional = _optional_columns(frame, columns, ("categories", "tags", "description"), source, CATALOG_COLUMNS_FIX)
    ids = pd.Series(normalize_ids(frame[columns.item_id], source, columns.item_id))
    duplicated = ids.duplicated(keep="first").to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise row_error(source, row, columns.item_id,
                        f"item_id {_show(ids.iloc[row])} appears more than once (first in row {first + 1}); "
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


def align_events(events: pd.DataFrame, catalog: pd.DataFrame) -> tuple[Interactions, DataReport]:
    """Match validated events to catalog rows.

    Exact duplicates (same user, item and timestamp) are dropped and counted; events whose item is
    missing from the catalog are dropped, counted and logged with examples. Returns the remaining
    events as :class:`Interactions` (``item_ids`` is the whole catalog, in catalog order; users are
    the sorted distinct user ids) and the :class:`DataReport`.
    """
    n_read = len(events)
    duplicated = events.duplicated(["user_id", "item_id", "timestamp"]).to_numpy()
    events = events.loc[~duplicated]
    item_ids = catalog["item_id"].to_numpy()
    event_items = events["item_id"].to_numpy()
    if _id_kind(item_ids) != _id_kind(event_items):
        item_ids, event_items = item_ids.astype(str), event_items.astype(str)
    items = pd.Index(item_ids).get_indexer(event_items)
    unknown = items < 0
    examples = pd.unique(event_items[unknown])[:5].tolist()
    if unknown.any():
        logger.warning("%d events name items missing from the catalog (e.g. %s); they are dropped",
                       int(unknown.sum()), examples)
    if duplicated.any():
        logger.warning("%d duplicate events (same user, item, timestamp) are dropped", int(duplicated.sum()))
    known = ~unknown
    if not known.any():
        raise InputError(
            f"none of the {n_read} events name an item of the catalog (e.g. {examples}); "
            "check that the item_id columns of both files hold the same ids"
        )
    weightless = _users_without_weight(events["user_id"].to_numpy(), events["weight"].to_numpy(), known)
    if weightless.size:
        logger.warning("%d users have no event with a weight > 0 (e.g. %s); they say nothing about what they like "
                       "and are dropped", weightless.size, weightless[:5].tolist())
        known &= ~np.isin(events["user_id"].to_numpy(), weightless)
        if not known.any():
            raise InputError(f"no user has an event with a weight > 0 on a catalog item (e.g. users "
                             f"{weightless[:5].tolist()}); give the events positive weights")
    user_ids, users = np.unique(events["user_id"].to_numpy()[known], return_inverse=True)
    interactions = Interactions(
        users=users.astype(np.int64),
        items=items[known].astype(np.int64),
        timestamps=events["timestamp"].to_numpy(np.int64)[known],
        weights=events["weight"].to_numpy(np.float32)[known],
        user_ids=user_ids,
        item_ids=catalog["item_id"].to_numpy(),
    )
    report = DataReport(
        n_events_read=n_read,
        n_duplicates=int(duplicated.sum()),
        n_unknown_items=int(unknown.sum()),
        n_events=interactions.n_events,
        n_users=interactions.n_users,
        n_items=len(catalog),
        n_items_with_events=int(np.unique(interactions.items).size),
        unknown_item_examples=[str(x) for x in examples],
        n_users_without_weight=int(weightless.size),
    )
    return interactions, report


def render_item_texts(catalog: pd.DataFrame, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One text per catalog row from ``template`` (fields: item_id, title, categories, tags,
    description). Categories render as ``A > B`` paths joined by ``, ``; tags joined by ``, ``.
    Sentences left empty by missing fields are removed.
    """
    check_template(template)
    texts = []
    for row in catalog[list(TEMPLATE_FIELDS)].itertuples(index=False):
        text = template.format(
            item_id=row.item_id,
            title=row.title,
            categories=", ".join(" > ".join(path) for path in row.categories),
            tags=", ".join(row.tags),
            description=row.description,
        )
        texts.append(_tidy(text))
    return texts


def check_template(template: str) -> None:
    """Raise :class:`InputError` unless ``template`` is a text template :func:`render_item_texts`
    can fill: balanced braces, only the fields of :data:`TEMPLATE_FIELDS`, no conversion or format."""
    if not isinstance(template, str):
        raise InputError(f"text template should be a string, got {type(template).__name__}")
    fix = "write fields as {title}, and a literal brace as {{ or }}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"text template {template!r} is not valid: {exc}; {fix}") from None
    used = {name for _, name, _, _ in parts if name is not None}
    unknown = sorted(used - set(TEMPLATE_FIELDS))
    if unknown:
        raise InputError(f"text template uses unknown field(s) {unknown}; allowed: {list(TEMPLATE_FIELDS)}; {fix}")
    if any(spec or conversion for _, name, spec, conversion in parts if name is not None):
        raise InputError(f"text template {template!r} formats a field ({{name:spec}} or {{name!r}}); "
                         f"use plain fields such as {{title}}")


def template_words(template: str) -> list[str]:
    """The words of a template's literal text (``Tags`` in ``"{title}. Tags: {tags}"``), which say
    nothing about an item and are kept out of topic keywords."""
    literal = " ".join(text for text, _, _, _ in string.Formatter().parse(template))
    return sorted(set(re.findall(r"[^\W\d_]{2,}", literal.lower())))


def load_movielens(path: str | Path = MOVIELENS_DIR, *, max_tags: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MovieLens sample as validated (events, catalog).

    Ratings are the events (weight = rating / 5); genres are one-level categories (``(no genres
    listed)`` gives none); the ``max_tags`` most frequent user tags of a movie (lower-cased) are its
    tags. Returns frames in the formats of :func:`read_events` and :func:`read_catalog`.
    """
    path = Path(path)
    # MovieLens ids are integers by its README: the sample is read with them as such.
    ratings = read_table(path / MOVIELENS_RATINGS, what="ratings").astype({"userId": np.int64, "movieId": np.int64})
    movies = read_table(path / "movies.csv.gz", what="movies").astype({"movieId": np.int64})
    tags = read_table(path / "tags.csv.gz", what="tags").astype({"userId": np.int64, "movieId": np.int64})
    events = validate_events(ratings, MOVIELENS_COLUMNS, source=str(path / MOVIELENS_RATINGS))
    tags = tags.assign(tag=lambda t: t["tag"].astype(str).str.strip().str.lower()).query("tag != ''")
    counts = tags.groupby(["movieId", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    top = counts.groupby("movieId").head(max_tags).groupby("movieId")["tag"].agg(list)
    genres = movies["genres"].replace("(no genres listed)", "")
    catalog = pd.DataFrame({
        "item_id": movies["movieId"].to_numpy(),
        "title": movies["title"].to_numpy(),
        "categories": genres.to_numpy(),
        "tags": [top.get(m, []) for m in movies["movieId"].to_numpy()],
    })
    return events, validate_catalog(catalog, source=str(path / "movies.csv.gz"))


def _optional_columns(frame: pd.DataFrame, columns, names: tuple[str, ...], source: str, fix: str) -> dict[str, str]:
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


def _parse_numbers(column: pd.Series, source: str) -> np.ndarray:
    values = _to_float(column)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise row_error(source, row, column.name,
                        f"value {_show(column.iloc[row])} is not a finite number >= 0 ({int(bad.sum())} such rows)")
    return values


def _to_float(column: pd.Series) -> np.ndarray:
    """``[n]`` float64: numbers as they are, numeric strings parsed, NaN for anything else
    (booleans included: True is not a number here)."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return np.full(len(column), np.nan)
    if pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    objects = column.to_numpy(dtype=object)
    if all(isinstance(value, str) for value in objects):
        return pd.to_numeric(pd.Series(objects, dtype=object).str.strip(), errors="coerce").to_numpy(np.float64)
    return np.fromiter((_number_or_nan(value) for value in objects), np.float64, len(objects))


def _number_or_nan(value) -> float:
    if isinstance(value, (bool, np.bool_)):
        return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.nan
    return np.nan


def _parse_timestamps(column: pd.Series, unit: str, source: str) -> np.ndarray:
    """int64 ``[n]`` seconds since the epoch from numbers in ``unit``, datetimes or date strings."""
    column = column.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        seconds = _datetime_seconds(column, source)
        numeric = False
    else:
        numbers = _to_float(column)
        readable = ~np.isnan(numbers)
        numeric = bool(readable.any())
        if numeric:
            bad = ~readable
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise row_error(source, row, column.name, f"{_timestamp_problem(column.iloc[row])} "
                                f"({int(bad.sum())} such rows); the other rows hold numbers (time since the epoch)")
            seconds = numbers / _UNIT_SECONDS[unit]
        else:
            seconds = _datetime_seconds(_parse_dates(column), source, raw=column)
    implausible = ~((seconds >= EARLIEST) & (seconds < LATEST))
    if implausible.any():
        row = int(np.flatnonzero(implausible)[0])
        raise row_error(source, row, column.name, _implausible(column.iloc[row], seconds[row], unit, numeric,
                                                               int(implausible.sum())))
    return np.floor(seconds).astype(np.int64)


def _parse_dates(column: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(column.dtype):
        return pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    objects = column.to_numpy(dtype=object)
    dates = pd.Series([value if isinstance(value, (str, datetime.date, np.datetime64)) else None for value in objects],
                      dtype=object)
    return pd.to_datetime(dates, errors="coerce", utc=True, format="mixed")


def _datetime_seconds(parsed: pd.Series, source: str, raw: pd.Series | None = None) -> np.ndarray:
    """float64 seconds of a datetime column (naive ones are UTC); NaT is an error naming the row."""
    raw = parsed if raw is None else raw
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise row_error(source, row, raw.name, f"{_timestamp_problem(raw.iloc[row])} ({int(bad.sum())} such rows); "
                        "use seconds since the epoch or ISO 8601 dates")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    micros = parsed.to_numpy().astype("datetime64[us]").astype(np.int64)
    return micros / 1e6


def _timestamp_problem(value) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bool):
        return f"{value!r} is a boolean, not a timestamp"
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and np.isnan(value)) \
            or (isinstance(value, str) and value.strip() == ""):
        return "missing timestamp"
    return f"cannot parse timestamp {_show(value)}"


def _implausible(value, seconds: float, unit: str, numeric: bool, count: int) -> str:
    unit_name = {"s": "seconds", "ms": "milliseconds"}[unit]
    shown = _show(value)
    if not math.isfinite(seconds):
        return f"timestamp {shown} is not a finite number"
    year = 1970 + seconds / 31_556_952
    where = f"year {year:.0f}" if abs(year) < 1e6 else "far beyond any date"
    text = f"timestamp {shown} is {where}"
    if numeric:
        text += f" when read as {unit_name} since the epoch"
        as_ms = seconds * _UNIT_SECONDS[unit] / 1_000
        if unit == "s" and EARLIEST <= as_ms < LATEST:
            return (f"{text} ({count} such rows); if the timestamps are milliseconds, pass timestamp_unit=ms "
                    "(--event-columns timestamp_unit=ms)")
        if unit == "ms" and EARLIEST <= seconds * 1_000 < LATEST:
            return f"{text} ({count} such rows); if the timestamps are seconds, drop timestamp_unit=ms"
    return f"{text} ({count} such rows); timestamps should fall between 1900 and 2200"


def _event_type_weights(column: pd.Series, weights: Mapping[str, float] | None, source: str) -> np.ndarray:
    if not weights:
        logger.info("%s: column %r present but no event weights given; every type weighs 1", source, column.name)
        return np.ones(len(column))
    mapped = column.astype(str).map(dict(weights))
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise row_error(source, row, column.name, f"event type {_show(column.iloc[row])} has no weight; "
                        f"known types: {sorted(weights)}; add it, e.g. --event-weights {column.iloc[row]}=1")
    return mapped.to_numpy(np.float64)


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


def _show(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


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
            raise row_error(source, row, column.name, f"{type(value).__name__} {_show(value)} is not a text")
    return out


def _users_without_weight(user_ids: np.ndarray, weights: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The users all of whose kept events weigh 0."""
    if kept.all() and (weights > 0).all():
        return np.zeros(0, dtype=user_ids.dtype)
    best = pd.Series(weights[kept]).groupby(pd.Series(user_ids[kept]), sort=True).max()
    return best.index[(best <= 0).to_numpy()].to_numpy()


def _id_kind(values: np.ndarray) -> str:
    return "int" if np.issubdtype(values.dtype, np.integer) else "other"


def _tidy(text: str) -> str:
    text = re.sub(r"\b[A-Z][a-z]*:\s*\.", ".", text)
    text = re.sub(r"(\.\s*){2,}", ". ", text)
    return text.strip(" .") + "." if text.strip(" .") else ""
