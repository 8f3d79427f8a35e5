"""Events encoded to dense user and item indices, the common input of recommenders and evaluation.

An :class:`Interactions` holds one row per event (user index, item index, timestamp, weight) and
the two vocabularies that map indices back to the caller's ids. Splits keep the vocabularies, so
item index ``i`` means the same item in the train and test parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.tables import check_columns


@dataclass(frozen=True)
class Interactions:
    """Events as parallel arrays over ``n_events`` plus the id vocabularies.

    Attributes: ``users`` and ``items`` int64 ``[n_events]`` (indices into ``user_ids`` and
    ``item_ids``), ``timestamps`` int64 ``[n_events]`` (seconds), ``weights`` float32
    ``[n_events]``, ``user_ids`` ``[n_users]`` and ``item_ids`` ``[n_items]`` (original ids;
    ``item_ids`` is the whole catalogue, items without events included).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def n_events(self) -> int:
        return int(self.users.size)

    @classmethod
    def from_frame(
        cls,
        events: pd.DataFrame,
        *,
        item_ids: np.ndarray | None = None,
        user_col: str = "user_id",
        item_col: str = "item_id",
        time_col: str = "timestamp",
        weight_col: str | None = None,
    ) -> "Interactions":
        """Encode an events table. ``item_ids`` fixes the catalogue (default: the items seen).

        Events whose item is not in ``item_ids`` are an error, so that nothing is dropped silently.
        """
        wanted = [user_col, item_col, time_col] + ([weight_col] if weight_col is not None else [])
        check_columns("events table", events.columns, wanted, fix="rename them or pass user_col=, item_col=, time_col=")
        if events.empty:
            raise InputError("events table is empty; need at least one event")
        user_ids, users = np.unique(events[user_col].to_numpy(), return_inverse=True)
        if item_ids is None:
            item_ids, items = np.unique(events[item_col].to_numpy(), return_inverse=True)
        else:
            item_ids = np.asarray(item_ids)
            lookup = pd.Index(item_ids)
            if not lookup.is_unique:
                raise InputError("item_ids contains duplicates; pass each catalogue item once")
            items = lookup.get_indexer(events[item_col].to_numpy())
            if (items < 0).any():
                unknown = events[item_col].to_numpy()[items < 0][:5].tolist()
                raise InputError(
                    f"{int((items < 0).sum())} events name items missing from the catalogue "
                    f"(first: {unknown}); add them to item_ids or drop those events"
                )
        timestamps = _to_seconds(events[time_col])
        weights = (
            np.ones(len(events), dtype=np.float32)
            if weight_col is None
            else events[weight_col].to_numpy(dtype=np.float32)
        )
        return cls(
            users=users.astype(np.int64),
            items=items.astype(np.int64),
            timestamps=timestamps,
            weights=weights,
            user_ids=user_ids,
            item_ids=item_ids,
        )

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The events where ``mask`` ``[n_events]`` is True, with the same vocabularies."""
        return Interactions(
            users=self.users[mask],
            items=self.items[mask],
            timestamps=self.timestamps[mask],
            weights=self.weights[mask],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    def to_frame(self) -> pd.DataFrame:
        """The events as a validated-style frame (``user_id, item_id, timestamp, weight``; original
        ids, timestamps in seconds): what a fine-tune on this part is given and hashed from."""
        return pd.DataFrame({"user_id": self.user_ids[self.users], "item_id": self.item_ids[self.items],
                             "timestamp": self.timestamps, "weight": self.weights.astype(np.float64)})

    def matrix(self, *, binary: bool = True) -> sparse.csr_matrix:
        """User-item matrix ``[n_users, n_items]`` float32: 1 per interacted pair, or summed weights."""
        values = np.ones(self.n_events, np.float32) if binary else self.weights
        matrix = sparse.csr_matrix(
            (values, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        matrix.sum_duplicates()
        if binary:
            matrix.data[:] = 1.0
        return matrix

    def chronological_order(self) -> np.ndarray:
        """Event order sorted by user, then timestamp, then item index (deterministic ties)."""
        return np.lexsort((self.items, self.timestamps, self.users))


def _to_seconds(column: pd.Series) -> np.ndarray:
    """int64 seconds from datetimes (naive ones are UTC; any unit) or finite numbers of seconds."""
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.isna().any():
            raise InputError(f"timestamp column {column.name!r} has missing values (NaT); every event needs a time")
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return column.to_numpy().astype("datetime64[s]").astype(np.int64)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(np.float64, na_value=np.nan)
        if not np.isfinite(values).all():
            raise InputError(f"timestamp column {column.name!r} holds missing or non-finite values; "
                             "every event needs a finite time")
        return np.floor(values).astype(np.int64)
    raise InputError(
        f"timestamp column {column.name!r} has dtype {column.dtype}; use seconds since the epoch or datetimes"
    )
