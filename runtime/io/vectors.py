"""Precomputed item vectors: a ``.npy`` file (``numpy.save``) of one row per catalog item."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tastemap.errors import InputError

_FIX = "save a float32 [n_items, dim] array in catalog order with numpy.save (e.g. from `tastemap embed`)"


def load_item_vectors(path: str | Path, *, n_items: int | None = None) -> np.ndarray:
    """The float32 ``[n_items, dim]`` array saved at ``path``, rows in catalog order.

    ``n_items`` (the catalog's length), when given, must match the number of rows. Pickled
    objects, text, booleans, complex numbers and non-finite values are refused.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"item vectors {path} is a folder; {_FIX}")
    if not path.is_file():
        raise InputError(f"item vectors {path} do not exist; {_FIX}")
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read item vectors {path}: {exc}; {_FIX}") from None
    if not isinstance(vectors, np.ndarray):
        vectors.close()
        raise InputError(f"{path} holds several arrays (.npz); {_FIX}")
    expected = "n_items" if n_items is None else str(n_items)
    numeric = vectors.dtype.kind in "iuf"
    if vectors.ndim != 2 or not numeric or 0 in vectors.shape or (n_items is not None and vectors.shape[0] != n_items):
        raise InputError(f"{path} holds a {vectors.dtype} array of shape {vectors.shape}; "
                         f"expected numbers of shape [{expected}, dim] in catalog order")
    vectors = np.asarray(vectors, dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InputError(f"{path}: row {row + 1} holds a non-finite value (NaN or infinity); every item needs a "
                         "finite vector")
    return vectors
