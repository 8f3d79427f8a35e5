"""What the estimators share: input checks and the fitted check.

The profiler, the segmenter and the recommenders are scikit-learn estimators
(:class:`sklearn.base.BaseEstimator`): ``__init__`` stores keyword-only parameters, data goes to
``fit``, fitted state ends in ``_``. This module holds what their public methods use to validate:

- :func:`as_catalog` and :func:`as_events` accept the frames of ``read_catalog`` /
  ``read_events`` unchanged and validate plain frames (only ``item_id, title`` and
  ``user_id, item_id, timestamp`` required);
- :func:`check_fitted` raises :class:`NotFittedError` (a
  :class:`sklearn.exceptions.NotFittedError` and a project :class:`~tastemap.errors.InputError`)
  when an estimator is used before ``fit``.
"""

from __future__ import annotations

import pandas as pd
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from tastemap.errors import InputError
from tastemap.runtime.io.events import validate_catalog, validate_events

EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "weight")


class NotFittedError(InputError, _SklearnNotFittedError):
    """An estimator used before ``fit``; ``except sklearn.exceptions.NotFittedError`` catches it."""


def check_fitted(estimator, attribute: str, fit_call: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has the fitted ``attribute`` (the one
    ``fit`` sets last); ``fit_call`` (``"fit(train)"``) goes into the message as the fix."""
    try:
        check_is_fitted(estimator, attribute)
    except _SklearnNotFittedError:
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call {fit_call} first") from None


def as_catalog(catalog: pd.DataFrame) -> pd.DataFrame:
    """The catalog in the form :func:`~tastemap.runtime.io.events.read_catalog` returns: ``item_id,
    title, categories`` (a list of path tuples per item), ``tags`` (a list of str) and
    ``description`` (str), one row per item, in the given order.

    A frame already in that form is returned unchanged. Otherwise (only ``item_id`` and ``title``
    required; ``categories`` as ``A > B`` strings, lists of levels or lists of paths, ``tags`` as
    strings or lists) it goes through :func:`~tastemap.runtime.io.events.validate_catalog`, which
    fills missing columns empty.
    """
    if not isinstance(catalog, pd.DataFrame):
        raise InputError(f"catalog should be a pandas DataFrame with item_id and title columns; "
                         f"got {type(catalog).__name__}")
    ready = {name: _CANONICAL[name](catalog[name]) for name in _CANONICAL if name in catalog.columns}
    if {"item_id", "title"} <= set(catalog.columns) and len(ready) == len(_CANONICAL) and all(ready.values()):
        return catalog
    return validate_catalog(catalog, source="catalog")


def as_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events in the form :func:`~tastemap.runtime.io.events.read_events` returns: ``user_id,
    item_id, timestamp`` (int64 seconds) and ``weight`` (float). A frame already in that form is
    returned unchanged; any other frame (only ``user_id, item_id, timestamp`` required; ``weight``,
    ``rating`` and ``event_type`` used when present) goes through
    :func:`~tastemap.runtime.io.events.validate_events`."""
    if not isinstance(events, pd.DataFrame):
        raise InputError(f"events should be a pandas DataFrame (user_id, item_id, timestamp) or Interactions; "
                         f"got {type(events).__name__}")
    if (set(EVENT_COLUMNS) <= set(events.columns) and not {"rating", "event_type"} & set(events.columns)
            and pd.api.types.is_integer_dtype(events["timestamp"])
            and pd.api.types.is_float_dtype(events["weight"])):
        return events
    return validate_events(events, source="events")


def _are_paths(column: pd.Series) -> bool:
    return all(isinstance(paths, list) and all(isinstance(path, tuple) for path in paths) for paths in column)


def _are_lists(column: pd.Series) -> bool:
    return all(isinstance(tags, list) for tags in column)


def _are_texts(column: pd.Series) -> bool:
    return all(isinstance(text, str) for text in column.to_numpy())


_CANONICAL = {"categories": _are_paths, "tags": _are_lists, "description": _are_texts}
