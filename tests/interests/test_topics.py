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
    texts = [t.lower() for t in render_item_texts(data.catalog)]
    for topic in range(6):
        members = np.flatnonzero(fine.labels == topic)
        planted_topic = np.bincount(data.item_topics[members]).argmax()
        true_words = {w for w in data.topic_words[planted_topic] if np.mean([w in texts[i] for i in members]) >= 0.5}
        assert len(true_words) >= 2 and set(fine.keywords[topic][:3]) == true_words  # only words most members hold


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


# label rules ------------------------------------------------------------------------------------

from tastemap.runtime.interests.labels import (  # noqa: E402
    concentration,
    extract_phrases,
    stop_word_set,
    text_phrases,
)

GENRES = (("Sci-Fi", "space", "robots"), ("Film-Noir", "detective", "femme fatale"),
          ("History", "world war ii", "soldiers"), ("Romance", "love letters", "wedding"))


def labelled_catalog(n_per_topic: int = 40, dim: int = 16, seed: int = 0):
    """Four planted topics whose texts carry a hyphenated genre, multi-word tags, French title
    words, years and a noise tag on a fifth of all items."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:4]
    texts, vectors, categories, topics = [], [], [], []
    for topic, (genre, tag_a, tag_b) in enumerate(GENRES):
        for i in range(n_per_topic):
            tags = [tag_a, tag_b] + (["in netflix queue"] if i % 5 == 0 else [])
            title = f"La vie de {['Paul', 'Marie', 'Jean', 'Anne'][i % 4]} {i} ({1950 + i})"
            texts.append(f"{title}. {genre}. Tags: {', '.join(tags)}.")
            vectors.append(centres[topic] + 0.2 * rng.normal(size=dim))
            categories.append([(genre,)])
            topics.append(topic)
    vectors = np.asarray(vectors, np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors, categories, np.asarray(topics)


def test_phrases_keep_hyphens_and_multi_word_terms_and_drop_stop_words_and_numbers():
    stop = stop_word_set(["tags"])
    found = {key for key, _ in text_phrases("La vie de Marie (1995). Sci-Fi, Film-Noir. Tags: world war ii, "
                                            "l'amour fou, Schindler's list, part II.", stop)}
    assert "sci fi" in found and "film noir" in found and "world war ii" in found
    assert not {"sci", "fi", "la", "de", "1995", "ii", "part ii", "tags"} & found
    assert "amour fou" in found and "schindler list" in found and "schindler's" not in found
    spellings = dict(text_phrases("Sci-Fi. sci-fi. Sci fi", stop))
    assert spellings["sci fi"] in ("sci-fi", "sci fi")


def test_labels_are_phrases_without_noise_and_unique_per_level():
    texts, vectors, categories, topics = labelled_catalog()
    tree, stats = fit_topic_tree(vectors, texts, n_topics=4, n_coarse_topics=2, backend="sklearn", seed=0,
                                 stop_words=["tags"], categories=categories)
    fine, coarse = tree.fine, tree.levels[0]
    assert stats["phrase_vectors"] == "item means"
    assert coarse.names[0].startswith("like “La vie de ")  # three genres, none held by half: named by medoids
    phrase_labels = [name for name in fine.names + coarse.names if not name.startswith("like ")]
    words = {w for names in phrase_labels for phrase in names.split(", ") for w in phrase.split()}
    assert not words & {"la", "vie", "de", "netflix", "queue", "fi", "sci", "noir"}
    assert not any(any(c.isdigit() for c in w) for w in words)
    for topic in range(4):
        planted = np.bincount(topics[fine.labels == topic]).argmax()
        genre, tag_a, tag_b = GENRES[planted]
        label = fine.keywords[topic][:3]
        assert label[0] == genre.lower()  # every item of the topic carries this category
        assert set(label[1:]) == {tag_a, tag_b}  # multi-word tags kept whole
    for level in tree.levels:
        sets = [frozenset(words[:3]) for words in level.keywords]
        assert len(set(sets)) == len(sets)
    for parent in range(coarse.n_topics):
        for child in np.flatnonzero(fine.parents == parent):
            assert frozenset(coarse.keywords[parent][:3]) != frozenset(fine.keywords[child][:3])


def test_identical_topics_still_get_different_labels():
    rng = np.random.default_rng(3)
    centres = np.eye(8, dtype=np.float32)[:3]
    vectors = np.repeat(centres, 20, axis=0) + 0.05 * rng.normal(size=(60, 8)).astype(np.float32)
    texts = ["space opera. robots."] * 60  # every topic has the same words
    tree, _ = fit_topic_tree(vectors, texts, n_topics=3, n_coarse_topics=None, backend="sklearn", seed=0)
    assert len(set(tree.fine.names)) == 3


def test_noise_tag_spread_like_the_catalogue_has_no_weight():
    texts, vectors, categories, topics = labelled_catalog()
    phrases = extract_phrases(texts, stop_word_set(["tags"]))
    names = list(phrases.names)
    from tastemap.runtime.interests.layers import category_levels

    shares = category_levels(categories)[0].items
    weight = concentration(phrases.items, shares)
    assert weight[names.index("netflix queue")] == 0.0
    assert weight[names.index("world war ii")] == 1.0


def test_an_encoder_chooses_among_candidate_phrases():
    texts, vectors, categories, topics = labelled_catalog()

    class PhraseEncoder:
        def __init__(self):
            self.calls = []

        def encode(self, batch):
            self.calls.append(list(batch))
            return np.random.default_rng(len(batch)).normal(size=(len(batch), vectors.shape[1]))

    encoder = PhraseEncoder()
    tree, stats = fit_topic_tree(vectors, texts, n_topics=4, n_coarse_topics=None, backend="sklearn", seed=0,
                                 stop_words=["tags"], encoder=encoder)
    assert stats["phrase_vectors"] == "encoder" and "world war ii" in encoder.calls[0]
    assert len(set(tree.fine.names)) == 4
