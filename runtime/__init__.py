from tastemap.runtime.baselines import EASE, ContentSingleVector, ItemKNN, MostPop
from tastemap.runtime.clustering import resolve_backend
from tastemap.runtime.data import (
    CatalogColumns,
    DataReport,
    EventColumns,
    align_events,
    load_movielens,
    read_catalog,
    read_events,
    render_item_texts,
)
from tastemap.runtime.demo import run_demo
from tastemap.runtime.encoder import EncodeStats, Encoder
from tastemap.runtime.evaluate import Evaluation, Split, compare_models, evaluate_model, evaluation_table, split_events, tune_blend
from tastemap.runtime.interactions import Interactions
from tastemap.runtime.layers import TimeWindows, UserItems
from tastemap.runtime.metrics import bootstrap_ci, hit_rate_at_k, ndcg_at_k, recall_at_k
from tastemap.runtime.profile_io import read_profiles, write_profiles
from tastemap.runtime.profiles import InterestProfiler, UserInterests, UserProfiles
from tastemap.runtime.recommend import BlendWeights, Explanation, Recommendation, TastemapRecommender
from tastemap.runtime.report import render_report, write_report
from tastemap.runtime.segments import UserSegmenter, write_segments
from tastemap.runtime.streaming import EncodeFileResult, encode_to_file
from tastemap.runtime.topics import TopicTree, fit_topic_tree
