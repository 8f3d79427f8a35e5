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
@pytest.mark.parametrize("method, criterion", [("kmeans", "elbow"), ("gmm", "bic"), ("agglomerative", "elbow"),
                                               ("kmeans", "silhouette")])
def test_k_is_chosen_by_a_reported_criterion(single_topic_users, method, criterion):
    data, profiles = single_topic_users
    chosen = criterion if criterion == "silhouette" else "auto"
    segmenter = UserSegmenter(method=method, k_range=(2, 7), criterion=chosen, backend="sklearn", seed=0).fit(profiles)
    assert segmenter.criterion_ == criterion
    assert sorted(segmenter.criterion_scores_) == [2, 3, 4, 5, 6, 7]
    assert segmenter.n_segments_ == 4


@pytest.fixture(scope="module")
def seven_segments():
    data = make_synthetic(n_users=350, n_items=700, n_events=7_000, n_topics=7, dim=24, noise=0.4,
                          interests_per_user=(1, 1), seed=5)
    profiler = InterestProfiler(n_topics=7, n_coarse_topics=None, backend="sklearn", seed=0)
    return data, profiler.fit(data.events, data.catalog, data.item_vectors).profiles_


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_elbow_finds_a_planted_k_over_the_default_range(seven_segments, method):
    data, profiles = seven_segments
    segmenter = UserSegmenter(method=method, backend="sklearn", seed=0).fit(profiles)
    assert segmenter.criterion_ == "elbow" and sorted(segmenter.criterion_scores_) == list(range(4, 21))
    assert segmenter.n_segments_ == 7
    assert adjusted_rand_score(data.user_topics[:, 0], segmenter.labels_) == 1.0
    dispersion = [segmenter.dispersion_[k] for k in range(4, 21)]
    assert dispersion == sorted(dispersion, reverse=True) or dispersion[3] < 0.2 * dispersion[0]


def test_small_segments_rule_a_k_out(seven_segments):
    _, profiles = seven_segments
    segmenter = UserSegmenter(k_range=(4, 20), min_segment_share=0.1, backend="sklearn", seed=0).fit(profiles)
    smallest = segmenter.segments_["size"].min()
    assert smallest >= 0.1 * profiles.n_users
    assert any(np.isnan(v) for v in segmenter.criterion_scores_.values())


def test_segments_are_described_by_their_lift(seven_segments):
    data, profiles = seven_segments
    segmenter = UserSegmenter(n_segments=7, features="topics+categories", backend="sklearn", seed=0).fit(profiles)
    population = np.asarray(profiles.topics[-1].mean(axis=0)).ravel()
    for row in segmenter.segments_.itertuples():
        top = row.top_topics[0]
        assert top["weight"] == pytest.approx(1.0, abs=1e-6)
        assert top["population"] == pytest.approx(population[top["topic"]], rel=1e-5)
        assert top["lift"] == pytest.approx(1.0 / population[top["topic"]], rel=1e-4) and top["lift"] > 3
        assert row.top_categories[0]["lift"] > 1
        assert row.label.startswith(top["label"])


def test_segment_labels_and_file(tmp_path, single_topic_users):
    data, profiles = single_topic_users
    segmenter = UserSegmenter(n_segments=4, features="topics+categories", backend="sklearn").fit(profiles)
    features, names = profile_features(profiles, "topics+categories")
    assert features.shape == (150, 4 + 1) and names[-1].startswith("category:Section")
    first = segmenter.segments_.iloc[0]
    assert first["top_topics"][0]["weight"] == pytest.approx(1.0)
    assert first["label"] == first["top_topics"][0]["label"] + " | Section A"
    assert first["top_topics"][0]["lift"] > 1
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
    with pytest.raises(InputError, match=r"criterion='gap' is not supported"):
        UserSegmenter(criterion="gap").fit(profiles)
    with pytest.raises(InputError, match=r"criterion='bic' needs method='gmm'"):
        UserSegmenter(criterion="bic").fit(profiles)
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


def test_segment_command_prints_the_score_of_every_k(tmp_path, seven_segments):
    from typer.testing import CliRunner

    from tastemap.cli import app

    data = make_synthetic(n_users=120, n_items=300, n_events=2_400, n_topics=5, dim=16, noise=0.4,
                          interests_per_user=(1, 1), seed=6)
    from tastemap.runtime.interests.profile_io import write_profiles

    profiler = InterestProfiler(n_topics=5, n_coarse_topics=None, backend="sklearn", seed=0)
    write_profiles(profiler.fit(data.events, data.catalog, data.item_vectors), tmp_path / "profiles")
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "profiles"), "--out", str(tmp_path / "seg"),
                                      "--k-min", "2", "--k-max", "8", "--backend", "sklearn"])
    assert result.exit_code == 0, result.output
    assert "k chosen by elbow" in result.output
    for k in range(2, 9):
        assert f"\n│ {k} " in result.output or f" {k} │" in result.output
    assert "chosen" in result.output
