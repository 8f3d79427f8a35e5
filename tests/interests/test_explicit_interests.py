"""Explicit interests a person recognises: labels true of their topics, explanations that name
what the recommended item and its seeds share, and the checks of ``tastemap.bench.explicit``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from planted import make_planted, make_recommender
from tastemap.bench.explicit import explanation_figures, label_figures, normalise, release_years
from tastemap.runtime.interests.labels import display_title, is_medoid_label, medoid_label
from tastemap.runtime.interests.topics import fit_topic_tree, topic_space
from tastemap.runtime.io.events import align_events, render_item_texts

GENRES = ("Western", "Sci-Fi", "Film-Noir", "Musical")


def mixed_catalog(n_per_topic: int = 40, dim: int = 16, seed: int = 0):
    """Four planted topics. Each item carries its topic's genre, half of them a second genre
    shared by every topic (``Drama``), a fifth a tag drawn across topics, and a title with a number
    and a year in brackets; the texts of topic 3 also hold a frequent word that is not a category."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:4]
    rows, vectors = [], []
    for topic, genre in enumerate(GENRES):
        for i in range(n_per_topic):
            paths = [(genre,)] + ([("Drama",)] if i % 2 else [])
            tags = ["based on a book"] if i % 5 == 0 else []
            rows.append({"item_id": len(rows), "title": f"{genre} story {i} (part [{i % 3}]) ({1960 + i})",
                         "categories": paths, "tags": tags, "description": "midnight" if topic == 3 else ""})
            vectors.append(centres[topic] + 0.2 * rng.normal(size=dim))
    vectors = np.asarray(vectors, np.float32)
    return pd.DataFrame(rows), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def mixed_tree():
    catalog, vectors = mixed_catalog()
    tree, _ = fit_topic_tree(vectors, render_item_texts(catalog), n_topics=4, n_coarse_topics=2, backend="sklearn",
                             seed=0, stop_words=["tags"], categories=catalog["categories"].tolist(),
                             titles=catalog["title"].tolist())
    return catalog, tree


def test_labels_hold_no_number_or_bracket(mixed_tree):
    _, tree = mixed_tree
    for level in tree.levels:  # phrases only: a medoid's title is shown as it is
        for words in level.keywords:
            assert not any(re.search(r"[\d()\[\]{}]", w) for w in words if not is_medoid_label(w)), words


def test_first_label_term_is_carried_by_most_members(mixed_tree):
    catalog, tree = mixed_tree
    terms = [{normalise(p[-1]) for p in paths} | {normalise(t) for t in tags}
             for paths, tags in zip(catalog["categories"], catalog["tags"])]
    figures = label_figures(tree, terms)["levels"]
    fine = figures[1]
    assert fine["labelled_by_phrases"] == 4 and fine["first_term_coverage_min"] == 1.0  # each topic's genre
    assert sorted(name.split(", ")[0] for name in tree.fine.names) == sorted(g.lower() for g in GENRES)
    for level in tree.levels:  # every term of a phrase label is held by at least half of the members
        for topic, name in enumerate(level.names):
            members = np.flatnonzero(level.labels == topic)
            texts = [render_item_texts(catalog.iloc[[i]])[0].lower() for i in members]
            for term in [w for w in level.keywords[topic][:3] if not is_medoid_label(w)]:
                assert np.mean([term in t for t in texts]) >= 0.5, (name, term)
    coarse = figures[0]  # three genres of 40 items and Drama spread like the catalogue's: no true phrase
    assert coarse["named_by_medoids"] == [tree.levels[0].names[0]] and coarse["first_term_coverage_min"] == 1.0
    assert tree.levels[0].names[0].startswith("like ") and tree.levels[0].keywords[1][0] == "western"


def test_a_topic_without_a_true_phrase_is_named_by_its_medoids():
    catalog, vectors = mixed_catalog()
    tree, _ = fit_topic_tree(vectors, render_item_texts(catalog), n_topics=4, n_coarse_topics=None,
                             backend="sklearn", seed=0, stop_words=["tags"], titles=catalog["title"].tolist(),
                             category_weight=0.0)
    texts = [f"Film {i}. word{i % 7}" for i in range(len(catalog))]  # no phrase held by two items
    bare, _ = fit_topic_tree(vectors, texts, n_topics=4, n_coarse_topics=None, backend="sklearn", seed=0,
                             titles=catalog["title"].tolist())
    titles = catalog["title"].to_numpy()
    for topic, name in enumerate(bare.fine.names):
        assert name == medoid_label([titles[i] for i in bare.fine.medoids[topic]])
        assert name.startswith("like “") and "”" in name
    assert not any(is_medoid_label(n) for n in tree.fine.names)
    assert display_title("Barfly (1987)") == "Barfly" and display_title("Heat") == "Heat"


def test_topic_space_joins_text_and_categories_at_equal_weight():
    catalog, vectors = mixed_catalog(n_per_topic=2)
    from tastemap.runtime.interests.layers import category_levels

    membership = category_levels(catalog["categories"].tolist())[0].items
    space = topic_space(vectors, membership, 1.0)
    assert space.shape == (8, 16 + 5)
    np.testing.assert_allclose(np.linalg.norm(space, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(space[:, :16], axis=1), np.sqrt(0.5), rtol=1e-5)
    assert topic_space(vectors, membership, 0.0) is vectors


@pytest.fixture(scope="module")
def explained():
    """The planted recommender on a catalog whose items carry their planted topic's genre, every
    third one also ``Drama`` (shared across topics), and items of topic 3 no category at all."""
    events, catalog, vectors, truth = make_planted(40)
    paths = [([] if t == 3 else [(GENRES[t],)]) + ([("Drama",)] if i % 3 == 0 and t != 3 else [])
             for i, t in enumerate(truth.item_topics)]
    catalog = catalog.assign(categories=paths, tags=[[] for _ in paths])
    data, _ = align_events(events, catalog)
    recommender = make_recommender().fit(data, catalog, vectors)
    return recommender, catalog, truth, recommender.recommend_batch(k=8)


def test_explanations_name_the_category_item_and_seed_share(explained):
    recommender, catalog, truth, frame = explained
    genres = {row.item_id: {p[-1].lower() for p in row.categories} for row in catalog.itertuples()}
    named = 0
    for row in frame.itertuples():
        shared = genres[row.item_id] & genres[row.seed_item_ids[0]]
        if shared:
            words = row.topic.replace(" and ", ", ").split(", ")
            assert set(words) == shared and row.explanation.startswith(f"because you like {row.topic}, as in ")
            if len(words) > 1:
                assert words[-1] == "drama"  # the rarer category first
            named += 1
        assert "a mix of" not in row.explanation and "a mix of" not in row.interest_label
    assert named / len(frame) >= 0.6
    figures = explanation_figures(frame, catalog)
    assert figures["a_mix_of"] == 0 and figures["names_shared_genre"] >= 0.6
    assert figures["names_shared_genre"] > figures["names_shared_genre_shuffled"]


def test_seeds_alone_explain_an_item_that_shares_nothing_nameable(explained):
    recommender, catalog, truth, frame = explained
    bare = frame[frame["topic"] == ""]
    for row in bare.itertuples():
        assert row.explanation.startswith("because you liked " + " and ".join(map(display_title, row.seed_titles)))
        assert not any(truth.item_topics[s] == truth.item_topics[row.item_id] and truth.item_topics[s] != 3
                       for s in row.seed_item_ids[:1])
    topic_3 = frame[[truth.item_topics[i] == 3 for i in frame["item_id"]]]
    assert len(topic_3) and set(topic_3["topic"]) <= {""} | set(recommender.profiler_.topic_tree_.fine.names)


def test_explanation_figures_count_genres_labels_and_mixes():
    catalog = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["A (1990)", "B (1991)", "C", "D"],
                            "categories": [[("Comedy",), ("Sci-Fi",)], [("Sci-Fi",)], [("Drama",)], [("Comedy",)]],
                            "tags": [[]] * 4})
    frame = pd.DataFrame({
        "item_id": [1, 1, 3, 4],
        "seed_item_ids": [[2], [4], [1], [1]],
        "seed_titles": [["B (1991)"], ["D"], ["A (1990)"], ["A (1990)"]],
        "topic": ["sci-fi", "", "", "comedy"],
        "interest_label": ["sci-fi", "like D", "a mix of comedy + comedy", "comedy"],
        "explanation": ["because you like sci-fi, as in B (1991)", "because you liked D",
                        "because you like: a mix of comedy + comedy (from A (1990))",
                        "because you like comedy, as in A (1990)"],
    })
    figures = explanation_figures(frame, catalog)
    assert figures["names_shared_genre"] == 0.5  # rows 1 and 4; row 2 shares comedy but names only the seed
    assert figures["item_and_a_seed_share_a_genre"] == 0.75
    assert figures["a_mix_of"] == 1 and figures["a_mix_of_x_plus_x"] == 1
    assert figures["seeds_only"] == 0.5 and figures["most_frequent_ground_share"] == 0.25
    np.testing.assert_array_equal(release_years(["A (1990)", "C", "Up (2009) "]), ["1990", "", "2009"])
