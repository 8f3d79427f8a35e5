"""UserSegmenter: planted segments recovered by every method, k chosen by a reported criterion."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.errors import InputError
from tastemap.runtime.interests.profiles import InterestProfiler
from tastemap.runtime.interests.segments import UserSegmenter, profile_features, write_segments


@pytest.fixture(scope="module")
def single_topic_users():
    data = make_synthetic(n_users=150, n_items=300, n_events=3_000, n_topics=4, dim=24, noise=0.4,
                          interests_per_user=(1, 1), seed=4)
    profiler = InterestProfiler(n_topics=4, n_coarse_topics=2, backend="sklearn", seed=0)
    return data, profiler.fit(data.events, data.catalog, data.item_vectors).profiles_


@pytest.mark.parametrize("method", ["kmeans", "gmm", "agglomerative"])
@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_every_method_recovers_planted_segments(single_topic_users, method, backend):
    data, profiles = single_topic_users
    segmenter = UserSegmenter(method=method, n_segments=4, backend=backend, seed=0).fit(profiles)
    assert segmenter.criterion_ == "given" and segmenter.n_segments_ == 4
    assert adjusted_rand_score(data.user_topics[:, 0], segmenter.labels_) == 1.0
    sizes = segmenter.segments_["size"].tolist()
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 150
    np.testing.assert_array_equal(segmenter.predict(profiles), segmenter.labels_)
    assert segmenter.backend_ == (backend if method == "kmeans" else "sklearn")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("method, criterion", [("kmeans", "silhouette"), ("gmm", "bic"), ("agglomerative", "silhouette")])
def test_k_is_chosen_by_a_reported_criterion(single_topic_users, method, criterion):
    data, profiles = single_topic_users
    segmenter = UserSegmenter(method=method, k_range=(2, 7), backend="sklearn", seed=0).fit(profiles)
    assert segmenter.criterion_ == criterion
    assert sorted(segmenter.criterion_scores_) == [2, 3, 4, 5, 6, 7]
    assert segmenter.n_segments_ == 4


def test_segment_labels_and_file(tmp_path, single_topic_users):
    data, profiles = single_topic_users
    segmenter = UserSegmenter(n_segments=4, features="topics+categories", backend="sklearn").fit(profiles)
    features, names = profile_features(profiles, "topics+categories")
    assert features.shape == (150, 4 + 1) and names[-1].startswith("category:Section")
    first = segmenter.segments_.iloc[0]
    assert first["top_topics"][0]["weight"] == pytest.approx(1.0)
    assert first["label"] == first["top_topics"][0]["label"] + " | Section A"
    write_segments(segmenter, tmp_path)
    table = pq.read_table(tmp_path / "segments.parquet")
    assert table.column_names == ["segment", "size", "share", "label", "top_topics", "top_categories", "centroid"]
    assert len(table["centroid"][0]) == 5
    users = pq.read_table(tmp_path / "user_segments.parquet").to_pandas()
    np.testing.assert_array_equal(users["segment"], segmenter.labels_)


def test_invalid_settings(single_topic_users):
    _, profiles = single_topic_users
    with pytest.raises(InputError, match="n_samples=150 should be >= n_segments=200"):
        UserSegmenter(n_segments=200).fit(profiles)
    with pytest.raises(InputError, match=r"method='dbscan' is not supported"):
        UserSegmenter(method="dbscan").fit(profiles)
    with pytest.raises(InputError, match=r"k_range=\(5, 3\) leaves no k to try"):
        UserSegmenter(k_range=(5, 3)).fit(profiles)
    with pytest.raises(InputError, match="not fitted yet"):
        UserSegmenter().predict(profiles)


def test_segmenter_is_a_sklearn_estimator(single_topic_users):
    _, profiles = single_topic_users
    template = UserSegmenter(method="gmm", n_segments=4, backend="sklearn", seed=0)
    with pytest.raises(NotFittedError, match=r"this UserSegmenter is not fitted yet; call fit\(profiles\) first"):
        template.predict(profiles)
    fitted = clone(template).fit(profiles)
    assert clone(fitted).get_params() == template.get_params() and not hasattr(clone(fitted), "labels_")
    np.testing.assert_array_equal(fitted.predict(profiles), fitted.labels_)  # through the fitted mixture_
    assert fitted.mixture_ is not None
    with pytest.raises(InputError, match=r"k_range=\(2,\) should be a pair of integers"):
        UserSegmenter(k_range=(2,)).fit(profiles)
    with pytest.raises(InputError, match=r"features='genres' is not supported"):
        UserSegmenter(features="genres").fit(profiles)
