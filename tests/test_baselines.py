import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime.baselines import EASE, ContentSingleVector, ItemKNN, MostPop
from tastemap.runtime.interactions import Interactions

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
    model = ContentSingleVector(item_vectors=vectors).fit(data)
    scores = model.score(np.array([1]))
    np.testing.assert_allclose(scores, [[1 / np.sqrt(3)] * 3 + [0, 0]], atol=1e-6)


def test_errors_name_values(data):
    with pytest.raises(InputError, match=r"item_vectors has shape \(3, 2\); expected \[5, dim\]"):
        ContentSingleVector(item_vectors=np.zeros((3, 2))).fit(data)
    with pytest.raises(InputError, match="l2=0 should be > 0"):
        EASE(l2=0).fit(data)
    with pytest.raises(InputError, match="MostPop is not fitted yet"):
        MostPop().score(np.array([0]))
