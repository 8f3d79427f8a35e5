"""Catalogue-scale serving: low-rank EASE, the candidate stage and its standardisation from sums."""

import numpy as np
import pytest
from scipy import sparse

from planted import make_planted, make_recommender
from tastemap.errors import InputError
from tastemap.runtime.io.events import align_events
from tastemap.runtime.recommend import candidates as stage
from tastemap.runtime.recommend.baselines import ease_weights
from tastemap.runtime.recommend.collaborative import from_eigen, gram_product, low_rank_ease, randomized_eigh
from tastemap.runtime.recommend.recommender import BlendWeights, standardise


@pytest.fixture(scope="module")
def planted():
    events, catalog, vectors, truth = make_planted(60)
    data, _ = align_events(events, catalog)
    return data, catalog, vectors, truth


def test_low_rank_ease_keeping_every_eigenvector_is_dense_ease(planted):
    data = planted[0]
    history = data.matrix()
    model = low_rank_ease(history, l2=10.0, rank=200)
    assert model.exact and model.rank == 120 and model.n_items == 120
    dense = ease_weights(history, l2=10.0)
    np.testing.assert_allclose(model.left @ model.right.T - np.diag(model.diagonal), dense, atol=2e-6)
    np.testing.assert_allclose(model.scores(history[:7]), history[:7] @ dense, atol=2e-5)
    np.testing.assert_allclose(model.weights(np.array([3, 5, 9]), 5), dense[[3, 5, 9], 5], atol=2e-6)


def test_low_rank_ease_binarises_a_weighted_log_without_changing_it(planted):
    weighted = planted[0].matrix(binary=False)
    weighted.data *= 3.0
    before = weighted.data.copy()
    model = low_rank_ease(weighted, l2=10.0, rank=40)
    np.testing.assert_array_equal(weighted.data, before)
    np.testing.assert_array_equal(model.right, low_rank_ease(planted[0].matrix(), l2=10.0, rank=40).right)


def test_items_without_events_get_no_weight(planted):
    data = planted[0]
    history = data.matrix().tolil()
    history[:, 7] = 0
    model = low_rank_ease(history.tocsr(), l2=10.0, rank=200)
    assert model.rank == 119 and not model.left[7].any() and not model.right[7].any() and model.diagonal[7] == 0


def test_the_sums_of_right_are_summed_at_fit_and_kept_for_new_items(planted):
    model = low_rank_ease(planted[0].matrix(), l2=10.0, rank=40)
    reference = stage.Bilinear.of(model.right)  # what serving summed at its first request before
    np.testing.assert_allclose(model.right_total, reference.total, rtol=1e-12)
    np.testing.assert_allclose(model.right_gram, reference.gram, rtol=1e-12, atol=1e-12)
    padded = model.padded(model.n_items + 5)
    assert padded.right_gram is model.right_gram and padded.n_items == 125


def test_weights_written_over_the_eigenvectors_equal_those_written_apart():
    rng = np.random.default_rng(2)
    squares, vectors = np.linspace(50, 1, 8), rng.standard_normal((40, 8)).astype(np.float32)
    apart = vectors.copy()
    apart.flags.writeable = False  # read-only: the weights go to an array of their own
    reference = from_eigen(squares, apart, np.arange(40), 40, l2=5.0, exact=False, block=7)
    over = from_eigen(squares, vectors, np.arange(40), 40, l2=5.0, exact=False, block=7)
    assert over.right is vectors and reference.right is not apart
    np.testing.assert_array_equal(over.right, reference.right)
    np.testing.assert_array_equal(over.right_gram, reference.right_gram)
    leverage = np.minimum((apart.astype(np.float64) ** 2) @ (squares / (squares + 5.0)), 1.0 - 1e-9)
    np.testing.assert_allclose(over.right, apart / (1.0 - leverage)[:, None], rtol=1e-6)
    np.testing.assert_allclose(over.diagonal, leverage / (1.0 - leverage), rtol=1e-6)


def test_gram_product_in_column_blocks_equals_the_whole_product():
    rng = np.random.default_rng(3)
    matrix = sparse.random(300, 90, density=0.05, format="csr", dtype=np.float32, random_state=3)
    q = rng.standard_normal((90, 150), dtype=np.float32)  # three blocks of 64 columns, the last short
    product = gram_product(matrix, threads=2)(q)
    assert product.dtype == np.float32 and product.flags.f_contiguous  # factorised in place next
    np.testing.assert_allclose(product, matrix.T @ (matrix @ q), rtol=1e-5, atol=1e-5)


def test_randomized_eigh_finds_the_leading_eigenpairs():
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    values = np.concatenate([np.linspace(100, 50, 20), rng.uniform(0, 1, 280)])
    gram = (basis * values) @ basis.T
    found, vectors = randomized_eigh(lambda q: gram @ q, 300, 20, seed=0)
    np.testing.assert_allclose(found, values[:20], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(vectors * basis[:, :20], axis=0)), 1.0, atol=1e-6)


def test_low_rank_ease_checks_its_parameters(planted):
    with pytest.raises(InputError, match="rank=0 should be an integer >= 1"):
        low_rank_ease(planted[0].matrix(), rank=0)
    with pytest.raises(InputError, match="l2=-1 should be > 0"):
        low_rank_ease(planted[0].matrix(), l2=-1)


@pytest.mark.parametrize("rank", [200, 40])
def test_candidates_score_as_exhaustive_scoring_and_cover_its_top(planted, rank):
    """Every candidate's two-stage score equals its exhaustive score, and the served top 10 is
    the exhaustive top 10, for exact and low-rank collaborative weights."""
    from tastemap.runtime.recommend import serving

    data, catalog, vectors, _ = planted
    weights = BlendWeights(long_term=0.3, short_term=0.7, interests=0.1, category=0.05)
    model = make_recommender(weights=weights, rank=rank, n_candidates=30).fit(data, catalog, vectors)
    users = np.arange(data.n_users)
    exhaustive = model._blend(model._components(users, model.state_, model._weighted()))
    scored = serving.score_candidates(model, users, model.state_, segments=model._segments_of(users))
    np.testing.assert_allclose(scored.scores, exhaustive[scored.rows, scored.items], atol=1e-4)
    seen = model.state_.history
    exhaustive[np.repeat(users, np.diff(seen.indptr)), seen.indices] = -np.inf
    expected = np.argsort(-exhaustive, axis=1, kind="stable")[:, :10]
    served = np.array([[model.item_ids_.tolist().index(r.item_id) for r in recs]
                       for recs in model._recommend_rows(users, model.state_, 10)])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(served, expected)])
    assert overlap >= 0.95


def test_stats_from_sums_equal_dense_standardisation():
    rng = np.random.default_rng(0)
    raw = sparse.random(5, 50, density=0.2, random_state=0, format="csr", dtype=np.float64)
    dense = np.asarray(raw.todense())
    stats = stage.sparse_stats(raw)
    np.testing.assert_allclose((dense - stats.mean[:, None]) * stats.scale[:, None], standardise(dense), atol=1e-5)
    users, features = rng.standard_normal((4, 6)), rng.standard_normal((50, 6))
    stats = stage.Bilinear.of(features).stats(users)
    dense = users @ features.T
    np.testing.assert_allclose((dense - stats.mean[:, None]) * stats.scale[:, None], standardise(dense), atol=1e-5)
    constant = stage.sparse_stats(sparse.csr_matrix(np.ones((1, 4))))
    assert constant.scale[0] == 0.0  # a constant row standardises to 0, as dense scoring does


def saved_and_read(index, folder):
    """The index written by its writer and read back, after checking that the file holds
    exactly faiss's serialisation."""
    import faiss

    stage.index_writer(index)(folder / "index.npy")
    data = np.load(folder / "index.npy", allow_pickle=False)
    np.testing.assert_array_equal(data, faiss.serialize_index(index))
    return stage.read_index(data)


def test_ivf_index_above_the_exact_limit_finds_the_nearest_items(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    vectors = centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    exact = stage.build_item_index(vectors)
    approximate = stage.build_item_index(vectors, exact_limit=1000)
    assert (stage.index_kind(exact), stage.index_kind(approximate)) == ("exact", "ivf")
    truth = stage.nearest_items(exact, vectors[:200], 10)
    found = stage.nearest_items(approximate, vectors[:200], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall >= 0.9
    assert stage.index_writer(exact) is None  # a flat index is rebuilt from the vectors
    restored = saved_and_read(approximate, tmp_path)
    np.testing.assert_array_equal(stage.nearest_items(restored, vectors[:50], 10), found[:50])


@pytest.mark.parametrize("exact_limit", [5000, 1000])
def test_collaborative_index_in_half_precision_finds_what_float32_finds(exact_limit, tmp_path):
    rng = np.random.default_rng(1)
    right = (rng.standard_normal((4000, 300)) * np.linspace(1.0, 0.1, 300)).astype(np.float32)
    queries = right[:100] @ rng.standard_normal((300, 300)).astype(np.float32) * 0.1
    index = stage.collaborative_index(right, exact_limit=exact_limit)
    assert index.d == stage.SEARCH_DIMS and index.ntotal == 4000
    assert stage.index_kind(index) == ("exact" if exact_limit == 5000 else "ivf")
    reference = stage.build_item_index(right[:, : stage.SEARCH_DIMS], exact_limit=exact_limit)
    truth = stage.search(reference, queries[:, : stage.SEARCH_DIMS], 50)
    found = stage.search(index, queries[:, : stage.SEARCH_DIMS], 50)
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(truth, found)])
    assert recall >= 0.98
    if exact_limit == 1000:  # an IVF index is saved as faiss serialises it
        restored = saved_and_read(index, tmp_path)
        np.testing.assert_array_equal(stage.search(restored, queries[:, : stage.SEARCH_DIMS], 50), found)


def test_top_per_row_breaks_ties_by_the_lower_item():
    rows = np.array([0, 0, 0, 1, 1])
    items = np.array([5, 2, 9, 4, 1])
    scores = np.array([1.0, 1.0, 3.0, 0.5, 0.5])
    chosen = stage.top_per_row(rows, items, scores, 2)
    assert items[chosen].tolist() == [9, 2, 1, 4]




@pytest.mark.parametrize("k", [1, 40, 300, 2000])
def test_best_items_finds_the_exact_index_sets(k):
    rng = np.random.default_rng(k)
    vectors = rng.standard_normal((1500, 16)).astype(np.float32)
    queries = rng.standard_normal((300, 16)).astype(np.float32)
    queries[0] = 0.0  # every score tied: any k items are the best
    exact = stage.build_item_index(vectors).search(queries, min(k, 1500))[1]
    found = stage.best_items(vectors, queries, k)
    assert found.shape == (300, min(k, 1500))
    assert all(set(a) == set(b) for a, b in zip(found[1:], exact[1:]))
    assert len(set(found[0])) == min(k, 1500)


def test_max_per_key_keeps_the_largest_value_of_each_pair():
    rng = np.random.default_rng(0)
    rows, items = rng.integers(0, 5, 300), rng.integers(0, 40, 300)
    values = rng.standard_normal(300) + 10.0  # positive: a dense reference with 0 for no pair
    expected = np.zeros((5, 40))
    np.maximum.at(expected, (rows, items), values)
    out = stage.max_per_key(rows, items, values, (5, 40))
    assert out.data.size == np.count_nonzero(expected) and (np.diff(out.keys) > 0).all()
    np.testing.assert_allclose(out.toarray(), expected.astype(np.float32))

def test_rows_of_a_matrix_hold_its_entries_and_find_them_by_key():
    matrix = sparse.random(30, 50, density=0.1, random_state=1, format="csr", dtype=np.float32)
    picked = np.array([7, 2, 2, 29, 0])
    rows = stage.Rows.of(matrix, picked)
    np.testing.assert_array_equal(rows.toarray(), matrix[picked].toarray())
    one = stage.Rows.of(matrix, np.array([7]))  # a request's row: views of the matrix's arrays
    np.testing.assert_array_equal(one.toarray(), matrix[[7]].toarray())
    assert one.shape == (1, 50) and np.shares_memory(one.data, matrix.data)
    keys = np.array([rows.keys[3], 0, rows.keys[0], 5 * 50 - 1, rows.keys[-1]])
    at, found = stage.find_sorted(rows.keys, keys)
    np.testing.assert_array_equal(found, np.isin(keys, rows.keys))
    np.testing.assert_array_equal(rows.keys[at[found]], keys[found])
    np.testing.assert_array_equal(stage.gather(rows, keys), rows.toarray().ravel()[keys])
    empty = stage.find_sorted(np.zeros(0, np.int64), keys)[1]
    assert empty.shape == (5,) and not empty.any()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_per_row_equals_a_stable_sort_of_every_entry(k):
    rng = np.random.default_rng(k)
    rows = np.sort(rng.integers(0, 20, 600))
    items = rng.permutation(600)
    scores = rng.integers(0, 8, 600).astype(float)  # many ties at every rank
    order = np.lexsort((items, -scores, rows))
    rank = np.arange(600) - np.searchsorted(rows[order], rows[order])
    np.testing.assert_array_equal(stage.top_per_row(rows, items, scores, k), order[rank < k])

@pytest.mark.parametrize("settle_users", [1024, 2])
def test_update_of_known_users_replaces_their_rows_as_a_rebuild_would(planted, settle_users, monkeypatch):
    """The in-place path (known users only, no row of anyone else copied) equals a rebuild,
    whether the overlay is applied at the end or by the updates themselves."""
    import pandas as pd

    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.recommend import recommender as recommender_module
    from tastemap.runtime.recommend.recommender import recency_matrix

    monkeypatch.setattr(recommender_module, "SETTLE_USERS", settle_users)

    data, catalog, vectors, truth = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    events = pd.DataFrame({"user_id": data.user_ids[data.users], "item_id": data.item_ids[data.items],
                           "timestamp": data.timestamps, "weight": data.weights})
    for step, (user, item) in enumerate([(5, 40), (11, 3), (5, 90), (59, 7)]):
        frame = pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [1_700_000_000 + step],
                              "weight": [np.float32(1.0)]})
        summary = model.update(frame)
        assert (summary.n_users_updated, summary.n_new_users, summary.n_events_added) == (1, 0, 1)
        events = pd.concat([events, frame], ignore_index=True)
    everything, _ = align_events(events, catalog)
    rec = model.recommender
    reference = rec.profiler_.transform(everything)
    state = rec.scoring_state(everything.matrix(), recency_matrix(everything, rec.recency_half_life), reference)
    order = pd.Index(everything.user_ids).get_indexer(model.user_ids)
    profiles = model.profiles
    for mine, theirs in [*zip(profiles.topics, reference.topics), (profiles.short_term, reference.short_term),
                         *zip(profiles.categories, reference.categories), (rec.state_.history, state.history),
                         (rec.state_.recency, state.recency)]:
        assert (abs(mine - theirs[order]) > 0).nnz == 0
    np.testing.assert_array_equal(profiles.vectors, reference.vectors[order])
    np.testing.assert_array_equal(profiles.n_events, reference.n_events[order])
    for row, ref_row in enumerate(order):
        mine, theirs = profiles.interests.of_user(row), reference.interests.of_user(ref_row)
        assert [(i.medoid, i.importance, i.topic, i.members.tolist()) for i in mine] == \
               [(i.medoid, i.importance, i.topic, i.members.tolist()) for i in theirs]
    assert model.events.n_events == len(events)


def test_fit_command_takes_the_rank(tmp_path):
    import json

    from typer.testing import CliRunner

    from planted import write_planted_files
    from tastemap.cli import app

    files = write_planted_files(tmp_path, n_users=16)
    data = [files[1], files[3], "--vectors", files[5], "--topics", "6", "--coarse-topics", "2", "--n-segments", "2"]
    runner = CliRunner()
    result = runner.invoke(app, ["fit", *data, "--rank", "8", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "EASE, low-rank (rank 8)" in result.output
    version = tmp_path / "m" / "versions" / (tmp_path / "m" / "current").read_text().strip()
    record = json.loads((version / "model.json").read_text())["fitted"]["collaborative"]
    assert (record["method"], record["rank"]) == ("ease-low-rank", 8)
    result = runner.invoke(app, ["fit", *data, "--rank", "0", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "rank=0 should be an integer >= 1" in result.output
    assert not (tmp_path / "bad").exists()


def test_event_log_finds_a_users_events_in_log_order_across_many_appends():
    from tastemap.runtime.pipeline.model_state import EventLog

    rng = np.random.default_rng(3)
    users = rng.integers(0, 20, 200)
    log = EventLog(users=users, items=np.arange(200), timestamps=np.arange(200), weights=np.ones(200))
    for step in range(300):  # appends of one to three events, as single updates make
        n = int(rng.integers(1, 4))
        log.append(rng.integers(0, 25, n), 1000 + step * 3 + np.arange(n), 200 + step * 3 + np.arange(n), np.ones(n))
    wanted = np.array([2, 7, 21])
    found = log.of_users(wanted)
    everything = [log.users, log.items, log.timestamps, log.weights]  # consolidates the tail
    mine = np.isin(everything[0], wanted)
    for got, column in zip(found, everything):
        np.testing.assert_array_equal(got, column[mine])
    assert log.n_events == everything[0].size and log.of_users(wanted)[1].tolist() == everything[1][mine].tolist()


def test_updated_users_are_served_from_the_overlay_as_after_it_is_applied(planted):
    """Known users' updates wait in an overlay; serving them from it equals serving the applied rows."""
    import pandas as pd

    from tastemap.runtime.pipeline.model import TastemapModel

    data, catalog, vectors, truth = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    for step, (user, item) in enumerate([(5, 40), (11, 3), (5, 90)]):
        model.update(pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [1_700_000_000 + step],
                                   "weight": [np.float32(1.0)]}))
    rec = model.recommender

    def served():
        out = {user: [(r.item_id, round(r.score, 5), r.explanation.describe()) for r in model.recommend(user, k=10)]
               for user in (5, 11, 12)}
        top = out[5][0][0]
        return out, rec.explain(5, top).describe()

    assert sorted(rec.__dict__["_overlay"].where) == sorted(rec.user_index_.get_indexer([5, 11]).tolist())
    before = served()
    assert rec.__dict__["_overlay"] is not None  # single users in or out of the overlay do not apply it
    rec.settle()
    assert rec.__dict__["_overlay"] is None
    assert served() == before


def test_updates_keep_the_segment_popularity_and_what_serving_derives_from_it(planted):
    import pandas as pd

    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.recommend import serving

    data, catalog, vectors, truth = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    rec = model.recommender
    model.recommend(3, k=5)  # fills the serving caches that the updates must keep right
    serving.segment_popularity(rec)
    items = rec.item_ids_[np.argsort(-np.asarray(rec.segment_popularity_).sum(axis=0))[:6]]  # favourites move
    for step, (user, item) in enumerate(zip([5, 11, 5, 59, 20, 33], items)):
        model.update(pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [1_700_000_000 + step],
                                   "weight": [np.float32(1.0)]}))
    popularity = np.asarray(rec.segment_popularity_)
    labels = np.asarray(rec.segmenter_.labels_)
    rows = rec.rows_of(np.arange(rec.user_index_.size))
    history = rows[0].history[rows[1]]
    expected = np.stack([np.asarray(history[labels == s].sum(axis=0)).ravel() for s in range(popularity.shape[0])])
    np.testing.assert_allclose(popularity, expected)
    stats = serving.segment_popularity(rec)[1]
    np.testing.assert_allclose(stats.mean, expected.mean(axis=1))
    np.testing.assert_allclose(stats.scale, 1 / expected.std(axis=1), rtol=1e-6)
    favourites = serving.favourite_items(rec, np.arange(popularity.shape[0]), popularity.shape[0])
    m = favourites.shape[1]
    for segment in range(popularity.shape[0]):
        np.testing.assert_array_equal(np.sort(popularity[segment, favourites[segment]]),
                                      np.sort(popularity[segment])[-m:])
    assert rec.segmenter_.segments_["size"].tolist() == np.bincount(labels, minlength=popularity.shape[0]).tolist()
