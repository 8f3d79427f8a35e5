"""Item cold start: can the encoder place items that nobody has interacted with yet?

Protocol (:func:`split_new_items`, :func:`evaluate_cold_start`):

1. The newest ``holdout_fraction`` of the items (ordered by their first interaction; ties by
   catalog order) are held out with *all* their interactions. Everything else is the training
   part: the only events a fine-tune may see (its data hash is recorded and checked).
2. Every user with at least one training event and one held-out interaction is evaluated: only the
   held-out items are ranked, by the content similarity of the user's training history to each
   item (``mean``: the feedback-weighted mean of the user's item vectors; ``max``: the largest
   cosine over the user's items).
3. Recall@10, Recall@20 and NDCG@10 against the held-out items the user interacted with, with
   bootstrap intervals over users, and the paired ratio of each model to a reference.

Baselines: a random ranking of the held-out items and the frozen encoder (pass its vectors as a
:class:`ContentModel`). Collaborative models cannot score an item without interactions, so none
is evaluated here (:data:`COLLABORATIVE_NOTE` says so in every result).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.catalog import check_catalog_frame
from tastemap.runtime.recommend.metrics import Interval, bootstrap_ci, bootstrap_ratio_ci, mark_hits, ndcg_at_k, recall_at_k

logger = logging.getLogger(__name__)

RANDOM_NAME = "Random"
AGGREGATES = ("mean", "max")
RECALL_KS = (10, 20)
NDCG_KS = (10,)
COLLABORATIVE_NOTE = (
    "collaborative models (MostPop, ItemKNN, EASE and the collaborative part of tastemap) cannot "
    "score items without interactions; they are not evaluated on item cold start"
)


@dataclass(frozen=True)
class ColdStartSplit:
    """The training part and the held-out new items.

    ``train_events`` / ``test_events``: validated event frames (``user_id, item_id, timestamp,
    weight``); the test part holds every event of the held-out items. ``held_out`` int
    ``[n_held_out]``: catalog row indices of the held-out items. ``cutoff``: the first-interaction
    timestamp of the oldest held-out item. ``train_sha256``: the data hash of the training part
    (:func:`~tastemap.runtime.io.fingerprint.training_data_sha256` with ``template``), which a
    fine-tune used in this protocol must report.
    """

    train_events: pd.DataFrame
    test_events: pd.DataFrame
    catalog: pd.DataFrame
    held_out: np.ndarray
    cutoff: int
    template: str
    train_sha256: str

    @property
    def train_catalog(self) -> pd.DataFrame:
        """The catalog without the held-out items: what a fine-tune for this split is given."""
        keep = np.ones(len(self.catalog), dtype=bool)
        keep[self.held_out] = False
        return self.catalog.loc[keep].reset_index(drop=True)


@dataclass(frozen=True)
class ContentModel:
    """Item vectors ``[n_catalog_items, dim]`` (catalog order) from one encoder.

    ``trained_on`` is the data hash a fine-tuned encoder recorded (``finetune.json``:
    ``data.sha256``); None for an encoder that never saw the interactions. ``aggregate`` (``mean``
    or ``max``) overrides the evaluation's for this model, so that one run can compare both.
    """

    name: str
    item_vectors: np.ndarray
    trained_on: str | None = None
    aggregate: str | None = None


@dataclass(frozen=True)
class ColdStartResult:
    """Intervals per model and metric, paired ratios to the reference model, and the counts.

    ``metrics[model][metric]`` and ``ratios[model][metric]`` (``mean(model) / mean(reference)``,
    paired bootstrap over users) are :class:`~tastemap.runtime.recommend.metrics.Interval`.
    ``per_user[model][metric]`` holds ``[n_users]`` values aligned with ``users`` (user ids).
    """

    n_items_held_out: int
    n_items_train: int
    n_users: int
    n_test_events: int
    cutoff: int
    aggregate: str
    reference: str
    train_sha256: str
    metrics: dict[str, dict[str, Interval]]
    ratios: dict[str, dict[str, Interval]]
    aggregates: dict[str, str] = field(default_factory=dict)
    not_evaluated: str = COLLABORATIVE_NOTE
    users: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    per_user: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per model: each metric's mean and interval, and the ratios to the reference."""
        rows = []
        for name, metrics in self.metrics.items():
            row: dict[str, object] = {"model": name}
            for metric, interval in metrics.items():
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = interval.mean, interval.low, interval.high
            for metric, interval in self.ratios.get(name, {}).items():
                key = f"{metric}_vs_ref"
                row[key], row[f"{key}_low"], row[f"{key}_high"] = interval.mean, interval.low, interval.high
            rows.append(row)
        return pd.DataFrame(rows)

    def best_versus_best(self, tuned: str, frozen: str, *, metric: str = "Recall@20",
                         seed: int = 0) -> tuple[str, str, dict[str, Interval]]:
        """Each encoder at its better scoring rule: the models whose names start with ``tuned`` and
        with ``frozen`` with the highest mean ``metric``, and the paired ratios (tuned / frozen) of
        Recall@20 and NDCG@10 between them."""
        best = [max((name for name in self.metrics if name.startswith(prefix)), key=lambda name: self.metrics[name][metric].mean)
                for prefix in (tuned, frozen)]
        ratios = {m: bootstrap_ratio_ci(self.per_user[best[0]][m], self.per_user[best[1]][m], seed=seed)
                  for m in ("Recall@20", "NDCG@10")}
        return best[0], best[1], ratios

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-user values)."""
        return {
            "protocol": "item cold start: newest items by first interaction held out",
            "n_items_held_out": self.n_items_held_out,
            "n_items_train": self.n_items_train,
            "n_users": self.n_users,
            "n_test_events": self.n_test_events,
            "cutoff": self.cutoff,
            "aggregate": self.aggregate,
            "aggregates": self.aggregates,
            "reference": self.reference,
            "train_sha256": self.train_sha256,
            "metrics": {m: {k: v.as_dict() for k, v in d.items()} for m, d in self.metrics.items()},
            "ratios_to_reference": {m: {k: v.as_dict() for k, v in d.items()} for m, d in self.ratios.items()},
            "not_evaluated": self.not_evaluated,
        }


def split_new_items(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    holdout_fraction: float = 0.2,
    template: str | None = None,
) -> ColdStartSplit:
    """Hold out the newest ``holdout_fraction`` of the items that have events, with all their events.

    ``events`` and ``catalog`` are validated frames (see
    :func:`~tastemap.runtime.io.events.read_events`, :func:`~tastemap.runtime.io.events.read_catalog`).
    Events naming items missing from the catalog are dropped (and logged).
    """
    from tastemap.runtime.io.events import DEFAULT_TEMPLATE, render_item_texts, validate_events
    from tastemap.runtime.io.fingerprint import training_data_sha256

    if not 0 < holdout_fraction < 1:
        raise InputError(f"holdout_fraction={holdout_fraction} should be between 0 and 1 (exclusive)")
    events = validate_events(events, source="events")
    check_catalog_frame(catalog)
    template = template or DEFAULT_TEMPLATE
    rows = _catalog_rows(events["item_id"].to_numpy(), catalog["item_id"].to_numpy())
    known = rows >= 0
    if not known.all():
        logger.warning("%d events name items missing from the catalog; they are dropped", int((~known).sum()))
    events, rows = events.loc[known].reset_index(drop=True), rows[known]
    first = pd.Series(events["timestamp"].to_numpy()).groupby(rows).min()
    n_items = first.size
    n_held = int(round(holdout_fraction * n_items))
    if not 1 <= n_held < n_items:
        raise InputError(
            f"holdout_fraction={holdout_fraction} of the {n_items} items with events holds out {n_held}; "
            "need at least one held-out and one training item (pass more items or change the fraction)"
        )
    order = np.lexsort((first.index.to_numpy(), first.to_numpy()))
    held_out = np.sort(first.index.to_numpy()[order[-n_held:]]).astype(np.int64)
    cutoff = int(first.to_numpy()[order[-n_held]])
    is_test = np.isin(rows, held_out)
    train_events = events.loc[~is_test].reset_index(drop=True)
    test_events = events.loc[is_test].reset_index(drop=True)
    texts = render_item_texts(catalog, template)
    split = ColdStartSplit(
        train_events=train_events,
        test_events=test_events,
        catalog=catalog.reset_index(drop=True),
        held_out=held_out,
        cutoff=cutoff,
        template=template,
        train_sha256=training_data_sha256(train_events, catalog, texts),
    )
    logger.info("item cold start: %d of %d items held out (first interaction >= %d), %d test events, %d training events",
                n_held, n_items, cutoff, len(test_events), len(train_events))
    return split


def evaluate_cold_start(
    split: ColdStartSplit,
    models: Sequence[ContentModel],
    *,
    aggregate: str = "mean",
    reference: str | None = None,
    include_random: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
) -> ColdStartResult:
    """Rank the held-out items for every evaluated user with each model's item vectors.

    ``reference`` names the model the ratios are computed against (default: the first model
    without ``trained_on``, i.e. the frozen encoder, else the first model). A model whose
    ``trained_on`` differs from ``split.train_sha256`` saw other data than the training part and
    is refused.
    """
    for value in (aggregate, *(m.aggregate for m in models if m.aggregate is not None)):
        if value not in AGGREGATES:
            raise InputError(f"aggregate={value!r} is not one of {list(AGGREGATES)}")
    if not models:
        raise InputError("models is empty; pass at least one ContentModel (e.g. the frozen encoder's item vectors)")
    names = [m.name for m in models] + ([RANDOM_NAME] if include_random else [])
    if len(set(names)) != len(names):
        raise InputError(f"model names {names} repeat a name; give each model its own name")
    for model in models:
        check_no_leakage(split, model)
    if reference is None:
        reference = next((m.name for m in models if m.trained_on is None), models[0].name)
    if reference not in names:
        raise InputError(f"reference={reference!r} is not among the models {names}")
    users, histories, relevant = _users(split)
    if users.size == 0:
        raise InputError("no user has both a training event and a held-out interaction; nothing to evaluate")
    n_relevant = np.array([r.size for r in relevant])
    max_k = max(RECALL_KS + NDCG_KS)
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for model in models:
        top = _rank(model, split, histories, model.aggregate or aggregate, max_k)
        per_user[model.name] = _metrics(mark_hits(top, relevant), n_relevant)
    if include_random:
        rng = np.random.default_rng(seed)
        k = min(max_k, split.held_out.size)
        top = np.stack([rng.permutation(split.held_out.size)[:k] for _ in range(users.size)])
        per_user[RANDOM_NAME] = _metrics(mark_hits(top, relevant), n_relevant)
    metrics = {name: {metric: bootstrap_ci(values, n_resamples=n_resamples, seed=seed) for metric, values in by_metric.items()}
               for name, by_metric in per_user.items()}
    ratios = {}
    for name, by_metric in per_user.items():
        ratios[name] = {}
        for metric, values in by_metric.items():
            base = per_user[reference][metric]
            if base.any():
                ratios[name][metric] = bootstrap_ratio_ci(values, base, n_resamples=n_resamples, seed=seed)
            else:
                ratios[name][metric] = Interval(float("nan"), float("nan"), float("nan"))
    return ColdStartResult(
        n_items_held_out=int(split.held_out.size),
        n_items_train=int(split.train_events["item_id"].nunique()),
        n_users=int(users.size),
        n_test_events=int(len(split.test_events)),
        cutoff=split.cutoff,
        aggregate=aggregate,
        reference=reference,
        train_sha256=split.train_sha256,
        metrics=metrics,
        ratios=ratios,
        aggregates={**{m.name: m.aggregate or aggregate for m in models}, **({RANDOM_NAME: "-"} if include_random else {})},
        users=users,
        per_user=per_user,
    )


def scored_items(split: ColdStartSplit) -> np.ndarray:
    """Catalog rows ``[n]`` (sorted) whose vectors :func:`evaluate_cold_start` reads: the held-out
    items and the training items of the evaluated users. Other rows may hold anything (zeros),
    which spares encoding items no evaluated user touched."""
    _, histories, _ = _users(split)
    return np.union1d(split.held_out, np.concatenate([rows for rows, _ in histories] or [np.empty(0, np.int64)]))


def check_no_leakage(split: ColdStartSplit, model: ContentModel) -> None:
    """Refuse a fine-tuned model whose training data is not exactly the split's training part."""
    if model.trained_on is not None and model.trained_on != split.train_sha256:
        raise InputError(
            f"model {model.name!r} was fine-tuned on data with sha256 {model.trained_on[:12]}..., but the "
            f"training part of this split hashes to {split.train_sha256[:12]}...; it may have seen the held-out "
            "items: fine-tune on split.train_events and split.train_catalog with split.template"
        )
    vectors = np.asarray(model.item_vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(split.catalog):
        raise InputError(
            f"model {model.name!r}: item_vectors has shape {vectors.shape}; expected [n_catalog_items={len(split.catalog)}, dim]"
        )


def _users(split: ColdStartSplit) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Evaluated user ids ``[n_users]``, each user's training history (catalog rows, weights) and
    held-out relevant items (positions in ``split.held_out``)."""
    catalog_ids = split.catalog["item_id"].to_numpy()
    train = split.train_events.assign(row=_catalog_rows(split.train_events["item_id"].to_numpy(), catalog_ids))
    test_rows = _catalog_rows(split.test_events["item_id"].to_numpy(), catalog_ids)
    test = split.test_events.assign(position=np.searchsorted(split.held_out, test_rows))
    train_groups = dict(tuple(train.groupby("user_id", sort=True)))
    users, histories, relevant = [], [], []
    for user, group in test.groupby("user_id", sort=True):
        history = train_groups.get(user)
        if history is None:
            continue
        users.append(user)
        histories.append((history["row"].to_numpy(np.int64), history["weight"].to_numpy(np.float64)))
        relevant.append(np.unique(group["position"].to_numpy(np.int64)))
    return np.asarray(users), histories, relevant


def _rank(model: ContentModel, split: ColdStartSplit, histories, aggregate: str, k: int) -> np.ndarray:
    """Top ``k`` positions in ``split.held_out`` ``[n_users, k]`` by content similarity."""
    vectors = _normalized(model.item_vectors)
    candidates = vectors[split.held_out]
    if aggregate == "mean":
        rows = np.concatenate([h[0] for h in histories])
        weights = np.concatenate([np.maximum(h[1], 1e-6) for h in histories])
        owners = np.repeat(np.arange(len(histories)), [h[0].size for h in histories])
        matrix = sparse.csr_matrix((weights, (owners, rows)), shape=(len(histories), len(vectors)))
        scores = _normalized(np.asarray(matrix @ vectors)) @ candidates.T
    else:
        scores = np.stack([(vectors[rows] @ candidates.T).max(axis=0) for rows, _ in histories])
    return _top_k(scores.astype(np.float32), min(k, candidates.shape[0]))


def _metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    out = {f"Recall@{k}": recall_at_k(hits, n_relevant, k) for k in RECALL_KS if k <= hits.shape[1]}
    out.update({f"NDCG@{k}": ndcg_at_k(hits, n_relevant, k) for k in NDCG_KS if k <= hits.shape[1]})
    return out


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores per row, best first; ties keep the lower index."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part.sort(axis=1)
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _catalog_rows(event_items: np.ndarray, catalog_ids: np.ndarray) -> np.ndarray:
    """Catalog row of each event's item ``[n_events]`` (-1 when missing); ids compared as text
    when the two columns hold different kinds (int vs str)."""
    if np.issubdtype(event_items.dtype, np.integer) != np.issubdtype(catalog_ids.dtype, np.integer):
        event_items, catalog_ids = event_items.astype(str), catalog_ids.astype(str)
    return pd.Index(catalog_ids).get_indexer(event_items)
