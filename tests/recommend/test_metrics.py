import math

import numpy as np
import pytest

from tastemap.errors import InputError
from tastemap.runtime.recommend.metrics import (
    bootstrap_ci,
    bootstrap_ratio_ci,
    catalogue_coverage,
    hit_rate_at_k,
    intra_list_diversity,
    mark_hits,
    ndcg_at_k,
    recall_at_k,
)

TOP = np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]])
RELEVANT = [np.array([2]), np.array([9]), np.array([7, 9])]


def test_mark_hits_and_hit_rate():
    hits = mark_hits(TOP, RELEVANT)
    assert hits.tolist() == [[False, False, True], [False, False, False], [True, False, True]]
    assert hit_rate_at_k(hits, 1).tolist() == [0.0, 0.0, 1.0]
    assert hit_rate_at_k(hits, 3).tolist() == [1.0, 0.0, 1.0]


def test_recall_counts_share_of_relevant_items():
    hits = mark_hits(TOP, RELEVANT)
    assert recall_at_k(hits, [1, 1, 2], 1).tolist() == [0.0, 0.0, 0.5]
    assert recall_at_k(hits, [1, 1, 2], 3).tolist() == [1.0, 0.0, 1.0]


def test_ndcg_hand_computed():
    hits = mark_hits(TOP, RELEVANT)
    ndcg = ndcg_at_k(hits, [1, 1, 2], 3)
    # user 0: one hit at rank 3 -> (1/log2(4)) / 1
    assert ndcg[0] == pytest.approx(0.5)
    assert ndcg[1] == 0.0
    # user 2: hits at ranks 1 and 3, ideal has both at ranks 1 and 2
    assert ndcg[2] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(hits, [1, 1, 2], 1).tolist() == [0.0, 0.0, 1.0]


def test_leave_one_out_hit_at_rank_two():
    hits = mark_hits(np.array([[5, 6]]), [np.array([6])])
    assert ndcg_at_k(hits, [1], 2)[0] == pytest.approx(1 / math.log2(3))


def test_k_out_of_range_is_an_error():
    hits = mark_hits(TOP, RELEVANT)
    with pytest.raises(InputError, match=r"k=4 should be between 1 and the ranked list length 3"):
        hit_rate_at_k(hits, 4)
    with pytest.raises(InputError, match="relevant has 2 users but top_items has 3 rows"):
        mark_hits(TOP, RELEVANT[:2])


def test_catalogue_coverage():
    top = np.array([[0, 1], [1, 2]])
    assert catalogue_coverage(top, 10, 1) == pytest.approx(0.2)
    assert catalogue_coverage(top, 10, 2) == pytest.approx(0.3)


def test_intra_list_diversity_jaccard():
    features = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    top = np.array([[0, 1, 2], [3, 4, 0]])
    ild = intra_list_diversity(top, features, 3)
    # pairs (0,1)=1-1/2, (0,2)=1, (1,2)=1
    assert ild[0] == pytest.approx(2.5 / 3)
    # two featureless items are identical (0), each against item 0 is 1
    assert ild[1] == pytest.approx(2 / 3)
    assert intra_list_diversity(top, features, 1).tolist() == [0.0, 0.0]


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.tile([0.0, 1.0], 100)
    a = bootstrap_ci(values, seed=3)
    b = bootstrap_ci(values, seed=3)
    assert a == b
    assert a.mean == 0.5
    assert 0.4 < a.low < 0.5 < a.high < 0.6
    constant = bootstrap_ci(np.full(50, 0.25))
    assert (constant.low, constant.mean, constant.high) == (0.25, 0.25, 0.25)


def test_bootstrap_ratio_is_paired():
    values = np.tile([0.0, 1.0], 50)
    same = bootstrap_ratio_ci(values, values)
    assert (same.low, same.mean, same.high) == (1.0, 1.0, 1.0)
    double = bootstrap_ratio_ci(2 * values, values)
    assert double.mean == pytest.approx(2.0) and double.low == pytest.approx(2.0)
    with pytest.raises(InputError, match="reference metric is 0 for every user"):
        bootstrap_ratio_ci(values, np.zeros_like(values))
