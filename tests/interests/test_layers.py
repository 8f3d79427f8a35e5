"""Time and category layers on hand-built examples with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.interests.layers import (
    DAY,
    TimeWindows,
    aggregate_user_items,
    category_levels,
    decay_weights,
    layer_weights,
    onehot,
    rank_rows,
)


def log(users, items, days, weights=None, n_items=4):
    users = np.asarray(users)
    return Interactions(
        users=users, items=np.asarray(items), timestamps=(np.asarray(days) * DAY).astype(np.int64),
        weights=np.asarray(weights if weights is not None else np.ones(users.size), np.float32),
        user_ids=np.arange(users.max() + 1), item_ids=np.arange(n_items),
    )


def test_decay_weights_are_exact_per_user_reference():
    windows = TimeWindows(short_window_days=10, short_decay=0.1, long_decay=0.01)
    events = log([0, 0, 1, 1], [0, 1, 2, 3], [0, 20, 100, 105], [1.0, 2.0, 0.5, 1.0])
    short, long = decay_weights(events, windows)
    np.testing.assert_allclose(long, [math.exp(-0.2), 2.0, 0.5 * math.exp(-0.05), 1.0], rtol=1e-6)
    np.testing.assert_allclose(short, [0.0, 2.0, 0.5 * math.exp(-0.5), 1.0], rtol=1e-6)
    _, global_long = decay_weights(events, TimeWindows(long_decay=0.01, reference="global"))
    np.testing.assert_allclose(global_long[:2], [math.exp(-1.05), 2 * math.exp(-0.85)], rtol=1e-6)


def test_time_layer_orders_recent_and_overall_interests():
    # item 0/1 in topic A (old, frequent), item 2/3 in topic B (recent, rare)
    events = log([0] * 6, [0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 400, 401])
    pairs = aggregate_user_items(events, TimeWindows(short_window_days=30, long_decay=0.0))
    topics = onehot(np.array([0, 0, 1, 1]), 2)
    long = layer_weights(pairs.matrix("long"), topics).toarray()[0]
    short = layer_weights(pairs.matrix("short"), topics).toarray()[0]
    np.testing.assert_allclose(long, [4 / 6, 2 / 6], rtol=1e-6)
    np.testing.assert_allclose(short, [0.0, 1.0])


def test_aggregate_user_items_sums_pairs_and_caps_recent():
    events = log([1, 0, 0, 0, 0], [3, 2, 0, 2, 1], [5, 1, 2, 3, 4], [1, 1, 1, 0.5, 1])
    pairs = aggregate_user_items(events, TimeWindows(long_decay=0.0))
    assert pairs.indptr.tolist() == [0, 3, 4]
    assert pairs.items.tolist() == [0, 1, 2, 3]
    assert pairs.n_events.tolist() == [1, 1, 2, 1]
    np.testing.assert_allclose(pairs.long, [1, 1, 1.5, 1])
    assert (pairs.last_seen // DAY).tolist() == [2, 4, 3, 5]
    indptr, positions = pairs.recent(2)
    assert indptr.tolist() == [0, 2, 3]
    assert pairs.items[positions].tolist() == [1, 2, 3]
    with pytest.raises(InputError, match="no events"):
        aggregate_user_items(log([0], [0], [0]).subset(np.array([False])))


def test_category_weights_are_exact_on_a_hand_built_tree():
    categories = [
        [("Books", "Fiction", "Crime")],
        [("Books", "Fiction", "Fantasy"), ("Music", "Rock")],
        [("Books", "Maps")],
        [],
    ]
    levels = category_levels(categories)
    assert [lv.names.tolist() for lv in levels] == [
        ["Books", "Music"],
        ["Books > Fiction", "Books > Maps", "Music > Rock"],
        ["Books > Fiction > Crime", "Books > Fiction > Fantasy"],
    ]
    user_items = sparse.csr_matrix(np.array([[2.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 3.0]]))
    top = layer_weights(user_items, levels[0].items).toarray()
    np.testing.assert_allclose(top, [[3.5 / 4, 0.5 / 4], [0, 0]])
    middle = layer_weights(user_items, levels[1].items).toarray()
    np.testing.assert_allclose(middle[0], [2.5 / 4, 1 / 4, 0.5 / 4])
    fine = layer_weights(user_items, levels[2].items).toarray()
    np.testing.assert_allclose(fine[0], [2 / 2.5, 0.5 / 2.5])


def test_rank_rows_orders_by_value_then_column():
    matrix = sparse.csr_matrix(np.array([[0.1, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.7]]))
    indptr, columns, values = rank_rows(matrix)
    assert indptr.tolist() == [0, 3, 3, 5]
    assert columns.tolist() == [1, 2, 0, 3, 0]
    indptr, columns, values = rank_rows(matrix, top_k=1)
    assert columns.tolist() == [1, 3] and values.tolist() == pytest.approx([0.5, 0.7])


def test_time_windows_validate():
    with pytest.raises(InputError, match="short_decay=-1 should be >= 0"):
        TimeWindows(short_decay=-1)
    with pytest.raises(InputError, match=r"reference='now' is not supported; use one of \['user', 'global'\]"):
        TimeWindows(reference="now")


@pytest.mark.parametrize("groups", ["topics", "categories"])
def test_a_few_users_layer_is_the_same_bits_as_the_sparse_product(groups, monkeypatch):
    from tastemap.runtime.interests import layers

    rng = np.random.default_rng(3)
    n_items, n_groups = 300, 40
    if groups == "topics":
        item_groups = onehot(rng.integers(-1, n_groups, n_items), n_groups)  # some items in no group
    else:  # 1, 2 or 3 paths per item, shares 1/p
        paths = rng.integers(1, 4, n_items)
        rows = np.repeat(np.arange(n_items), paths)
        item_groups = sparse.csr_matrix(((1.0 / paths[rows]).astype(np.float32), (rows, rng.integers(0, n_groups, rows.size))),
                                        shape=(n_items, n_groups))
        item_groups.sum_duplicates()
    user_items = sparse.random(5, n_items, density=0.15, format="csr", dtype=np.float32, random_state=rng)
    user_items.data *= np.float32(7.3)
    user_items = sparse.vstack([user_items, sparse.csr_matrix((1, n_items), dtype=np.float32)], format="csr")
    small = layer_weights(user_items, item_groups)  # 6 users × 40 groups: summed in NumPy
    monkeypatch.setattr(layers, "SMALL_PRODUCT", 0)
    product = layer_weights(user_items, item_groups)  # the sparse product
    for matrix in (small, product):
        assert matrix.dtype == np.float32 and matrix.has_sorted_indices
    np.testing.assert_array_equal(small.indptr, product.indptr)
    np.testing.assert_array_equal(small.indices, product.indices)
    np.testing.assert_array_equal(small.data, product.data)
    assert np.diff(small.indptr)[-1] == 0  # the user without items keeps an empty row
    expected = (user_items @ item_groups).toarray().astype(np.float64)
    np.testing.assert_allclose(small.toarray()[:5], expected[:5] / expected[:5].sum(axis=1, keepdims=True), rtol=1e-6)
