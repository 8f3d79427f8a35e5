import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.recommend.baselines import MostPop
from tastemap.runtime.recommend.evaluate import evaluate_model, split_events
from tastemap.runtime.recommend.sasrec import SASRec

torch = pytest.importorskip("torch")

N_USERS, N_ITEMS, LENGTH = 300, 100, 20
TINY = dict(hidden=16, n_blocks=1, max_len=LENGTH, n_negatives=32, batch_size=32, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: a second intra-op thread only adds contention on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def chain():
    """Every user walks the same random cycle over the items from a different start: the next item
    is determined by the previous one, so popularity is flat. The last user has no events."""
    rng = np.random.default_rng(0)
    cycle = rng.permutation(N_ITEMS)
    users = np.repeat(np.arange(N_USERS), LENGTH)
    steps = (np.arange(N_USERS)[:, None] * 7 + np.arange(LENGTH)[None, :]).ravel() % N_ITEMS
    return Interactions(users=users, items=cycle[steps], timestamps=np.tile(np.arange(LENGTH), N_USERS),
                        weights=np.ones(users.size, np.float32), user_ids=np.arange(N_USERS + 1),
                        item_ids=np.arange(N_ITEMS))


def test_learns_a_planted_sequence_that_popularity_misses(chain):
    split = split_events(chain, "leave-last-out")
    sasrec = evaluate_model(SASRec(epochs=20, learning_rate=1e-2, dropout=0.1, **TINY), split)
    most_pop = evaluate_model(MostPop(), split)
    assert sasrec.per_user["HR@10"].mean() > 0.9
    assert most_pop.per_user["HR@10"].mean() < 0.2


def test_scores_are_float32_per_item_and_reproducible(chain):
    users = np.array([0, 5, N_USERS])
    first = SASRec(epochs=2, seed=3, **TINY).fit(chain).score(users)
    second = SASRec(epochs=2, seed=3, **TINY).fit(chain).score(users)
    other = SASRec(epochs=2, seed=4, **TINY).fit(chain).score(users)
    assert first.shape == (3, N_ITEMS) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert not first[2].any()  # the user without events scores 0 everywhere
    assert first[:2].std(axis=1).min() > 0


def test_epochs_are_chosen_on_validation(chain):
    model = SASRec(epochs=None, max_epochs=6, eval_every=2, patience=2, learning_rate=1e-2, **TINY).fit(chain)
    epochs = [epoch for epoch, _ in model.validation_]
    assert epochs == [2, 4, 6]
    assert all(0 <= ndcg <= 1 for _, ndcg in model.validation_)
    assert model.best_epochs_ == max(model.validation_, key=lambda point: point[1])[0] >= 1
    assert SASRec(epochs=1, **TINY).fit(chain).validation_ == []


def test_stops_after_patience_evaluations_without_improvement(chain):
    model = SASRec(epochs=None, max_epochs=20, eval_every=1, patience=1, learning_rate=1e-9, **TINY).fit(chain)
    assert [epoch for epoch, _ in model.validation_] == [1, 2]  # a frozen model does not improve
    assert model.best_epochs_ == 1


@pytest.mark.parametrize("params, message", [
    (dict(hidden=0), "hidden=0 should be an integer >= 1"),
    (dict(hidden=10, n_heads=3), "n_heads=3 should divide hidden=10"),
    (dict(dropout=1.5), r"dropout=1.5 should be in \[0, 1\)"),
    (dict(max_len=2.5), "max_len=2.5 should be an integer >= 1"),
    (dict(epochs=0), r"epochs=0 should be None \(chosen on validation\) or an integer >= 1"),
    (dict(learning_rate=-1), "learning_rate=-1 should be > 0"),
    (dict(device="tpu"), r"device='tpu' is not one of \['auto', 'cpu', 'cuda'\]"),
])
def test_bad_parameters_are_rejected(chain, params, message):
    with pytest.raises(InputError, match=f"^{message}$"):
        SASRec(**params).fit(chain)


def test_score_before_fit():
    with pytest.raises(NotFittedError, match=r"^this SASRec is not fitted yet; call fit\(train\) first$"):
        SASRec().score(np.array([0]))
