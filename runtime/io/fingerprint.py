"""Content hashes of validated events and catalog tables: which data a model was trained on.

:func:`training_data_sha256` identifies the content a fine-tune used: the events (user, item,
timestamp, weight; order-independent) and the text of every item those events name. Items the
events never name do not enter the hash, so a catalog that also lists held-out items hashes the
same as one that does not.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

from tastemap.errors import InputError

_EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "weight")


def training_data_sha256(events: pd.DataFrame, catalog: pd.DataFrame, texts: Sequence[str]) -> str:
    """Hex sha256 of ``events`` (validated frame, see :func:`~tastemap.runtime.io.events.read_events`)
    and of the ``texts`` ``[n_catalog_items]`` (catalog order) of the items the events name.

    Row order does not matter: events are sorted first. Weights are rounded to 6 decimals.
    """
    missing = [c for c in _EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise InputError(f"events frame lacks column(s) {missing}; validate it with read_events or validate_events")
    if len(texts) != len(catalog):
        raise InputError(f"texts has {len(texts)} entries but the catalog has {len(catalog)} rows; pass one text per row")
    canonical = pd.DataFrame({
        "user_id": events["user_id"].astype(str).to_numpy(),
        "item_id": events["item_id"].astype(str).to_numpy(),
        "timestamp": events["timestamp"].to_numpy(np.int64),
        "weight": np.round(events["weight"].to_numpy(np.float64), 6),
    }).sort_values(["user_id", "item_id", "timestamp", "weight"], kind="stable")
    digest = hashlib.sha256(b"events\n")
    digest.update(canonical.to_csv(index=False, header=False, float_format="%.6f").encode())
    catalog_ids = catalog["item_id"].astype(str).to_numpy()
    used = np.isin(catalog_ids, canonical["item_id"].unique())
    order = np.argsort(catalog_ids[used], kind="stable")
    digest.update(b"items\n")
    for item_id, text in zip(catalog_ids[used][order], np.asarray(texts, dtype=object)[used][order]):
        digest.update(f"{item_id}\t{text}\n".encode())
    return digest.hexdigest()


def training_sha256(events: pd.DataFrame, catalog: pd.DataFrame, template: str | None = None) -> str:
    """:func:`training_data_sha256` with the item texts rendered by ``template`` (default: the
    runtime's template): the hash a fine-tune on ``events`` records."""
    from tastemap.runtime.io.events import DEFAULT_TEMPLATE, render_item_texts

    return training_data_sha256(events, catalog, render_item_texts(catalog, template or DEFAULT_TEMPLATE))
