"""The inputs of ``tastemap recommend``, ``tastemap evaluate`` and ``tastemap demo``, assembled once.

:func:`load_inputs` reads the events and the catalog (or the built-in MovieLens sample),
optionally samples users, aligns the events with the catalog and embeds the item texts (or loads
precomputed vectors), and returns :class:`Inputs`: what the estimators' ``fit`` takes.

>>> inputs = load_inputs(sample=50)                                           # doctest: +SKIP
>>> TastemapRecommender().fit(inputs.interactions, inputs.catalog, inputs.item_vectors)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tastemap.errors import InputError

if TYPE_CHECKING:
    from tastemap.runtime.io.events import CatalogColumns, DataReport, EventColumns
    from tastemap.runtime.io.interactions import Interactions


@dataclass
class Inputs:
    """Aligned inputs of one run.

    ``interactions`` (the events aligned with the catalog: item index ``i`` is catalog row ``i``),
    ``catalog`` (``n_items`` rows, as from ``read_catalog``), ``item_vectors`` float32
    ``[n_items, dim]`` in catalog order, ``report`` (events kept and dropped), the ``encoder``
    that embedded the items (None with precomputed vectors) and the ``rating_scale`` ratings were
    divided by (None without ratings).
    """

    interactions: Interactions
    catalog: pd.DataFrame
    item_vectors: np.ndarray
    report: DataReport
    encoder: object | None = None
    rating_scale: float | None = None


def sample_users(events: pd.DataFrame, catalog: pd.DataFrame, n_users: int, *, seed: int = 0):
    """Keep the events of ``n_users`` users drawn with ``seed``, and the catalog items they touched."""
    users = np.unique(events["user_id"].to_numpy())
    if not 1 <= n_users:
        raise InputError(f"sample={n_users} should be >= 1 users")
    if n_users < users.size:
        chosen = np.random.default_rng(seed).choice(users, n_users, replace=False)
        events = events[events["user_id"].isin(chosen)]
        catalog = catalog[catalog["item_id"].isin(events["item_id"].unique())].reset_index(drop=True)
    return events.reset_index(drop=True), catalog


def load_inputs(
    events_path: Path | None = None,
    catalog_path: Path | None = None,
    *,
    model_dir: Path | None = None,
    vectors_path: Path | None = None,
    cache_dir: Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    export_missing: bool = False,
    event_columns: EventColumns | None = None,
    catalog_columns: CatalogColumns | None = None,
    template: str | None = None,
    device: str = "auto",
) -> Inputs:
    """Read events and catalog (default: the built-in MovieLens sample), optionally sample users,
    and embed the item texts with the model package at ``model_dir`` (default
    :func:`tastemap.paths.default_model_dir`; exported first when ``export_missing``), or load ``vectors_path``
    (``.npy`` ``[n_items, dim]`` in catalog order). ``event_columns`` and ``catalog_columns`` name
    the columns of the files (default: the standard names); ``template`` renders the item texts
    (default: :data:`~tastemap.runtime.io.events.DEFAULT_TEMPLATE`); ``device`` is the encoder's."""
    from tastemap.runtime.io.events import (
        DEFAULT_TEMPLATE,
        CatalogColumns,
        EventColumns,
        align_events,
        load_movielens,
        read_catalog,
        read_events,
        render_item_texts,
    )

    if (events_path is None) != (catalog_path is None):
        raise InputError("give both EVENTS and CATALOG files, or neither for the built-in MovieLens sample")
    if events_path is None:
        events, catalog = load_movielens()
    else:
        events = read_events(events_path, event_columns or EventColumns())
        catalog = read_catalog(catalog_path, catalog_columns or CatalogColumns())
    rating_scale = events.attrs.get("rating_scale")
    if sample is not None:
        if vectors_path is not None:
            raise InputError("--sample cannot be combined with precomputed --vectors (rows would not match)")
        events, catalog = sample_users(events, catalog, sample, seed=seed)
    interactions, report = align_events(events, catalog)
    encoder = None
    if vectors_path is not None:
        from tastemap.runtime.io.vectors import load_item_vectors

        vectors = load_item_vectors(vectors_path, n_items=len(catalog))
    else:
        from tastemap.runtime.encode.default_encoder import make_encoder

        encoder = make_encoder(model_dir, cache_dir=cache_dir, export_missing=export_missing, device=device)
        vectors = encoder.encode(render_item_texts(catalog, DEFAULT_TEMPLATE if template is None else template))
    return Inputs(interactions=interactions, catalog=catalog, item_vectors=np.asarray(vectors, np.float32),
                  report=report, encoder=encoder, rating_scale=rating_scale)
