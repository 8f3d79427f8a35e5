"""Collaborative item-item weights that scale to millions of items: EASE in low-rank form.

EASE (Steck, 2019) has weights ``B = I − P·diag(1/diag(P))`` with ``P = (G + λI)⁻¹`` and
``G = XᵀX``. With the eigendecomposition ``G = V Σ² Vᵀ``, ``P = (I − V D Vᵀ) / λ`` where
``D = diag(σ²/(σ² + λ))``, so that

    ``B = (V D Vᵀ − diag(h)) · diag(1 / (1 − h))``,   ``h_j = Σ_i d_i V_ji²``

exactly when ``V`` holds every eigenvector. :func:`low_rank_ease` keeps the ``rank`` leading ones
(:func:`randomized_eigh`, O(nnz · rank) per pass over ``X``, never an ``n × n`` array) and every item's
``h`` from them: the weights are ``B = left · rightᵀ`` less a zero diagonal, ``left = V D`` for
the items a user has and ``right = V / (1 − h)`` for the items scored. Only ``right`` is stored,
with ``D`` and ``h``: ``left = diag(1 − h) · right · D`` (one ``[n_items, rank]`` array, not
two: 2 GB less at a million items). A user's
scores ``x · B`` are then ``(x · left) · rightᵀ`` minus the diagonal on the items they have, a
bilinear form whose catalogue-wide mean and variance need no full row (see
:mod:`~tastemap.runtime.recommend.candidates`), and whose best items an inner-product index over
``right`` finds. Up to ``rank`` items with events, every eigenvector is kept and the weights are
dense EASE's (the tests check it).

Measured on MovieLens ml-latest-small, leave-last-out, tastemap's default blend (HR@10 /
NDCG@10; ``python -m tastemap.bench.collaborative``): dense EASE (λ=500) 0.1246 / 0.0606;
low-rank EASE with rank 128: 0.1016 / 0.0493, 256: 0.1164 / 0.0569, 512: 0.1246 / 0.0606 (the
same top items as dense), 1024: 0.1246 / 0.0606. Measured and not used, all sparse with at most
``k`` weights per item: dense EASE cut to its 128 largest weights per item 0.1049 / 0.0518 (512:
0.1098 / 0.0551, 2048: 0.1197 / 0.0586) and EASE solved per item over its 64 most co-occurring
items 0.0984 / 0.0532, both fine alone (collaborative scores only: 0.0820 / 0.0352 and 0.0787 /
0.0353 against dense 0.0787 / 0.0360) but the blend loses what the many small weights carry;
the per-item solve also took 17 minutes for 200k items and 15M events (2 cores). RP3beta
(0.0623 / 0.0294 alone) and cosine ItemKNN (0.0590 / 0.0264 alone) are sparse and cheap but
20–25% below EASE alone. SANSA (``pip install sansa``) is sparse too, and needs SuiteSparse from
the system and numba and configures the root logger at import.

The range finder runs in float32 (:func:`randomized_eigh`). On the generator's 200k items, 300k
users and 15M events, rank 512, 2 cores: 184 s and a peak of 1.7 GiB for the whole
:func:`low_rank_ease` (the log's matrix included), against 267 s and 5.2 GiB in float64 with
NumPy's QR; on MovieLens the two-stage HR@10 / NDCG@10 stay 0.1262 / 0.0609 (0.0610 in float64)
and the top 10 holds 98.9% of the exhaustive one (99.0%).
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

from tastemap.cpu import usable_cores
from tastemap.errors import InputError
from tastemap.runtime.recommend.candidates import Rows

logger = logging.getLogger(__name__)

N_POWER_ITERATIONS = 4
"""Power iterations of the randomised eigendecomposition."""
OVERSAMPLE = 16
"""Extra random directions of the randomised eigendecomposition (Halko et al., 2011)."""
GRAM_COLUMNS = 64
"""Columns of the range finder's block per task of :func:`gram_product`."""


@dataclass(frozen=True)
class LowRankEASE:
    """EASE weights ``B = left · rightᵀ − diag(diagonal)``, ``left = diag(1 / (1 + diagonal)) ·
    right · diag(shrink)``, with ``right`` float32 ``[n_items, rank]``, ``shrink`` float32
    ``[rank]`` (the eigenvalues' ``σ² / (σ² + λ)``) and ``diagonal`` float32 ``[n_items]`` (so that
    ``B`` has a zero diagonal); ``exact`` when every eigenvector was kept (``B`` is then dense EASE's).
    ``right_total`` ``Σ_i right_i`` ``[rank]`` and ``right_gram`` ``rightᵀ·right`` ``[rank, rank]``
    (float64, summed at fit) give a user's scores' catalogue-wide mean and variance; None for
    weights built without them (serving then sums ``right`` at its first request: 2.4 s at 200k
    items)."""

    right: np.ndarray
    diagonal: np.ndarray
    shrink: np.ndarray
    exact: bool
    right_total: np.ndarray | None = None
    right_gram: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.right.shape[0])

    @property
    def rank(self) -> int:
        return int(self.right.shape[1])

    @cached_property
    def keep(self) -> np.ndarray:
        """``1 − h`` per item ``[n_items]`` float32: ``left``'s row scale."""
        return (1.0 / (1.0 + self.diagonal.astype(np.float64))).astype(np.float32)

    @property
    def left(self) -> np.ndarray:
        """``[n_items, rank]`` float32, computed at each call (serving uses ``right`` and the scales)."""
        return self.right * self.keep[:, None] * self.shrink

    def user_factors(self, history) -> np.ndarray:
        """``history · left`` ``[n_users, rank]`` float64 of (weighted) histories ``[n_users, n_items]``
        (any matrix, or a request's :class:`~tastemap.runtime.recommend.candidates.Rows`)."""
        if not (isinstance(history, Rows) or (sparse.issparse(history) and history.format == "csr")):
            history = sparse.csr_matrix(history)
        scaled = sparse.csr_matrix((history.data * self.keep[history.indices], history.indices, history.indptr),
                                   shape=history.shape)
        return np.asarray(scaled @ self.right, np.float64) * self.shrink

    def scores(self, history) -> np.ndarray:
        """``history · B`` ``[n_users, n_items]`` float32, every item (for evaluation)."""
        dense = self.user_factors(history) @ self.right.T
        history = sparse.csr_matrix(history)
        rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
        dense[rows, history.indices] -= history.data * self.diagonal[history.indices]
        return dense.astype(np.float32)

    def weights(self, sources: np.ndarray, item: int) -> np.ndarray:
        """``B[sources, item]`` ``[len(sources)]`` float32."""
        sources = np.asarray(sources)
        out = (self.right[sources] @ (self.right[item] * self.shrink)) * self.keep[sources]
        return np.where(sources == item, 0.0, out).astype(np.float32)

    def padded(self, n_items: int) -> "LowRankEASE":
        """The same weights over ``n_items >= self.n_items`` items (new items: no weight)."""
        extra = n_items - self.n_items
        if extra == 0:
            return self
        return dataclasses.replace(self, right=np.vstack([self.right, np.zeros((extra, self.rank), np.float32)]),
                                   diagonal=np.concatenate([self.diagonal, np.zeros(extra, np.float32)]))  # zero rows: same sums


def low_rank_ease(user_items: sparse.spmatrix, *, l2: float = 500.0, rank: int = 512, seed: int = 0) -> LowRankEASE:
    """:class:`LowRankEASE` of the binarised user-item matrix ``[n_users, n_items]`` with the
    ``rank`` leading eigenvectors of ``XᵀX`` (all of them, exactly, when the items with events
    are no more than ``rank``); see the module docstring. Items without events get no weight."""
    check_parameters(l2, rank)
    # float32 ones: the products of the range finder stay float32 (a float64 matrix would upcast
    # them); a matrix that is binary already is used as it is (no copy of the whole log)
    binary = sparse.csr_matrix(user_items, dtype=np.float32)
    if not (binary.has_canonical_format and (binary.data == 1).all()):
        binary = binary.copy()
        binary.sum_duplicates()
        binary.eliminate_zeros()
        binary.data[:] = 1.0
    active = np.flatnonzero(np.bincount(binary.indices, minlength=binary.shape[1]))
    sub = binary if active.size == binary.shape[1] else binary[:, active]
    if active.size <= rank:
        squares, vectors = np.linalg.eigh((sub.T @ sub).toarray().astype(np.float64))
    else:
        squares, vectors = randomized_eigh(gram_product(sub), active.size, rank, seed=seed)
    return from_eigen(squares, vectors, active, binary.shape[1], l2=l2, exact=active.size <= rank)


def gram_product(matrix: sparse.csr_matrix, *, threads: int | None = None):
    """``Q ↦ XᵀX·Q`` for the sparse ``X`` ``[n_users, n]`` and float32 ``Q`` ``[n, w]``, a block of
    :data:`GRAM_COLUMNS` columns of ``Q`` per task on ``threads`` threads (default: one per core;
    SciPy's sparse products release the GIL), written into a Fortran-ordered float32 array that
    :func:`_orthonormal` factorises in place. Only a block's ``X·Q`` is held, not the whole
    ``[n_users, w]``: 2 GB less at a million users."""
    threads = threads or usable_cores()
    transposed = matrix.T

    def times(q: np.ndarray) -> np.ndarray:
        out = np.empty(q.shape, np.float32, order="F")

        def block(columns: slice) -> None:
            out[:, columns] = transposed @ (matrix @ q[:, columns])

        blocks = [slice(start, start + GRAM_COLUMNS) for start in range(0, q.shape[1], GRAM_COLUMNS)]
        with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
            list(pool.map(block, blocks))
        return out

    return times


def randomized_eigh(gram_times, n: int, rank: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank`` leading eigenpairs ``(values [rank], vectors [n, rank])`` of a symmetric
    positive semi-definite ``n × n`` matrix ``G`` known only through ``gram_times(Q) = G · Q``
    (``Q`` float32 ``[n, rank + OVERSAMPLE]``): a randomised range finder with power iterations
    (Halko, Martinsson & Tropp, 2011). One call of ``gram_times`` is one pass over the data, so
    the same routine runs on one machine or on Spark. The blocks are float32 and orthonormalised
    in place: at a million items each ``[n, rank + 16]`` block takes 2.1 GB, and at most two are
    alive with :func:`gram_product`'s Fortran-ordered products (float64 and NumPy's QR held four
    of twice the size, 17 GB)."""
    width = min(n, rank + OVERSAMPLE)
    basis = np.random.default_rng(seed).standard_normal((n, width), dtype=np.float32)
    for _ in range(N_POWER_ITERATIONS + 1):
        product = gram_times(basis)
        del basis  # freed before the factorisation, and the product once factorised
        basis = _orthonormal(product)
        del product
    small = np.asarray(basis.T @ gram_times(basis), np.float64)
    values, rotation = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(-values, kind="stable")[:rank]
    return values[order], basis @ rotation[:, order].astype(np.float32)


def _orthonormal(block: np.ndarray) -> np.ndarray:
    """An orthonormal float32 basis of the columns of ``block`` ``[n, w]`` (``n >= w``): its
    economic QR factor, computed in a Fortran-ordered float32 copy that LAPACK overwrites."""
    from scipy.linalg import qr

    q, _ = qr(np.asfortranarray(block, dtype=np.float32), mode="economic", overwrite_a=True, check_finite=False)
    return q


def from_eigen(squares: np.ndarray, vectors: np.ndarray, active: np.ndarray, n_items: int, *, l2: float,
               exact: bool, block: int = 16_384) -> LowRankEASE:
    """:class:`LowRankEASE` from eigenpairs ``(squares [r], vectors [len(active), r])`` of the
    Gram matrix of the ``active`` items (the rest get no weight), a block of items at a time
    (no temporary as large as ``vectors``), with the sums of ``right`` that serving needs.
    When every item is active, ``right`` is written over float32 ``vectors`` (each block is read
    before it is written): at a million items a second ``[n, rank]`` array would take 2 GB."""
    shrink = np.maximum(squares, 0.0) / (np.maximum(squares, 0.0) + l2)
    rank = vectors.shape[1]
    in_place = (active.size == n_items and vectors.dtype == np.float32 and vectors.flags.c_contiguous
                and vectors.flags.writeable)
    right = vectors if in_place else np.zeros((n_items, rank), np.float32)
    out = LowRankEASE(right=right, diagonal=np.zeros(n_items, np.float32),
                      shrink=shrink.astype(np.float32), exact=exact, right_total=np.zeros(rank),
                      right_gram=np.zeros((rank, rank)))
    for start in range(0, active.size, block):
        part = np.array(vectors[start : start + block], np.float64)  # a copy: changed in place below
        leverage = np.minimum((part**2) @ shrink, 1.0 - 1e-9)
        items = active[start : start + block]
        part /= (1.0 - leverage)[:, None]
        out.right[items] = part
        out.diagonal[items] = leverage / (1.0 - leverage)
        part[:] = out.right[items]  # the sums of the stored float32 rows, in the same buffer
        out.right_total[:] += part.sum(axis=0)
        out.right_gram[:] += part.T @ part
    logger.info("low-rank EASE: %d items with events, rank %d%s", active.size, vectors.shape[1],
                " (every eigenvector: exact)" if exact else "")
    return out


def check_parameters(l2: float, rank: int) -> None:
    """Refuse an ``l2`` or a ``rank`` that EASE cannot use, naming the value received."""
    if not l2 > 0:
        raise InputError(f"l2={l2} should be > 0")
    if not (isinstance(rank, (int, np.integer)) and rank >= 1):
        raise InputError(f"rank={rank!r} should be an integer >= 1")
