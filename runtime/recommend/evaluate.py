"""Offline evaluation in one import: the splits (:mod:`~tastemap.runtime.recommend.splits`), one
model on a split and the metric tables (:mod:`~tastemap.runtime.recommend.model_evaluation`), and
the model comparison with blend tuning (:mod:`~tastemap.runtime.recommend.comparison`).

>>> from tastemap.runtime.recommend.evaluate import compare_models, split_events  # doctest: +SKIP
"""

from tastemap.runtime.recommend.comparison import (
    DEFAULT_GRID,
    EASE_L2,
    FINETUNED,
    LITERAL_GRID,
    LITERAL_NAME,
    compare_models,
    content_signal,
    ease_name,
    finetuned_pairs,
    genre_features,
    multi_interest_content,
    tune_blend,
)
from tastemap.runtime.recommend.model_evaluation import (
    HIT_KS,
    NDCG_KS,
    Evaluation,
    evaluate_model,
    evaluation_table,
    rank_top_items,
)
from tastemap.runtime.recommend.splits import Split, split_events, validation_split

__all__ = [
    "DEFAULT_GRID", "EASE_L2", "FINETUNED", "HIT_KS", "LITERAL_GRID", "LITERAL_NAME", "NDCG_KS", "Evaluation", "Split",
    "compare_models", "content_signal", "ease_name", "evaluate_model", "evaluation_table", "finetuned_pairs",
    "genre_features", "multi_interest_content", "rank_top_items", "split_events", "tune_blend", "validation_split",
]
