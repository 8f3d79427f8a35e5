"""The explicit-interest bench's figures on a planted catalog."""

import numpy as np

from planted import make_planted, make_recommender
from tastemap.bench.explicit import explanation_figures, showcase
from tastemap.runtime.io.events import align_events


def test_showcase_and_explanation_figures_on_planted_data():
    events, catalog, vectors, _ = make_planted(20)
    data, _ = align_events(events, catalog)
    recommender = make_recommender().fit(data, catalog, vectors)
    recommendations = recommender.recommend_batch(k=4)
    shown = showcase(recommender.profiler_.topic_tree_, recommendations)
    tree = recommender.profiler_.topic_tree_
    assert len(shown["topic_tree"]) == tree.levels[0].n_topics == 4
    first = int(np.argmax(tree.levels[0].sizes))
    assert shown["topic_tree"][0].startswith(f"{tree.levels[0].names[first]} ({tree.levels[0].sizes[first]:,} items): ")
    assert len(shown["explanations"]) == 10
    assert shown["explanations"][0] == (f"user {recommendations.user_id[0]}, {recommendations.title[0]}: "
                                        f"{recommendations.explanation[0]}")
    figures = explanation_figures(recommendations, catalog)
    assert figures["recommendations"] == 80 and figures["a_mix_of"] == 0
    shares = recommendations["topic"].where(recommendations["topic"].astype(bool)).value_counts() / 80
    assert figures["most_frequent_ground_share"] == round(float(shares.iloc[0]), 4)
    # shelf names hold a digit and are never a reason: every explanation names the section the
    # item and a seed share
    assert figures["names_shared_genre"] == 1.0 and figures["seeds_only"] == 0.0
    assert set(recommendations["topic"]) <= {"section a", "section b", "section c", "section d"}
