"""Precomputed item vectors: a ``.npy`` file (``numpy.save``) of one row per catalog item."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tastemap.errors import InputError


def load_item_vectors(path: str | Path, *, n_items: int | None = None) -> np.ndarray:
    """The float32 ``[n_items, dim]`` array saved at ``path``, rows in catalog order.

    ``n_items`` (the catalog's length), when given, must match the number of rows. Pickled
    objects are refused.
    """
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read item vectors {path}: {exc}; save a float32 [n_items, dim] array "
                         "with numpy.save") from None
    if not isinstance(vectors, np.ndarray):
        vectors.close()
        raise InputError(f"{path} holds several arrays (.npz); save one float32 [n_items, dim] array with numpy.save")
    expected = "n_items" if n_items is None else str(n_items)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number) or (
            n_items is not None and vectors.shape[0] != n_items):
        raise InputError(f"{path} holds a {vectors.dtype} array of shape {vectors.shape}; "
                         f"expected numbers of shape [{expected}, dim] in catalog order")
    return vectors.astype(np.float32, copy=False)
