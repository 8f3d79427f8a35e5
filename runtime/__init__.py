"""Runtime stage: batched ONNX inference, interest layers, clustering, recommendation, evaluation.

Names are imported on first use, so that ``tastemap --help`` and light imports stay fast.
"""

from importlib import import_module

_EXPORTS = {
    "baselines": ("EASE", "ContentSingleVector", "ItemKNN", "MostPop"),
    "clustering": ("resolve_backend",),
    "data": ("CatalogColumns", "DataReport", "EventColumns", "align_events", "load_movielens", "read_catalog",
             "read_events", "render_item_texts"),
    "demo": ("run_demo",),
    "encoder": ("EncodeStats", "Encoder"),
    "evaluate": ("Evaluation", "Split", "compare_models", "evaluate_model", "evaluation_table", "split_events",
                 "tune_blend"),
    "interactions": ("Interactions",),
    "layers": ("TimeWindows", "UserItems"),
    "metrics": ("bootstrap_ci", "hit_rate_at_k", "ndcg_at_k", "recall_at_k"),
    "profile_io": ("read_profiles", "write_profiles"),
    "profiles": ("InterestProfiler", "UserInterests", "UserProfiles"),
    "recommend": ("BlendWeights", "Explanation", "Recommendation", "TastemapRecommender"),
    "report": ("render_report", "write_report"),
    "segments": ("UserSegmenter", "write_segments"),
    "streaming": ("EncodeFileResult", "encode_to_file"),
    "topics": ("TopicTree", "fit_topic_tree"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'tastemap.runtime' has no attribute {name!r}")
    value = getattr(import_module(f"tastemap.runtime.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
