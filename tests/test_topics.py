"""Topic tree: planted topics recovered, tree consistency, c-TF-IDF keywords, exact medoids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import normalized_mutual_info_score

from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.errors import InputError
from tastemap.runtime.io.events import render_item_texts
from tastemap.runtime.interests.topics import class_tfidf, fit_topic_tree, medoids


@pytest.fixture(scope="module")
def planted():
    data = make_synthetic(n_users=50, n_items=600, n_events=500, n_topics=6, dim=24, noise=0.4, seed=1)
    tree, stats = fit_topic_tree(data.item_vectors, render_item_texts(data.catalog), n_topics=6,
                                 n_coarse_topics=2, backend="sklearn", seed=0)
    return data, tree, stats


def test_planted_topics_are_recovered_with_their_words(planted):
    data, tree, stats = planted
    assert stats["backend"] == "sklearn" and stats["n_topics"] == [2, 6]
    fine = tree.fine
    assert normalized_mutual_info_score(data.item_topics, fine.labels) == pytest.approx(1.0)
    for topic in range(6):
        planted_topic = np.bincount(data.item_topics[fine.labels == topic]).argmax()
        assert set(fine.keywords[topic][:3]) == set(data.topic_words[planted_topic])


def test_tree_is_consistent_and_ordered(planted):
    data, tree, _ = planted
    coarse, fine = tree.levels
    np.testing.assert_array_equal(coarse.labels, fine.parents[fine.labels])
    assert fine.sizes.sum() == coarse.sizes.sum() == 600
    assert list(coarse.sizes) == sorted(coarse.sizes, reverse=True)
    assert list(fine.parents) == sorted(fine.parents)
    np.testing.assert_allclose(np.linalg.norm(fine.centroids, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(tree.assign(data.item_vectors[:50]), np.stack([coarse.labels, fine.labels], 1)[:50])
    tree_dict = tree.to_dict(data.catalog["item_id"].to_numpy(), data.catalog["title"].to_numpy())
    assert tree_dict["n_topics"] == [2, 6]
    assert sum(len(node["children"]) for node in tree_dict["topics"]) == 6
    assert tree_dict["topics"][0]["medoids"][0]["item_id"] == int(coarse.medoids[0, 0]) + 1


def test_medoids_minimise_summed_distance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, 3, 30)
    found = medoids(x, labels, 3, 2)
    for group in range(3):
        members = np.flatnonzero(labels == group)
        cost = ((x[members, None] - x[None, members]) ** 2).sum(-1).sum(1)
        assert list(found[group]) == list(members[np.argsort(cost, kind="stable")[:2]])
    assert (medoids(x[:2], np.array([0, 0]), 1, 3)[0, 2]) == -1


def test_class_tfidf_prefers_distinctive_words():
    counts = sparse.csr_matrix(np.array([[2, 1, 0], [1, 1, 0], [0, 1, 3]], np.float32))
    keywords = class_tfidf((counts, np.array(["space", "film", "horse"])), np.array([0, 0, 1]), 2, 2)
    assert keywords == [["space", "film"], ["horse", "film"]]


def test_fit_topic_tree_rejects_impossible_sizes():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(InputError, match="n_items=4 should be >= n_topics=5"):
        fit_topic_tree(x, ["a"] * 4, n_topics=5)
    with pytest.raises(InputError, match="n_coarse_topics=3 should be between 1 and n_topics - 1 = 2"):
        fit_topic_tree(x, ["a"] * 4, n_topics=3, n_coarse_topics=3)
    tree, _ = fit_topic_tree(x, ["", "", "", ""], n_topics=2, n_coarse_topics=None, backend="sklearn")
    assert len(tree.levels) == 1 and tree.fine.names == ["topic 0", "topic 1"]
