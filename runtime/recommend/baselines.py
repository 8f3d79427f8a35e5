"""Baseline recommenders: MostPop, ItemKNN (cosine), EASE (closed form) and content models.

Every recommender follows one small protocol used by :mod:`tastemap.runtime.recommend.model_evaluation`:
``fit(train: Interactions, **data) -> self`` and ``score(users: int[n]) -> float32 [n, n_items]``,
where a higher score is a better item; the evaluation masks the items a user has already seen.
They are scikit-learn estimators: ``__init__`` takes parameters only, data (``train`` and, for
the content models, the catalog and the item vectors) goes to ``fit``.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.linalg import lapack
from sklearn.base import BaseEstimator

from tastemap.errors import InputError
from tastemap.runtime.interests.base import as_catalog, check_fitted
from tastemap.runtime.io.interactions import Interactions

logger = logging.getLogger(__name__)


class Recommender(Protocol):
    """What the evaluation needs from a recommender."""

    def fit(self, train: Interactions, **data) -> "Recommender": ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


class MostPop(BaseEstimator):
    """Scores every item by how many distinct users interacted with it in training."""

    def fit(self, train: Interactions) -> "MostPop":
        self.popularity_ = np.asarray(train.matrix().sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self, "popularity_", "fit(train)")
        return np.broadcast_to(self.popularity_, (len(users), self.popularity_.size)).copy()


class ItemKNN(BaseEstimator):
    """Item-based nearest neighbours: cosine similarity between item columns, ``n_neighbors`` kept
    per item, a user's score is the sum of similarities to the items they interacted with.

    Parameters
    ----------
    n_neighbors : int, default=100
        Most similar items kept per item.
    shrink : float, default=0.0
        Added to the cosine denominator (>= 0), damping similarities of rare items.
    """

    def __init__(self, *, n_neighbors: int = 100, shrink: float = 0.0):
        self.n_neighbors = n_neighbors
        self.shrink = shrink

    def fit(self, train: Interactions) -> "ItemKNN":
        if self.n_neighbors < 1:
            raise InputError(f"n_neighbors={self.n_neighbors} should be >= 1")
        if self.shrink < 0:
            raise InputError(f"shrink={self.shrink} should be >= 0")
        matrix = train.matrix()
        self.user_items_ = matrix
        norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
        co = (matrix.T @ matrix).toarray()
        co /= np.outer(norms, norms) + self.shrink + 1e-12
        np.fill_diagonal(co, 0.0)
        k = min(self.n_neighbors, co.shape[1] - 1)
        if k < co.shape[1] - 1:
            drop = np.argpartition(-co, k, axis=1)[:, k:]
            np.put_along_axis(co, drop, 0.0, axis=1)
        self.similarity_ = sparse.csr_matrix(co.astype(np.float32))
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self, "similarity_", "fit(train)")
        return np.asarray((self.user_items_[users] @ self.similarity_).todense(), dtype=np.float32)


class EASE(BaseEstimator):
    """Embarrassingly shallow autoencoder (Steck, 2019): item-item weights
    ``B = I - P·diag(1/diag(P))`` with ``P = (XᵀX + λI)⁻¹`` and a zero diagonal. ``weights_`` is
    ``[n_items, n_items]`` float32; a user's scores are ``x_u · B``.

    Parameters
    ----------
    l2 : float, default=500.0
        The regularisation ``λ`` (> 0).
    """

    def __init__(self, *, l2: float = 500.0):
        self.l2 = l2

    def fit(self, train: Interactions) -> "EASE":
        if self.l2 <= 0:
            raise InputError(f"l2={self.l2} should be > 0")
        self.user_items_ = train.matrix()
        self.weights_ = ease_weights(self.user_items_, l2=self.l2)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self, "weights_", "fit(train)")
        return np.asarray(self.user_items_[users] @ self.weights_, dtype=np.float32)


def ease_weights(user_items: sparse.spmatrix, *, l2: float) -> np.ndarray:
    """EASE item-item weights ``[n_items, n_items]`` float32 from a user-item matrix.

    Only items with at least one interaction enter the inversion; the other rows and columns
    are zero.
    """
    active = np.flatnonzero(np.asarray(user_items.sum(axis=0)).ravel() > 0)
    sub = user_items[:, active]
    gram = (sub.T @ sub).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += l2
    # Cholesky in float32: the Gram matrix plus l2 is symmetric positive definite, and this is
    # about twice as fast as a float64 LU inverse for the same ranking.
    factor, info = lapack.spotrf(gram, lower=False, overwrite_a=True)
    if info == 0:
        factor, info = lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise InputError(f"EASE Gram matrix is not positive definite (LAPACK info={info}); raise l2={l2}")
    inverse = np.triu(factor) + np.triu(factor, 1).T
    block = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(block, 0.0)
    weights = np.zeros((user_items.shape[1], user_items.shape[1]), dtype=np.float32)
    weights[np.ix_(active, active)] = block
    return weights


class ContentSingleVector(BaseEstimator):
    """One vector per user: the mean of the vectors of the items they interacted with; a user's
    scores are cosine similarities to their mean vector. No parameters."""

    def fit(self, train: Interactions, item_vectors: np.ndarray) -> "ContentSingleVector":
        """Mean vector per user. ``item_vectors`` ``[n_items, dim]``: unit rows aligned with the
        train item indices (catalog order)."""
        vectors = _check_vectors(item_vectors, train.n_items)
        matrix = train.matrix()
        counts = np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1.0)
        means = np.asarray(matrix @ vectors) / counts[:, None]
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        self.vectors_ = vectors
        self.user_vectors_ = (means / np.maximum(norms, 1e-12)).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self, "user_vectors_", "fit(train, item_vectors)")
        return self.user_vectors_[users] @ self.vectors_.T


class ContentLiteral(BaseEstimator):
    """One text per user, encoded: the user's ``n_recent`` most recent training items, most
    recent first, rendered as ``"Liked: Heat (1995) (Action, Crime); Toy Story (1995) (...)"``.

    All user texts go to the encoder in one call. A user's scores are cosine similarities between
    their text's vector and the item vectors; users without training events score 0 everywhere.

    Parameters
    ----------
    encoder : object with ``encode(texts: list[str]) -> float32 (n_texts, dim)``
        An :class:`~tastemap.runtime.encode.encoder.Encoder`, whose tokenizer truncates a long
        history at the model's maximum length, so the oldest of the ``n_recent`` items are the
        ones cut. Use the encoder that produced the item vectors.
    n_recent : int, default=20
        Most recent items per user rendered into the text.

    Attributes
    ----------
    texts_ : list of str, length n_users
        The rendered history texts.
    user_vectors_ : ndarray of shape (n_users, dim), float32
        Unit vectors of the texts (zero rows for users without events).
    vectors_ : ndarray of shape (n_items, dim), float32
        The item vectors.
    """

    def __init__(self, *, encoder, n_recent: int = 20):
        self.encoder = encoder
        self.n_recent = n_recent

    def fit(self, train: Interactions, catalog: pd.DataFrame, item_vectors: np.ndarray) -> "ContentLiteral":
        """Render and encode every user's history. ``catalog`` holds ``item_id, title`` (and
        optionally ``categories``) rows aligned with the train item indices; ``item_vectors`` is
        ``[n_items, dim]`` (unit rows, same order)."""
        if not isinstance(self.n_recent, int) or self.n_recent < 1:
            raise InputError(f"n_recent={self.n_recent!r} should be an integer >= 1")
        if not callable(getattr(self.encoder, "encode", None)):
            raise InputError(f"encoder={self.encoder!r} has no encode(texts) method; pass an Encoder")
        vectors = _check_vectors(item_vectors, train.n_items)
        catalog = as_catalog(catalog)
        if len(catalog) != train.n_items:
            raise InputError(
                f"catalog has {len(catalog)} rows; expected {train.n_items}, one per catalogue item"
            )
        texts = render_history_texts(train, item_labels(catalog), n_recent=self.n_recent)
        active = np.flatnonzero([bool(text) for text in texts])
        encoded = np.asarray(self.encoder.encode([texts[u] for u in active]), dtype=np.float32)
        if encoded.shape != (active.size, vectors.shape[1]):
            raise InputError(
                f"encoder returned shape {encoded.shape} for {active.size} history texts; expected "
                f"{(active.size, vectors.shape[1])}: use the encoder that produced item_vectors"
            )
        user_vectors = np.zeros((train.n_users, vectors.shape[1]), dtype=np.float32)
        user_vectors[active] = encoded / np.maximum(np.linalg.norm(encoded, axis=1, keepdims=True), 1e-12)
        self.texts_ = texts
        self.vectors_ = vectors
        self.user_vectors_ = user_vectors
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self, "user_vectors_", "fit(train, catalog, item_vectors)")
        return self.user_vectors_[users] @ self.vectors_.T


def item_labels(catalog: pd.DataFrame) -> list[str]:
    """``"<title> (<categories>)"`` per catalog row (categories as ``A > B`` paths joined by
    ``, ``; the title alone when an item has none)."""
    labels = []
    for title, paths in zip(catalog["title"], catalog["categories"]):
        categories = ", ".join(" > ".join(path) for path in paths)
        labels.append(f"{title} ({categories})" if categories else str(title))
    return labels


def render_history_texts(train: Interactions, labels: Sequence[str], *, n_recent: int = 20) -> list[str]:
    """One text per user ``[n_users]``: ``"Liked: "`` and the labels of the user's ``n_recent``
    most recent distinct items, most recent first, joined by ``"; "``; ``""`` for a user without
    events. Ties in time keep the higher item index first (the reverse of the chronological order)."""
    order = train.chronological_order()[::-1]
    users, items = train.users[order], train.items[order]
    bounds = np.searchsorted(-users, -np.arange(train.n_users), side="left")  # users descend along order
    ends = np.searchsorted(-users, -np.arange(train.n_users), side="right")
    texts = []
    for user in range(train.n_users):
        recent = dict.fromkeys(items[bounds[user] : ends[user]].tolist())
        chosen = list(recent)[:n_recent]
        texts.append("Liked: " + "; ".join(labels[i] for i in chosen) if chosen else "")
    return texts


def _check_vectors(item_vectors: np.ndarray, n_items: int) -> np.ndarray:
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n_items:
        raise InputError(
            f"item_vectors has shape {vectors.shape}; expected [{n_items}, dim], one row per catalogue item"
        )
    return vectors
