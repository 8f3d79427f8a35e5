import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime.recommend.baselines import EASE, ContentLiteral, ContentSingleVector, ItemKNN, MostPop
from tastemap.runtime.recommend.evaluate import rank_top_items
from tastemap.runtime.io.interactions import Interactions

# users x items: u0 {0,1}, u1 {0,1,2}, u2 {2,3}, item 4 has no events
EVENTS = pd.DataFrame({
    "user_id": [10, 10, 11, 11, 11, 12, 12],
    "item_id": ["a", "b", "a", "b", "c", "c", "d"],
    "timestamp": [1, 2, 1, 2, 3, 1, 2],
})
ITEMS = np.array(["a", "b", "c", "d", "e"])


@pytest.fixture()
def data():
    return Interactions.from_frame(EVENTS, item_ids=ITEMS)


def test_mostpop_counts_distinct_users(data):
    scores = MostPop().fit(data).score(np.array([0, 2]))
    assert scores.tolist() == [[2, 2, 2, 1, 0], [2, 2, 2, 1, 0]]


def test_itemknn_is_cosine_between_item_columns(data):
    x = data.matrix().toarray()
    norms = np.linalg.norm(x, axis=0)
    cosine = (x.T @ x) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(cosine, 0)
    model = ItemKNN(n_neighbors=10).fit(data)
    np.testing.assert_allclose(model.similarity_.toarray(), cosine, atol=1e-6)
    np.testing.assert_allclose(model.score(np.array([0])), x[[0]] @ cosine, atol=1e-6)


def test_itemknn_keeps_n_neighbors(data):
    model = ItemKNN(n_neighbors=1).fit(data)
    assert np.diff(model.similarity_.indptr).max() == 1


def test_ease_matches_closed_form():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 8)) < 0.4).astype(np.float64)
    x[0, :] = 1  # every item has an event
    users, items = np.nonzero(x)
    data = Interactions(users=users, items=items, timestamps=np.zeros(users.size, np.int64),
                        weights=np.ones(users.size, np.float32), user_ids=np.arange(30), item_ids=np.arange(8))
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(8))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0)
    model = EASE(l2=5.0).fit(data)
    np.testing.assert_allclose(model.weights_, expected, atol=1e-5)
    np.testing.assert_allclose(model.score(np.array([3])), x[[3]] @ expected, atol=1e-5)


def test_ease_leaves_items_without_events_at_zero(data):
    model = EASE(l2=1.0).fit(data)
    assert np.all(model.weights_[4] == 0) and np.all(model.weights_[:, 4] == 0)
    assert np.all(np.diag(model.weights_) == 0)


def test_content_single_vector_is_mean_of_history(data):
    vectors = np.eye(5, dtype=np.float32)
    model = ContentSingleVector().fit(data, vectors)
    scores = model.score(np.array([1]))
    np.testing.assert_allclose(scores, [[1 / np.sqrt(3)] * 3 + [0, 0]], atol=1e-6)


CATALOG = pd.DataFrame({
    "item_id": ITEMS,
    "title": ["Airplane", "Big", "Carrie", "Dracula", "Eraserhead"],
    "categories": [[("Comedy",)], [("Comedy",)], [("Horror",)], [("Horror",)], [("Horror",), ("Drama",)]],
})
KEYWORDS = ("Comedy", "Horror", "Drama")


class KeywordEncoder:
    """Counts of KEYWORDS in a text, unit length; records every call."""

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        counts = np.array([[text.count(word) for word in KEYWORDS] for text in texts], dtype=np.float32)
        return counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)


def test_content_literal_renders_recent_history_and_ranks_the_matching_item_first(data):
    encoder = KeywordEncoder()
    item_vectors = encoder.encode([f"{t} {c}" for t, c in zip(CATALOG.title, ["Comedy", "Comedy", "Horror",
                                                                               "Horror", "Horror Drama"])])
    model = ContentLiteral(encoder=encoder, n_recent=2).fit(data, CATALOG, item_vectors)
    assert model.texts_ == [
        "Liked: Big (Comedy); Airplane (Comedy)",
        "Liked: Carrie (Horror); Big (Comedy)",  # most recent first, cut at n_recent=2
        "Liked: Dracula (Horror); Carrie (Horror)",
    ]
    assert encoder.calls[-1] == model.texts_  # one call, every user's text
    top = rank_top_items(model, np.array([0, 2]), data.matrix(), 3)
    assert top[1, 0] == 4  # Eraserhead (Horror) for the horror-only user
    assert not set(top[1]) & {2, 3}  # seen items are filtered out
    assert set(top[0, :1]) == {2} and not set(top[0]) & {0, 1}
    np.testing.assert_allclose(model.score(np.array([2]))[0], [0, 0, 1, 1, 1 / np.sqrt(2)], atol=1e-6)


def test_content_literal_scores_users_without_events_zero(data):
    train = data.subset(data.users != 2)
    encoder = KeywordEncoder()
    model = ContentLiteral(encoder=encoder).fit(train, CATALOG, np.eye(5, 3, dtype=np.float32))
    assert model.texts_[2] == "" and len(encoder.calls[0]) == 2
    assert model.score(np.array([2])).tolist() == [[0.0] * 5]


def test_content_literal_errors(data):
    vectors = np.eye(5, 3, dtype=np.float32)
    with pytest.raises(InputError, match="n_recent=0 should be an integer >= 1"):
        ContentLiteral(encoder=KeywordEncoder(), n_recent=0).fit(data, CATALOG, vectors)
    with pytest.raises(InputError, match="catalog has 4 rows; expected 5"):
        ContentLiteral(encoder=KeywordEncoder()).fit(data, CATALOG.iloc[:4], vectors)
    with pytest.raises(InputError, match=r"encoder returned shape \(3, 3\) for 3 history texts; expected \(3, 4\)"):
        ContentLiteral(encoder=KeywordEncoder()).fit(data, CATALOG, np.eye(5, 4))


def test_errors_name_values(data):
    with pytest.raises(InputError, match=r"item_vectors has shape \(3, 2\); expected \[5, dim\]"):
        ContentSingleVector().fit(data, np.zeros((3, 2)))
    with pytest.raises(InputError, match="l2=0 should be > 0"):
        EASE(l2=0).fit(data)
    with pytest.raises(InputError, match=r"this MostPop is not fitted yet; call fit\(train\) first"):
        MostPop().score(np.array([0]))

