"""The tastemap recommender: interest clusters, time and category layers, blended with sparse EASE.

For each user, :class:`TastemapRecommender` blends these components, each standardised per user
(zero mean, unit variance over the catalogue) and summed with :class:`BlendWeights`:

- ``long_term``: EASE item-item weights in low-rank form (see
  :mod:`~tastemap.runtime.recommend.collaborative`) applied to the whole history (collaborative signal);
- ``short_term``: the time layer, the same weights applied to the history weighted by recency
  ``0.5 ** (r / recency_half_life)`` where ``r`` counts the user's later items (0 = latest);
- ``interests``: candidates per interest, the ``interest_candidates`` nearest items to the interest's
  medoid and to its most recent member, taken in turn (the item index: exact, or IVF for a large
  catalogue, see :mod:`~tastemap.runtime.recommend.candidates`), with
  slots allocated by the interest's importance
  (an unseen candidate at rank ``r`` of interest ``c`` gets priority ``share_c / (r + 1)``, so
  interests fill the list in proportion to their share); the share is the members' recency weight;
- ``category``: the category layer, the user's category weights over the item's categories;
- ``literal``: the content signal as one text, the cosine between the item and the user's recent
  history rendered as one text and encoded (see :class:`~tastemap.runtime.recommend.baselines.ContentLiteral`);
  computed only when ``fit`` is given an ``encoder``. Which content signal feeds the blend,
  ``interests`` or ``literal``, is a blend weight: :func:`~tastemap.runtime.recommend.evaluate.tune_blend`
  chooses it on the validation split.

Serving is two-stage (:mod:`~tastemap.runtime.recommend.candidates`): a request scores only its
candidates (collaborative neighbours of the history, each interest's nearest items, the segment's
favourites) with the catalogue-wide standardisation computed from sums, so a candidate's score is
the exhaustive one and a request costs the same at 10k and at 1M items.

Every recommendation carries an :class:`~tastemap.runtime.recommend.explain.Explanation`: the
user interest it comes from, the layer (component) that contributed most, the seed items of that
interest that led to it, and a label that holds both the seeds and the item (the rule is in
:mod:`tastemap.runtime.recommend.explain`). New users are served from a few items (profiled like any user) or from a short
text (through the nearest topics and the nearest segment), see :meth:`recommend_cold`.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, clone

from tastemap.console import progress
from tastemap.cpu import one_thread, usable_cores
from tastemap.errors import InputError
from tastemap.runtime.interests.base import as_catalog, check_fitted
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.recommend import candidates as stage
from tastemap.runtime.recommend import serving
from tastemap.runtime.recommend.collaborative import LowRankEASE, low_rank_ease
from tastemap.runtime.recommend.user_rows import SETTLE_USERS, Overlay, replace_users
from tastemap.runtime.recommend.explain import Explanation, Explanations, explain_item, explain_items, item_topic_explanation
from tastemap.runtime.interests.profiles import InterestProfiler, UserInterests, UserProfiles
from tastemap.runtime.interests.segments import UserSegmenter

logger = logging.getLogger(__name__)

COMPONENTS = ("long_term", "short_term", "interests", "category", "literal")

LAYER_NAMES = {"long_term": "long-term", "short_term": "short-term", "interests": "interest", "category": "category",
               "literal": "history text"}


@dataclass(frozen=True)
class BlendWeights:
    """Weights of the standardised components. Defaults were chosen on the MovieLens validation
    split (the last training event of each user; see ``tastemap evaluate --tune``), never on test."""

    long_term: float = 0.3
    short_term: float = 0.7
    interests: float = 0.1
    category: float = 0.0
    literal: float = 0.0

    def __post_init__(self):
        values = asdict(self)
        negative = {k: v for k, v in values.items() if not v >= 0}
        if negative:
            raise InputError(f"blend weights must be >= 0; got {negative}")
        if not any(values.values()):
            raise InputError("all blend weights are 0; give at least one component a positive weight")

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in COMPONENTS}  # not asdict or fields(): a request calls it often


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item for one user, with its explanation."""

    rank: int
    item_id: object
    title: str
    score: float
    explanation: Explanation = field(repr=False)


@dataclass(frozen=True)
class _Top:
    """The recommendations of several users as columns: user ``u``'s are ``bounds[u]`` to
    ``bounds[u + 1]``, best first (batches build their table from these, not from one object per
    recommendation: a batch's objects set off Python's full garbage collections)."""

    bounds: np.ndarray
    item_ids: list
    titles: np.ndarray
    scores: list
    explanations: Explanations

    @property
    def ranks(self) -> np.ndarray:
        """Each recommendation's rank among its user's, from 1."""
        return np.arange(self.bounds[-1]) - np.repeat(self.bounds[:-1], np.diff(self.bounds)) + 1


@dataclass(frozen=True)
class _UserState:
    """What scoring needs about ``n`` users: ``history`` and ``recency`` CSR ``[n, n_items]``,
    ``interests`` (with ``share`` recomputed from recency), ``categories`` CSR ``[n, n_cats]``,
    ``literal`` the unit vectors ``[n, dim]`` of the users' history texts (None without an encoder)."""

    history: sparse.csr_matrix
    recency: sparse.csr_matrix
    interests: UserInterests
    categories: sparse.csr_matrix | None
    literal: np.ndarray | None = None


def embed_description(encoder, text: str) -> np.ndarray:
    """A new user's description ``text`` embedded by ``encoder`` (float32 ``[dim]``), refused when empty."""
    if not str(text).strip():
        raise InputError("text is empty; describe the user's tastes in a few words")
    return np.asarray(encoder.encode([str(text)]), dtype=np.float32)[0]


class TastemapRecommender(BaseEstimator):
    """Interest-based recommender (see the module docstring).

    Parameters
    ----------
    weights : BlendWeights or None, default=None
        Weights of the standardised components; None: ``BlendWeights()`` (the tuned defaults).
    l2 : float, default=500.0
        EASE regularisation (> 0).
    rank : int, default=512
        Eigenvectors of the Gram matrix that the EASE weights keep
        (:func:`~tastemap.runtime.recommend.collaborative.low_rank_ease`; exact EASE up to
        ``rank`` items with events). Memory and request cost grow with it.
    recency_half_life : float, default=5.0
        Half-life of the short-term recency weight, in items (> 0).
    n_candidates : int, default=300
        Collaborative candidates searched per user (MovieLens leave-last-out: 300, 200, 150 and
        100 give HR@10 0.1262, 0.1246, 0.1246, 0.1213 and NDCG@10 0.0609, 0.0605, 0.0607, 0.0592,
        the two-stage top 10 holding 98.9%, 97.7%, 96.1%, 93.1% of the exhaustive one).
    interest_candidates : int, default=100
        Nearest items kept per item for the interests' candidates (MovieLens leave-last-out:
        300, 100 and 50 give HR@10 0.1246 and NDCG@10 0.0606, 0.0605, 0.0605, the two-stage top 10
        holding 99.2%, 98.8%, 98.4% of the exhaustive one; each interest's list costs a third).
    profiler : InterestProfiler or None, default=None
        Unfitted template, cloned at fit; None: ``InterestProfiler(seed=seed)``.
    segmenter : UserSegmenter or None, default=None
        Unfitted template, cloned at fit; None: ``UserSegmenter(seed=seed)``.
    seed : int, default=0
        Seed of the default profiler and segmenter.

    Attributes
    ----------
    weights_ : BlendWeights
        The blend weights used (``weights``, or the defaults).
    profiler_ : InterestProfiler
        Fitted on the training events (topics, layers, interests, unit item vectors).
    segmenter_ : UserSegmenter or None
        Fitted on the training profiles (None with fewer than 3 users).
    collaborative_ : :class:`~tastemap.runtime.recommend.collaborative.LowRankEASE` or None
        The EASE weights as two ``[n_items, rank]`` factors (None when no collaborative
        component has a weight).
    collaborative_index_ : faiss.Index or None
        Inner-product index over the leading :data:`~tastemap.runtime.recommend.candidates.SEARCH_DIMS`
        columns of ``collaborative_.right``: the collaborative candidates.
    index_ : faiss.Index
        Inner-product index over the ``n_items`` unit item vectors (exact or IVF, see
        :func:`~tastemap.runtime.recommend.candidates.build_item_index`).
    item_neighbours_ : ndarray of shape (n_items, interest_candidates), int32
        Each item's nearest items in ``index_`` (-1 pads): the interests' candidates.
    item_ids_ : ndarray of shape (n_items,)
        Catalog item ids, catalog order.
    titles_ : ndarray of shape (n_items,)
        Catalog titles as str.
    user_index_ : pandas.Index of n_users ids
        Training user ids; position = user row.
    state_ : _UserState
        Per-user history, recency, interests and categories of the training users.
    segment_popularity_ : ndarray of shape (n_segments, n_items), float32, or None
        Events per item within each segment (None without a segmenter).
    """

    def __init__(
        self,
        *,
        weights: BlendWeights | None = None,
        l2: float = 500.0,
        rank: int = 512,
        recency_half_life: float = 5.0,
        n_candidates: int = 300,
        interest_candidates: int = 100,
        profiler: InterestProfiler | None = None,
        segmenter: UserSegmenter | None = None,
        seed: int = 0,
    ):
        self.weights = weights
        self.l2 = l2
        self.rank = rank
        self.recency_half_life = recency_half_life
        self.n_candidates = n_candidates
        self.interest_candidates = interest_candidates
        self.profiler = profiler
        self.segmenter = segmenter
        self.seed = seed

    def _validate_params(self) -> None:
        """Check every parameter (messages carry the value received)."""
        if self.weights is not None and not isinstance(self.weights, BlendWeights):
            raise InputError(f"weights should be None or a BlendWeights, got {type(self.weights).__name__}")
        if not self.l2 > 0:
            raise InputError(f"l2={self.l2} should be > 0")
        if not (isinstance(self.rank, (int, np.integer)) and self.rank >= 1):
            raise InputError(f"rank={self.rank!r} should be an integer >= 1")
        if not self.recency_half_life > 0:
            raise InputError(f"recency_half_life={self.recency_half_life} should be > 0 (items)")
        if not (isinstance(self.n_candidates, int) and self.n_candidates >= 1):
            raise InputError(f"n_candidates={self.n_candidates!r} should be an integer >= 1")
        if not (isinstance(self.interest_candidates, int) and self.interest_candidates >= 1):
            raise InputError(f"interest_candidates={self.interest_candidates!r} should be an integer >= 1")
        if self.profiler is not None and not isinstance(self.profiler, InterestProfiler):
            raise InputError(f"profiler should be None or an InterestProfiler, got {type(self.profiler).__name__}")
        if self.segmenter is not None and not isinstance(self.segmenter, UserSegmenter):
            raise InputError(f"segmenter should be None or a UserSegmenter, got {type(self.segmenter).__name__}")

    def fit(self, train: Interactions, catalog: pd.DataFrame, item_vectors, *,
            collaborative: LowRankEASE | None = None, encoder=None) -> "TastemapRecommender":
        """Profile the users of ``train``, segment them, build the index and the EASE weights.

        Parameters
        ----------
        train : :class:`~tastemap.runtime.io.interactions.Interactions`
            Training events aligned with ``catalog`` (``align_events(events, catalog)``): item
            index ``i`` is catalog row ``i``.
        catalog : DataFrame of n_items rows
            ``item_id, title`` and optionally ``categories, tags, description`` (as from
            :func:`~tastemap.runtime.io.events.read_catalog`, or a plain frame).
        item_vectors : ndarray of shape (n_items, dim), or an encoder
            Item vectors in catalog order, or an object with ``encode(texts) -> (n_texts, dim)``.
        collaborative : :class:`~tastemap.runtime.recommend.collaborative.LowRankEASE`, optional
            EASE weights already fitted on the same ``train`` (such as the Spark job's), to
            avoid fitting them here.
        encoder : object with ``encode(texts)``, optional
            Encodes each user's history text for the ``literal`` component (the encoder of
            ``item_vectors``); needed when ``weights.literal > 0``.

        Returns
        -------
        self : TastemapRecommender
        """
        self._validate_params()
        catalog = as_catalog(catalog)
        _check_training_data(train, catalog, collaborative)
        self.weights_ = self.weights if self.weights is not None else BlendWeights()
        profiler = clone(self.profiler) if self.profiler is not None else InterestProfiler(seed=self.seed)
        self.profiler_ = profiler.fit(train, catalog, item_vectors)
        vectors = self.profiler_.item_vectors_
        self.index_ = stage.build_item_index(vectors, seed=self.seed)
        self.item_neighbours_ = stage.nearest_items(self.index_, vectors, self.interest_candidates)
        self.titles_ = catalog["title"].astype(str).to_numpy()
        self.item_ids_ = train.item_ids
        self.user_index_ = pd.Index(train.user_ids)
        history = train.matrix()
        self.collaborative_ = collaborative
        if collaborative is None and (self.weights_.long_term > 0 or self.weights_.short_term > 0):
            self.collaborative_ = low_rank_ease(history, l2=self.l2, rank=self.rank, seed=self.seed)
        self.collaborative_index_ = None
        if self.collaborative_ is not None:
            self.collaborative_index_ = stage.collaborative_index(self.collaborative_.right, seed=self.seed)
        profiles = self.profiler_.profiles_
        self.segmenter_, self.segment_popularity_ = None, None
        if train.n_users >= 3:
            segmenter = clone(self.segmenter) if self.segmenter is not None else UserSegmenter(seed=self.seed)
            self.segmenter_ = segmenter.fit(profiles)
            membership = sparse.csr_matrix(
                (np.ones(train.n_users, np.float32), (self.segmenter_.labels_, np.arange(train.n_users))),
                shape=(self.segmenter_.n_segments_, train.n_users),
            )
            self.segment_popularity_ = np.asarray((membership @ history).todense(), dtype=np.float32)
        literal = None
        if encoder is not None:
            from tastemap.runtime.recommend.baselines import ContentLiteral

            literal = ContentLiteral(encoder=encoder).fit(train, catalog, vectors).user_vectors_
        elif self.weights_.literal > 0:
            raise InputError("weights.literal > 0 needs the encoder of the item vectors to encode the history "
                             "texts: pass fit(..., encoder=encoder)")
        self.state_ = self._state(history, recency_matrix(train, self.recency_half_life), profiles, literal)
        return self

    def scoring_state(self, history: sparse.csr_matrix, recency: sparse.csr_matrix,
                      profiles: UserProfiles) -> _UserState:
        """The scoring state of ``n`` users from their binary ``history`` and ``recency`` (CSR
        ``[n, n_items]``, see :func:`recency_matrix`) and their profiles with the fitted topics
        (``profiler_.transform``): for a fitted model loaded from disk or updated with new events."""
        return self._state(history, recency, profiles)

    def _state(self, history, recency, profiles: UserProfiles, literal: np.ndarray | None = None) -> _UserState:
        interests = profiles.interests
        owner = np.repeat(np.arange(profiles.n_users), interests.counts())
        member_owner = np.repeat(owner, interests.size)
        member_weight = np.asarray(recency[member_owner, interests.members]).ravel()
        weight = np.add.reduceat(member_weight, interests.member_indptr[:-1]) if member_weight.size else member_weight
        totals = np.bincount(owner, weights=weight, minlength=profiles.n_users)
        share = np.divide(weight, totals[owner], out=np.zeros_like(weight), where=totals[owner] > 0)
        interests = UserInterests(**{**interests.__dict__, "share": share.astype(np.float32)})
        categories = profiles.categories[-1] if profiles.categories else None
        return _UserState(history=history, recency=recency, interests=interests, categories=categories, literal=literal)

    # scoring -----------------------------------------------------------------------------------

    def score(self, users: np.ndarray) -> np.ndarray:
        """Blended scores ``[len(users), n_items]`` float32 for training user indices ``users``,
        as served: each candidate's (equal to its exhaustive score), a floor for every other item
        (:func:`~tastemap.runtime.recommend.serving.candidate_scores`). :meth:`components` gives
        every item's."""
        self._check_fitted()
        return serving.candidate_scores(self, np.asarray(users), self.state_)

    def _weighted(self) -> list[str]:
        return [name for name, weight in self.weights_.as_dict().items() if weight > 0]

    def components(self, users: np.ndarray, state: _UserState | None = None) -> dict[str, np.ndarray]:
        """Every standardised component score, name to ``[len(users), n_items]`` float32 (those
        that can be computed: EASE ones need a collaborative weight at fit time), for tuning the
        blend (see :func:`~tastemap.runtime.recommend.evaluate.tune_blend`)."""
        self._check_fitted()
        return self._components(np.asarray(users), state or self.state_, COMPONENTS)

    def _components(self, users: np.ndarray, state: _UserState, names: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            if name in ("long_term", "short_term") and self.collaborative_ is None:
                continue
            if name == "category" and (state.categories is None or not self.profiler_.category_levels_):
                continue
            if name == "literal" and state.literal is None:
                continue
            raw = {
                "long_term": lambda: self.collaborative_.scores(state.history[users]),
                "short_term": lambda: self.collaborative_.scores(state.recency[users]),
                "interests": lambda: self._interest_priorities(users, state),
                "category": lambda: state.categories[users] @ self.profiler_.category_levels_[-1].items.T,
                "literal": lambda: state.literal[users] @ self.profiler_.item_vectors_.T,
            }[name]()
            dense = raw.toarray() if isinstance(raw, stage.Rows) else raw.todense() if sparse.issparse(raw) else raw
            out[name] = standardise(np.asarray(dense, dtype=np.float32))
        return out

    def _blend(self, components: dict[str, np.ndarray], weights: BlendWeights | None = None) -> np.ndarray:
        weights = (weights or self.weights_).as_dict()
        total = None
        for name, values in components.items():
            if weights[name] > 0:
                total = values * weights[name] if total is None else total + values * weights[name]
        if total is None:
            raise InputError(f"no component with a positive weight could be computed; weights={weights}")
        return total

    def _interest_priorities(self, users: np.ndarray, state: _UserState,
                             recency: stage.Rows | None = None) -> stage.Rows:
        """D'Hondt slot priorities, rows ``[len(users), n_items]``: ``share / (rank + 1)`` of each
        unseen candidate in its interest's list, the best over interests (``recency``: the
        users' rows of ``state.recency`` when already taken)."""
        interests = state.interests
        shape = (len(users), self.index_.ntotal)
        starts, ends = interests.indptr[users], interests.indptr[users + 1]
        rows = np.repeat(np.arange(len(users)), ends - starts)
        if rows.size == 0:
            return stage.Rows(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(len(users) + 1, np.int64), shape)
        counts = ends - starts
        picked = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(rows.size)
        n_items = shape[1]
        if recency is None:  # the users' rows, sorted: looked up by key below
            recency = stage.Rows.of(state.recency, users)
        candidates = self._candidates(interests.medoid[picked], self._latest_members(rows, picked, recency, interests))
        seen = stage.gather(recency, (rows[:, None] * n_items + np.maximum(candidates, 0)).ravel()
                            ).reshape(candidates.shape) > 0
        rank = np.cumsum(~seen, axis=1) - 1
        priority = np.where(seen, 0.0, interests.share[picked][:, None] / (np.maximum(rank, 0) + 1.0)).astype(np.float32)
        found = candidates >= 0  # an approximate index may return fewer than asked
        return stage.max_per_key(np.repeat(rows, candidates.shape[1])[found.ravel()], candidates[found],
                                 priority[found], shape)

    @staticmethod
    def _latest_members(rows: np.ndarray, picked: np.ndarray, recency: stage.Rows,
                        interests: UserInterests) -> np.ndarray:
        """The member with the largest recency weight of each interest ``picked`` (of the user
        whose row of ``recency`` is ``rows``, aligned); ties go to the more central member."""
        sizes = interests.size[picked]
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        members = interests.members[np.repeat(interests.member_indptr[picked], sizes) + offsets]
        recency = stage.gather(recency, np.repeat(rows, sizes) * recency.shape[1] + members)
        group = np.repeat(np.arange(picked.size), sizes)
        order = np.lexsort((np.arange(members.size), -recency, group))
        return members[order[np.cumsum(sizes) - sizes]]

    def _candidates(self, medoids: np.ndarray, latest: np.ndarray | None = None) -> np.ndarray:
        """The ``interest_candidates`` nearest items of each interest: those of its
        medoid and, when given, of its most recent member, taken in turn (duplicates dropped)."""
        k = self.item_neighbours_.shape[1]
        neighbours = self.item_neighbours_[medoids].astype(np.int64)
        if latest is None or np.array_equal(latest, medoids):
            return neighbours
        width = 2 * k
        merged = np.stack([neighbours, self.item_neighbours_[latest]], axis=2).reshape(len(medoids), width)
        # each row's items by value, then place (unique keys: a plain sort is as good as a stable
        # one, and faster); an item's first place is kept, then the first k kept places in order
        keys = np.sort(merged * width + np.arange(width), axis=1)
        first = np.ones(keys.shape, bool)
        first[:, 1:] = keys[:, 1:] // width != keys[:, :-1] // width
        kept = np.zeros(merged.shape, bool)
        np.put_along_axis(kept, keys % width, first, axis=1)
        place = np.cumsum(kept, axis=1) - 1
        rows, columns = np.nonzero(kept & (place < k))
        out = np.full((len(medoids), k), -1, np.int64)  # -1: fewer than k distinct items
        out[rows, place[rows, columns]] = merged[rows, columns]
        return out

    # fitted rows and the overlay of updated users ----------------------------------------------

    @property
    def state_(self) -> _UserState:
        """The scoring rows of every training user (an update's overlay applied first)."""
        if self.__dict__.get("_overlay") is not None:
            self.settle()
        if "_fitted_state" not in self.__dict__:
            raise AttributeError("state_")
        return self.__dict__["_fitted_state"]

    @state_.setter
    def state_(self, state: _UserState) -> None:
        self.__dict__["_fitted_state"], self.__dict__["_overlay"] = state, None

    def overlay(self, rows: np.ndarray, profiles: UserProfiles, state: _UserState) -> None:
        """Hold the new profiles and scoring rows of known users ``rows`` (sorted) in the overlay
        (:mod:`~tastemap.runtime.recommend.user_rows`); applied once it holds ``SETTLE_USERS``."""
        base = self.__dict__["_fitted_state"]
        if base.literal is not None:  # the history-text vectors are not refreshed by an update
            state = dataclasses.replace(state, literal=base.literal[rows])
        overlay = self.__dict__.get("_overlay") or Overlay()
        overlay.add(rows, state, profiles)
        self.__dict__["_overlay"] = overlay
        if len(overlay.where) >= SETTLE_USERS:
            self.settle()

    def settle(self) -> None:
        """Apply the overlay to the fitted rows and profiles (one copy of every user's rows)."""
        overlay = self.__dict__.get("_overlay")
        if overlay is not None:
            self.__dict__["_overlay"] = None
            replace_users(self, *overlay.latest())

    def rows_of(self, users: np.ndarray) -> tuple[_UserState, np.ndarray]:
        """``(state, rows)``: a state holding training users ``users`` and their rows in it,
        without applying the overlay when one update's chunk holds them all or none is in it."""
        users = np.asarray(users, np.int64)
        overlay = self.__dict__.get("_overlay")
        if overlay is None or not overlay.holds_any(users):
            return self.__dict__["_fitted_state"], users
        found = overlay.locate(users)
        return found if found is not None else (self.state_, users)

    def _check_fitted(self) -> None:
        check_fitted(self, "user_index_", "fit(train, catalog, item_vectors)")

    # recommendations with explanations -----------------------------------------------------------

    def recommend(self, user_id, *, k: int = 20) -> list[Recommendation]:
        """The top ``k`` unseen items for a training user (original id), with explanations."""
        self._check_fitted()
        position = position_of(self.user_index_, user_id)
        if position < 0:
            raise InputError(
                f"user {user_id!r} is not in the training events ({self.user_index_.size} users); "
                "use recommend_cold for a new user"
            )
        state, rows = self.rows_of([position])
        return self._recommend_rows(rows, state, k, segments=self._segments_of([position]))[0]

    def recommend_batch(self, user_ids: Sequence | None = None, *, k: int = 20, batch_size: int = 256,
                        n_jobs: int | None = None) -> pd.DataFrame:
        """Recommendations for many users (default: all) as one row per (user, rank): ``user_id,
        rank, item_id, title, score, interest, interest_label, topic, layer, seed_item_ids,
        seed_titles, explanation``. Batches of ``batch_size`` users run on ``n_jobs`` threads
        (None: one per core), with the same rows whatever ``n_jobs``."""
        self._check_fitted()
        if not (n_jobs is None or (isinstance(n_jobs, int) and n_jobs >= 1)):
            raise InputError(f"n_jobs={n_jobs!r} should be None (one thread per core) or an integer >= 1")
        if user_ids is None:
            positions = np.arange(self.user_index_.size)
        else:
            positions = self.user_index_.get_indexer(list(user_ids))
            if (positions < 0).any():
                unknown = list(np.asarray(list(user_ids), dtype=object)[positions < 0][:5])
                raise InputError(f"{int((positions < 0).sum())} user ids are not in the training events (first: {unknown})")
        state = self.state_  # the overlay settled once, before the threads read it
        batches = [positions[start : start + batch_size] for start in range(0, positions.size, batch_size)]

        def run(batch: np.ndarray) -> _Top:
            with one_thread():  # OpenMP's limit is per thread: set in each worker
                return self._top(batch, state, k, segments=self._segments_of(batch))

        threads = max(1, min(usable_cores() if n_jobs is None else n_jobs, len(batches)))
        # NumPy, BLAS and faiss release the GIL: a thread per core, each batch's products on its
        # own thread (BLAS's helper threads sped a batch of 256 users by under 5% at twice the CPU)
        with one_thread(), ThreadPoolExecutor(threads, thread_name_prefix="recommend") as pool:
            results = list(progress(pool.map(run, batches), total=len(batches), description="recommendations"))
        users = [np.repeat(batch, np.diff(top.bounds)) for batch, top in zip(batches, results)]
        return _table(self.user_index_.to_numpy()[np.concatenate(users or [np.zeros(0, np.int64)])], results)

    def explain(self, user_id, item_id) -> Explanation:
        """Why ``item_id`` would be recommended to training user ``user_id``: the layer whose
        weighted component contributes most to the item's score, and the interest and seed items
        it comes from (as in :meth:`recommend`)."""
        self._check_fitted()
        user = position_of(self.user_index_, user_id)
        item = position_of(self._item_index(), item_id)
        if user < 0:
            raise InputError(f"user {user_id!r} is not in the training events ({self.user_index_.size} users)")
        if item < 0:
            raise InputError(f"item {item_id!r} is not in the catalog ({self.item_ids_.size} items)")
        state, rows = self.rows_of([user])
        scored = serving.score_candidates(self, rows, state, segments=self._segments_of([user]), force=np.array([item]))
        position = np.flatnonzero(scored.items == item)[:1]
        return self._explain(int(rows[0]), item, state, scored.layers(position)[0], None)

    def _item_index(self) -> pd.Index:
        """The item ids as an index (kept while ``item_ids_`` is the same array)."""
        return serving.cached(self, "item index", self.item_ids_, pd.Index)

    def _segments_of(self, rows) -> np.ndarray | None:
        """The fitted segments of training user rows (None without segments)."""
        return None if self.segmenter_ is None else np.asarray(self.segmenter_.labels_)[np.asarray(rows)]

    def _recommend_rows(self, rows: np.ndarray, state: _UserState, k: int, *, segment: str | None = None,
                        boost: tuple[float, np.ndarray] | None = None,
                        segments: np.ndarray | None = None) -> list[list[Recommendation]]:
        """Recommendations for rows ``rows`` of ``state`` (see :meth:`_top`), one list per row."""
        top = self._top(rows, state, k, segment=segment, boost=boost, segments=segments)
        ranks = top.ranks.tolist()
        return [[Recommendation(rank=ranks[p], item_id=top.item_ids[p], title=top.titles[p], score=top.scores[p],
                                explanation=top.explanations[p]) for p in range(a, b)]
                for a, b in zip(top.bounds[:-1], top.bounds[1:])]

    def _top(self, rows: np.ndarray, state: _UserState, k: int, *, segment: str | None = None,
             boost: tuple[float, np.ndarray] | None = None, segments: np.ndarray | None = None) -> "_Top":
        """The ``k`` best items of rows ``rows`` of ``state``, as columns; ``segments``: their fitted
        segments (training users), for the favourites among their candidates."""
        if not (isinstance(k, int) and k >= 1):
            raise InputError(f"k={k!r} should be an integer >= 1")
        with one_thread(len(rows) < stage.SINGLE_THREAD_QUERIES):  # a request's products are too small for threads
            scored = serving.score_candidates(self, rows, state, segments=segments, boost=boost)
            top = scored.top(k)
            layers = scored.layers(top)
            items = scored.items[top]
            explanations = explain_items(self, np.asarray(rows)[scored.rows[top]], items, state, list(layers),
                                         [LAYER_NAMES[c] for c in layers], segment)  # every user's at once
        bounds = np.searchsorted(scored.rows[top], np.arange(len(rows) + 1))
        return _Top(bounds=bounds, item_ids=self.item_ids_[items].tolist(), titles=self.titles_[items],
                    scores=scored.scores[top].tolist(), explanations=explanations)

    def _explain(self, user: int, item: int, state: _UserState, component: str, segment: str | None) -> Explanation:
        """Attribute ``item`` to one of the user's interests, name its seed items and a label that
        holds both (:func:`~tastemap.runtime.recommend.explain.explain_item`)."""
        return explain_item(self, user, item, state, component, LAYER_NAMES[component], segment)

    # cold start ---------------------------------------------------------------------------------

    def recommend_cold(self, *, item_ids: Sequence | None = None, text: str | None = None, encoder=None,
                       k: int = 20, n_topics: int = 3, segment_weight: float = 0.3) -> list[Recommendation]:
        """Recommendations for a new user from a few ``item_ids`` (in the order they were liked,
        latest last) or from a short ``text`` (encoded with ``encoder``).

        Items: the user is profiled like any other (interests, layers), placed in the nearest
        segment, and scored with the same blend plus ``segment_weight`` times the segment's
        standardised popularity. Text: the items nearest to the text in the item index, restricted
        to the ``n_topics`` nearest topics, scored by their standardised similarity to the text
        plus the segment popularity of the nearest segment.
        """
        self._check_fitted()
        if (item_ids is None) == (text is None):
            raise InputError("give exactly one of item_ids (a few liked items) or text (a short description)")
        if item_ids is not None:
            return self._cold_from_items(list(item_ids), k, segment_weight)
        if encoder is None:
            raise InputError("text cold start needs an encoder (tastemap.runtime.Encoder) to embed the description")
        vector = embed_description(encoder, text)
        return self._cold_from_vector(vector / max(np.linalg.norm(vector), 1e-12), k, n_topics, segment_weight)

    def _cold_from_items(self, item_ids: list, k: int, segment_weight: float) -> list[Recommendation]:
        if not item_ids:
            raise InputError("item_ids is empty; give at least one item the new user liked")
        positions = self._item_index().get_indexer(item_ids)
        if (positions < 0).any():
            unknown = [i for i, p in zip(item_ids, positions) if p < 0][:5]
            raise InputError(f"item ids {unknown} are not in the catalog ({self.item_ids_.size} items)")
        n = positions.size
        cold = Interactions(users=np.zeros(n, np.int64), items=positions.astype(np.int64),
                            timestamps=np.arange(n, dtype=np.int64), weights=np.ones(n, np.float32),
                            user_ids=np.array(["new user"], dtype=object), item_ids=self.item_ids_)
        profiles = self.profiler_.transform(cold)
        state = self._state(cold.matrix(), recency_matrix(cold, self.recency_half_life), profiles)
        segment, label = self._nearest_segment(profiles)
        boost = None if segment is None or segment_weight <= 0 else (segment_weight, np.array([segment]))
        return self._recommend_rows(np.array([0]), state, k, segment=label, boost=boost)[0]

    def _cold_from_vector(self, vector: np.ndarray, k: int, n_topics: int, segment_weight: float) -> list[Recommendation]:
        if not (isinstance(k, int) and k >= 1):
            raise InputError(f"k={k!r} should be an integer >= 1")
        items, scores, label = serving.score_text(self, vector, n_topics, segment_weight)
        top = stage.top_per_row(np.zeros(items.size, np.int64), items, scores, k)
        return [
            Recommendation(rank=r + 1, item_id=_plain(self.item_ids_[items[p]]), title=self.titles_[items[p]],
                           score=float(scores[p]),
                           explanation=item_topic_explanation(self, int(items[p]), "cold-start", label))
            for r, p in enumerate(top)
        ]

    def _nearest_segment(self, profiles: UserProfiles) -> tuple[int | None, str | None]:
        """The fitted segment nearest to a one-user profile, and its label (None without segments)."""
        if self.segmenter_ is None:
            return None, None
        segment = int(self.segmenter_.predict(profiles)[0])
        return segment, str(self.segmenter_.segments_.loc[segment, "label"])


def _check_training_data(train: Interactions, catalog: pd.DataFrame, collaborative) -> None:
    """``train`` aligned with ``catalog`` (same items, catalog order); ``collaborative`` over them."""
    if not isinstance(train, Interactions):
        raise InputError(f"train should be Interactions (align_events(events, catalog)); got {type(train).__name__}")
    catalog_ids = catalog["item_id"].to_numpy()
    if catalog_ids.size != train.n_items or not np.array_equal(catalog_ids, train.item_ids):
        raise InputError(
            f"training items (n_items={train.n_items}) are not the catalog's {catalog_ids.size} items "
            "in catalog order; build the Interactions with align_events(events, catalog)"
        )
    if collaborative is not None and collaborative.n_items != train.n_items:
        raise InputError(f"collaborative weights cover {collaborative.n_items} items; expected {train.n_items}")


def recency_matrix(data: Interactions, half_life: float) -> sparse.csr_matrix:
    """``[n_users, n_items]`` float32 weights ``0.5 ** (r / half_life)``, ``r`` the number of
    distinct items the user engaged with after this one (ties: the lower item index first)."""
    order = data.chronological_order()
    users, items = data.users[order], data.items[order]
    # keep each (user, item) pair's last event, in chronological order
    key = users * np.int64(data.n_items) + items
    _, first_from_end = np.unique(key[::-1], return_index=True)
    last = np.zeros(key.size, bool)
    last[key.size - 1 - first_from_end] = True
    users, items = users[last], items[last]
    counts = np.bincount(users, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = ends[users] - 1 - np.arange(users.size)
    values = np.power(0.5, from_end / half_life).astype(np.float32)
    return sparse.csr_matrix((values, (users, items)), shape=(data.n_users, data.n_items))


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per-row zero mean and unit variance ``[n, n_items]`` (constant rows become 0)."""
    scores = np.asarray(scores, dtype=np.float32)
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = centred.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def position_of(index: pd.Index, value) -> int:
    """The position of ``value`` in the unique ``index``, -1 when absent (a hash lookup: a
    single request does not pay for an array lookup)."""
    try:
        position = index.get_loc(value)
    except (KeyError, TypeError, pd.errors.InvalidIndexError):
        return -1
    return position if isinstance(position, int) else -1


def _plain(value):
    """A NumPy scalar as the Python value (ids print and serialise as the caller gave them)."""
    return value.item() if isinstance(value, np.generic) else value


def _table(user_ids: np.ndarray, tops: list[_Top]) -> pd.DataFrame:
    """One row per recommendation of ``tops`` (``user_ids`` aligned), built column by column."""
    explanations = Explanations.concatenate([top.explanations for top in tops])
    return pd.DataFrame({
        "user_id": user_ids,
        "rank": np.concatenate([np.zeros(0, np.int64)] + [top.ranks for top in tops]),
        "item_id": [item for top in tops for item in top.item_ids],
        "title": [title for top in tops for title in top.titles],
        "score": np.array([score for top in tops for score in top.scores], np.float64),
        "interest": np.array(explanations.interest, np.int64),
        "interest_label": explanations.interest_label,
        "topic": explanations.topic,
        "layer": explanations.layer,
        "seed_item_ids": explanations.seed_item_ids,
        "seed_titles": explanations.seed_titles,
        "explanation": explanations.texts(),
    })
