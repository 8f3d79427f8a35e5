"""Every estimator follows scikit-learn: keyword-only parameters stored in ``__init__`` (no data, no
work), ``get_params``/``set_params``/``clone``, and sklearn's NotFittedError before ``fit``."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

from tastemap.errors import InputError
from tastemap.runtime.interests.profiles import InterestProfiler
from tastemap.runtime.interests.segments import UserSegmenter
from tastemap.runtime.recommend.baselines import EASE, ContentLiteral, ContentSingleVector, ItemKNN, MostPop
from tastemap.runtime.recommend.recommender import BlendWeights, TastemapRecommender


class NullEncoder:
    def encode(self, texts):
        return np.zeros((len(texts), 2), np.float32)


def use_unfitted(estimator):
    """Call the method that needs a fitted estimator."""
    if isinstance(estimator, InterestProfiler):
        return estimator.transform(pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [0]}))
    if isinstance(estimator, UserSegmenter):
        return estimator.predict(None)
    if isinstance(estimator, TastemapRecommender):
        return estimator.recommend(1)
    return estimator.score(np.array([0]))


ESTIMATORS = [
    InterestProfiler(n_topics=20, n_coarse_topics=4, backend="sklearn", seed=3),
    UserSegmenter(method="gmm", k_range=(2, 5), seed=3),
    TastemapRecommender(weights=BlendWeights(interests=0.5), l2=20.0,
                        profiler=InterestProfiler(n_topics=12), segmenter=UserSegmenter(n_segments=4)),
    MostPop(),
    ItemKNN(n_neighbors=3),
    EASE(l2=2.0),
    ContentSingleVector(),
    ContentLiteral(encoder=NullEncoder(), n_recent=4),
]
IDS = [type(estimator).__name__ for estimator in ESTIMATORS]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_clone_keeps_the_parameters(estimator):
    twin = clone(estimator)
    assert type(twin) is type(estimator) and twin is not estimator
    mine, theirs = estimator.get_params(deep=False), twin.get_params(deep=False)
    assert mine.keys() == theirs.keys()
    for name, value in mine.items():
        if hasattr(value, "get_params"):  # nested templates are cloned too: same parameters
            assert theirs[name] is not value and theirs[name].get_params() == value.get_params()
        elif not isinstance(value, NullEncoder):
            assert theirs[name] == value, name


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_get_params_round_trips_through_set_params(estimator):
    params = estimator.get_params()
    fresh = type(estimator)(**({"encoder": NullEncoder()} if isinstance(estimator, ContentLiteral) else {}))
    assert fresh.set_params(**params) is fresh
    assert fresh.get_params() == params


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("check", ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
                                   "check_get_params_invariance", "check_set_params"])
def test_sklearn_api_checks(estimator, check):
    # the data checks of check_estimator do not apply: these estimators fit on events and catalogs,
    # not on an X array; the API checks do
    getattr(estimator_checks, check)(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_unfitted_estimator_raises_not_fitted(estimator):
    name = type(estimator).__name__
    with pytest.raises(NotFittedError, match=rf"this {name} is not fitted yet; call fit\(.*\) first") as caught:
        use_unfitted(clone(estimator))
    assert isinstance(caught.value, InputError)  # the CLI reports it as an input error (exit code 2)


@pytest.mark.parametrize("cls", [InterestProfiler, UserSegmenter, TastemapRecommender, ItemKNN, EASE])
def test_parameters_are_keyword_only(cls):
    with pytest.raises(TypeError):
        cls(10)
