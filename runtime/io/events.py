"""Events readers: CSV, Parquet or JSONL in, validated canonical tables out; their alignment with
the catalog; and the built-in MovieLens sample.

:func:`read_events` returns a frame with the columns ``user_id, item_id, timestamp`` (int64
seconds) and ``weight`` (float32 feedback weight: explicit weight x event-type weight x rating
scaled to (0, 1]). :func:`align_events` matches events to the catalog (read by
:func:`~tastemap.runtime.io.catalog.read_catalog`) and returns the shared
:class:`~tastemap.runtime.io.interactions.Interactions` plus a :class:`DataReport` that counts the
events dropped as duplicates or for items missing from the catalog. The column names of both files
are :mod:`~tastemap.runtime.io.columns`; the catalog and column names are importable from here too.

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

import tastemap
from tastemap.errors import InputError
from tastemap.runtime.io.catalog import (  # noqa: F401 (the catalog reader, importable from here too)
    check_catalog_frame,
    read_catalog,
    validate_catalog,
)
from tastemap.runtime.io.columns import (  # noqa: F401 (the column names, importable from here too)
    EVENT_COLUMNS_FIX,
    UNIT_SECONDS,
    CatalogColumns,
    EventColumns,
    optional_columns,
    parse_mapping,
    show_value,
)
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.item_texts import (  # noqa: F401 (the item texts, importable from here too)
    DEFAULT_TEMPLATE,
    check_template,
    render_item_texts,
    template_words,
)
from tastemap.runtime.io.tables import check_columns, empty_table, normalize_ids, read_table, row_error

logger = logging.getLogger(__name__)

MOVIELENS_DIR = Path(tastemap.__file__).parent / "data" / "movielens-small"
MOVIELENS_RATINGS = "ratings.csv.gz"
EARLIEST, LATEST = -2_208_988_800, 7_258_118_400
"""Plausible timestamps, seconds since the epoch: 1900-01-01 to 2200-01-01 (UTC)."""
MOVIELENS_COLUMNS = EventColumns(user_id="userId", item_id="movieId", rating="rating", rating_scale=5.0)
"""How MovieLens ``ratings.csv.gz`` (in :data:`MOVIELENS_DIR`) maps to events: stars 0.5 to 5 weigh stars / 5."""


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
    optional = optional_columns(frame, columns, ("weight", "rating", "event_type"), source, EVENT_COLUMNS_FIX)
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


def _parse_numbers(column: pd.Series, source: str) -> np.ndarray:
    values = _to_float(column)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise row_error(source, row, column.name,
                        f"value {show_value(column.iloc[row])} is not a finite number >= 0 ({int(bad.sum())} such rows)")
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
            seconds = numbers / UNIT_SECONDS[unit]
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
    return f"cannot parse timestamp {show_value(value)}"


def _implausible(value, seconds: float, unit: str, numeric: bool, count: int) -> str:
    unit_name = {"s": "seconds", "ms": "milliseconds"}[unit]
    shown = show_value(value)
    if not math.isfinite(seconds):
        return f"timestamp {shown} is not a finite number"
    year = 1970 + seconds / 31_556_952
    where = f"year {year:.0f}" if abs(year) < 1e6 else "far beyond any date"
    text = f"timestamp {shown} is {where}"
    if numeric:
        text += f" when read as {unit_name} since the epoch"
        as_ms = seconds * UNIT_SECONDS[unit] / 1_000
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
        raise row_error(source, row, column.name, f"event type {show_value(column.iloc[row])} has no weight; "
                        f"known types: {sorted(weights)}; add it, e.g. --event-weights {column.iloc[row]}=1")
    return mapped.to_numpy(np.float64)


def _users_without_weight(user_ids: np.ndarray, weights: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The users all of whose kept events weigh 0."""
    if kept.all() and (weights > 0).all():
        return np.zeros(0, dtype=user_ids.dtype)
    best = pd.Series(weights[kept]).groupby(pd.Series(user_ids[kept]), sort=True).max()
    return best.index[(best <= 0).to_numpy()].to_numpy()


def _id_kind(values: np.ndarray) -> str:
    return "int" if np.issubdtype(values.dtype, np.integer) else "other"
