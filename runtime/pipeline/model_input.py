"""New events for a fitted model, read by the rules the fit read its own with.

Ids take the model's id type (:func:`like_model_ids`): a model of integer ids takes integers and
integers as written (``"7"``), never ``"7.5"``, ``"007"`` or floats, which every other command
refuses as well. Ratings are divided by the scale the fit used and recorded
(:func:`update_rating_scale`, :func:`check_rating_scale`), never by the update file's own largest.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tastemap.errors import InputError

_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


def like_model_ids(values: np.ndarray, reference: np.ndarray, what: str) -> np.ndarray:
    """``values`` as the model's id type. A model of integer ids takes integers and strings that
    are integers as written (``"7"``; ``"7.5"``, ``"007"`` and floats are refused, as every command
    refuses them); a model of string ids takes integers as their text."""
    values = np.asarray(values)
    if np.issubdtype(reference.dtype, np.integer):
        if np.issubdtype(values.dtype, np.integer):
            return values.astype(np.int64)
        return _integer_ids(values, what)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(str).astype(object)
    return values


def _integer_ids(values: np.ndarray, what: str) -> np.ndarray:
    """int64 ids parsed from integers and integer strings; anything else is an :class:`InputError`."""
    out = np.empty(values.size, np.int64)
    for row, value in enumerate(values.tolist()):
        if isinstance(value, int) and not isinstance(value, bool):
            out[row] = value
        elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            out[row] = int(value)
        else:
            raise InputError(f"new {what} ids such as {value!r} are not integers (row {row + 1}); this model's {what} "
                             "ids are integers: give whole numbers as written (e.g. 7), or fit the model on string ids")
    return out


def check_rating_scale(recorded: float | None, events: pd.DataFrame) -> None:
    """Refuse new ``events`` whose ratings were divided by their own largest rating because the
    model records no rating scale (their weights would not be those of the fit)."""
    used = events.attrs.get("rating_scale")
    if recorded is None and used is not None:
        raise InputError(f"the new events have ratings (scaled by their largest, {used:g}), but the model records no "
                         "rating scale (it was fitted on events without ratings); give the scale to divide them by "
                         "(--rating-scale), or give a weight column instead of the ratings")


def update_rating_scale(recorded: float | None, given: float | None) -> float | None:
    """The rating scale of an update: the one recorded at fit; ``given`` only where none is
    recorded (a different one would weigh the new ratings unlike the fitted ones)."""
    if given is not None and recorded is not None and float(given) != float(recorded):
        raise InputError(f"rating_scale={given:g} differs from the scale recorded at fit ({recorded:g}); ratings "
                         "of an update are divided by the fit's scale: drop the option")
    return recorded if recorded is not None else given
