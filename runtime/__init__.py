"""Runtime stage, one subpackage per domain: ``encode`` (text to vectors), ``io`` (inputs),
``interests`` (layers, topics, per-user interests, segments), ``recommend`` (recommendation,
baselines, evaluation, report), ``pipeline`` (end-to-end jobs), ``spark`` and ``cli``.

Names are imported on first use, so that ``tastemap --help`` and light imports stay fast.
"""

from importlib import import_module

_EXPORTS = {
    "encode.encoder": ("EncodeStats", "Encoder"),
    "encode.streaming": ("EncodeFileResult", "encode_to_file"),
    "io.catalog": ("read_catalog",),
    "io.columns": ("CatalogColumns", "EventColumns"),
    "io.events": ("DataReport", "align_events", "load_movielens", "read_events", "render_item_texts"),
    "io.interactions": ("Interactions",),
    "interests.base": ("NotFittedError",),
    "interests.clustering": ("resolve_backend",),
    "interests.layers": ("TimeWindows", "UserItems"),
    "interests.profile_io": ("read_profiles", "write_profiles"),
    "interests.profiles": ("InterestProfiler", "UserInterests", "UserProfiles"),
    "interests.segments": ("UserSegmenter", "write_segments"),
    "interests.topics": ("TopicTree", "fit_topic_tree"),
    "recommend.baselines": ("EASE", "ContentSingleVector", "ItemKNN", "MostPop"),
    "recommend.comparison": ("compare_models", "tune_blend"),
    "recommend.model_evaluation": ("Evaluation", "evaluate_model", "evaluation_table"),
    "recommend.splits": ("Split", "split_events"),
    "recommend.metrics": ("bootstrap_ci", "hit_rate_at_k", "ndcg_at_k", "recall_at_k"),
    "recommend.recommender": ("BlendWeights", "Explanation", "Recommendation", "TastemapRecommender"),
    "recommend.report": ("render_report", "write_report"),
    "pipeline.demo": ("run_demo",),
    "pipeline.inputs": ("Inputs", "load_inputs"),
    "pipeline.model": ("Segment", "TastemapModel"),
    "pipeline.model_update": ("UpdateSummary",),
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
