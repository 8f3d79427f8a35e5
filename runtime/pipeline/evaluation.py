"""What ``tastemap evaluate`` and ``tastemap demo`` evaluate, protocol by protocol.

:func:`evaluate_protocol` runs the evaluation that a protocol of the registry
(:mod:`~tastemap.runtime.recommend.protocols`) names:

- :func:`evaluate_warm`: a chronological split (leave-last-out or temporal) and every model of
  :func:`~tastemap.runtime.recommend.comparison.compare_models`, optionally with SASRec and with an
  encoder fine-tuned on the split's training part next to the frozen one;
- :func:`evaluate_item_cold_start`: the newest items held out
  (:mod:`~tastemap.runtime.recommend.cold_start`), ranked by the frozen and the fine-tuned encoder.

A fine-tuned encoder comes from a :data:`TunedEncoder`: a callable given the training events and
catalog of one split (and a name for that part, for messages) that returns an encoder trained on
exactly those events, with its recorded data hash. The command line builds it from the export
stage (``--finetune`` trains one per split, ``--finetuned DIR`` checks a given one), so that this
module needs no PyTorch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from tastemap.runtime.pipeline.inputs import Inputs

logger = logging.getLogger(__name__)

# (training events, training catalog, name of that part) -> (encoder trained on them, its data sha256)
TunedEncoder = Callable[[pd.DataFrame, pd.DataFrame, str], tuple[object, str]]


def evaluate_protocol(
    inputs: Inputs,
    protocol: str,
    *,
    tune: bool = False,
    tuned_encoder: TunedEncoder | None = None,
    sasrec: bool = False,
    seed: int = 0,
):
    """Run the evaluation of the registered protocol named ``protocol`` on ``inputs``;
    ``tune`` and ``sasrec`` apply to the protocols that compare models only. Returns what the
    protocol's evaluation returns (:class:`WarmEvaluation` for the chronological protocols)."""
    from tastemap.errors import InputError
    from tastemap.runtime.recommend.protocols import get_protocol, protocol_names

    entry = get_protocol(protocol)
    options = {}
    if entry.compares_models:
        options = {"tune": tune, "sasrec": sasrec}
    elif tune or sasrec:
        comparing = ", ".join(protocol_names(compares_models=True))
        raise InputError(f"--tune and --sasrec apply to the chronological protocols ({comparing}); {entry.name}: "
                         f"{entry.evaluates}")
    return entry.evaluation_function()(inputs, entry.name, tuned_encoder=tuned_encoder, seed=seed, **options)


@dataclass
class WarmEvaluation:
    """One warm protocol: the model table (ratios to EASE), the fine-tuned models' paired ratios
    to their frozen counterparts (empty without a fine-tuned encoder) and, with ``tune``, the
    blend weights and content signal chosen on validation per encoder (``frozen``, ``fine-tuned``)."""

    protocol: str
    table: pd.DataFrame
    finetuned_vs_frozen: pd.DataFrame
    weights: dict = field(default_factory=dict)
    content_signals: dict = field(default_factory=dict)


def evaluate_warm(
    inputs: Inputs,
    protocol: str,
    *,
    tune: bool = False,
    tuned_encoder: TunedEncoder | None = None,
    sasrec: bool = False,
    seed: int = 0,
) -> WarmEvaluation:
    """Split ``inputs`` by ``protocol``, choose the blend on validation when ``tune``, and
    evaluate every model; with ``tuned_encoder``, the content models and tastemap run a second
    time on the vectors of an encoder fine-tuned on the training part only."""
    from tastemap.runtime.io.events import render_item_texts
    from tastemap.runtime.recommend.comparison import (
        compare_models,
        content_signal,
        ease_name,
        finetuned_pairs,
        tune_blend,
    )
    from tastemap.runtime.recommend.model_evaluation import evaluation_table
    from tastemap.runtime.recommend.splits import split_events
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    split = split_events(inputs.interactions, protocol)
    finetuned = None
    if tuned_encoder is not None:
        encoder, data_sha256 = tuned_encoder(split.train.to_frame(), inputs.catalog, f"the {protocol} split")
        check_trained_on_split(split, inputs.catalog, data_sha256, protocol)
        finetuned = (encoder, np.asarray(encoder.encode(render_item_texts(inputs.catalog)), np.float32))
    weights, tuned_weights, signals = None, None, {}
    if tune:  # blend weights and content signal, chosen per encoder on the validation part of split.train
        weights, _ = tune_blend(TastemapRecommender(seed=seed), split, catalog=inputs.catalog,
                                item_vectors=inputs.item_vectors, encoder=inputs.encoder)
        signals["frozen"] = content_signal(weights)
        if finetuned is not None:
            tuned_weights, _ = tune_blend(TastemapRecommender(seed=seed), split, catalog=inputs.catalog,
                                          item_vectors=finetuned[1], encoder=finetuned[0])
            signals["fine-tuned"] = content_signal(tuned_weights)
    results = compare_models(split, catalog=inputs.catalog, item_vectors=inputs.item_vectors, encoder=inputs.encoder,
                             weights=weights, seed=seed, sasrec=sasrec, finetuned=finetuned,
                             finetuned_weights=tuned_weights)
    return WarmEvaluation(protocol=protocol, table=evaluation_table(results, reference=ease_name(), seed=seed),
                          finetuned_vs_frozen=finetuned_pairs(results, seed=seed),
                          weights={"frozen": weights, "fine-tuned": tuned_weights}, content_signals=signals)


def check_trained_on_split(split, catalog: pd.DataFrame, data_sha256: str, protocol: str) -> None:
    """Refuse an encoder whose recorded training data is not exactly ``split.train``: the
    evaluation's fine-tune must never have seen a test interaction."""
    from tastemap.errors import InputError
    from tastemap.runtime.io.fingerprint import training_sha256

    expected = training_sha256(split.train.to_frame(), catalog)
    if data_sha256 != expected:
        raise InputError(f"the fine-tuned encoder was trained on data with sha256 {str(data_sha256)[:12]}..., but the "
                         f"training part of the {protocol} split hashes to {expected[:12]}...; it may have seen "
                         "test interactions")


def evaluate_item_cold_start(
    inputs: Inputs,
    protocol: str = "item-cold-start",
    *,
    tuned_encoder: TunedEncoder | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
):
    """The item cold-start protocol on ``inputs``: the frozen encoder (its item vectors) and,
    with ``tuned_encoder``, an encoder fine-tuned on the training part, each scoring by the mean
    and by the best single item of the user's history; a random ranking for scale. Returns the
    :class:`~tastemap.runtime.recommend.cold_start.ColdStartResult` (reference: the frozen
    encoder with the history's mean). ``protocol``: its name in the registry (every evaluation
    takes one; see :func:`evaluate_protocol`)."""
    from tastemap.runtime.io.events import render_item_texts
    from tastemap.runtime.recommend.cold_start import AGGREGATES, ContentModel, evaluate_cold_start, split_new_items

    split = split_new_items(inputs.interactions.to_frame(), inputs.catalog, holdout_fraction=holdout_fraction)
    models = [ContentModel(f"Frozen encoder ({aggregate})", inputs.item_vectors, aggregate=aggregate)
              for aggregate in AGGREGATES]
    if tuned_encoder is not None:
        encoder, data_sha256 = tuned_encoder(split.train_events, split.train_catalog, "the item cold-start split")
        vectors = np.asarray(encoder.encode(render_item_texts(split.catalog, split.template)), np.float32)
        models += [ContentModel(f"Fine-tuned encoder ({aggregate})", vectors, trained_on=data_sha256, aggregate=aggregate)
                   for aggregate in AGGREGATES]
    return evaluate_cold_start(split, models, reference=models[0].name, seed=seed)
