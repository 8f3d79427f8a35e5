"""User attributes in a fitted model: fitted at ``fit`` from a users table, stored as aggregates.

What a fitted model keeps is the :class:`~tastemap.runtime.recommend.attributes.AttributeModel`
only: the attribute bands and values kept (each held by at least ``min_group`` training users,
in ``model.json``'s ``fitted.attributes``) and three arrays, ``attributes.group_mean.npy``
(share of the users in each group), ``attributes.item_mean.npy`` (mean engagement with each item)
and ``attributes.coef.npy`` (``[n_groups, n_items]``). No user's attributes are stored: the
users table is read at fit and dropped. Segments gain ``top_attributes`` (groups of at least
``min_group`` users in the segment) in ``segments.parquet``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.users import UserAttributes
from tastemap.runtime.pipeline.model_io import array_writer, load_array
from tastemap.runtime.recommend.attributes import AttributeModel, add_attribute_descriptions

ARRAYS = ("group_mean", "item_mean", "coef")
RECORD = "attributes"
"""The ``fitted`` record of ``model.json`` (None for a model fitted without user attributes)."""


def fit_attributes(recommender, train: Interactions, users: UserAttributes | None, *,
                   min_group: int = 10, seed: int = 0) -> AttributeModel | None:
    """The attribute model of the training users (None without ``users``); describes the
    recommender's segments by attributes as well."""
    if users is None:
        return None
    model = AttributeModel(min_group=min_group, seed=seed).fit(users, train.matrix(), train.user_ids)
    if recommender.segmenter_ is not None:
        add_attribute_descriptions(recommender.segmenter_, users, min_group=min_group)
    return model


def attribute_files(manifest: dict) -> set[str]:
    """The files of the attribute model a version holds (none without one)."""
    return {f"{RECORD}.{name}.npy" for name in ARRAYS} if manifest["fitted"].get(RECORD) else set()


def attribute_state(model: AttributeModel | None) -> tuple[dict, dict | None]:
    """Writers of the attribute arrays and the ``fitted`` record (``({}, None)`` without a model)."""
    if model is None:
        return {}, None
    record, arrays = model.to_arrays()
    return {f"{RECORD}.{name}.npy": array_writer(arrays[name]) for name in ARRAYS}, record


def restore_attributes(root: Path, manifest: dict) -> AttributeModel | None:
    """The stored attribute model (None when the model was fitted without user attributes)."""
    record = manifest["fitted"].get(RECORD)
    if not record:
        return None
    return AttributeModel.from_arrays(record, {name: np.asarray(load_array(root / f"{RECORD}.{name}.npy"))
                                               for name in ARRAYS})
