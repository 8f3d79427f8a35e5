"""Chronological splits of an interaction log for offline evaluation.

Per user, events are sorted by timestamp (ties broken by item index):

- :func:`leave_last_out`: the last event is the test item, the rest is training;
- :func:`temporal`: the last ``1 - train_fraction`` of the events (at least one) are the test items.

Users with fewer than ``min_train + 1`` events stay entirely in training (they are not evaluated).
:func:`validation_split` applies the same protocol to the training part only, so that anything
tuned on it never sees the test events. The protocols themselves are listed in
:mod:`~tastemap.runtime.recommend.protocols`; :func:`split_events` splits by a protocol's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.recommend.protocols import get_protocol, protocol_names


@dataclass(frozen=True)
class Split:
    """A training part and a test part over the same vocabularies.

    ``test_users`` int ``[n_test_users]`` are the evaluated users (each has >= 1 training and
    >= 1 test event); ``protocol`` is the name of the protocol that made the split.
    """

    train: Interactions
    test: Interactions
    protocol: str

    @property
    def test_users(self) -> np.ndarray:
        return np.unique(self.test.users)


def split_events(
    data: Interactions,
    protocol: str = "leave-last-out",
    *,
    train_fraction: float = 0.8,
    min_train: int = 1,
) -> Split:
    """Cut every user's chronological history by ``protocol``, one of the protocols whose split
    a fitted model can keep (``leave-last-out``, ``temporal``)."""
    allowed = protocol_names(fitted_holdout=True)
    if protocol not in allowed:
        raise InputError(f"{str(protocol)!r} is not a valid Protocol for a per-user split: choose one of {allowed}")
    return get_protocol(protocol).split_function()(data, train_fraction=train_fraction, min_train=min_train)


def leave_last_out(data: Interactions, *, train_fraction: float = 0.8, min_train: int = 1) -> Split:
    """Each user's last event is the test part (``train_fraction`` is checked, not used)."""
    _check_train_fraction(train_fraction)
    return _chronological(data, "leave-last-out", np.ones_like, min_train)


def temporal(data: Interactions, *, train_fraction: float = 0.8, min_train: int = 1) -> Split:
    """The last ``1 - train_fraction`` of each user's events (at least one) are the test part."""
    _check_train_fraction(train_fraction)
    return _chronological(data, "temporal",
                          lambda n: np.maximum(1, n - np.floor(n * train_fraction).astype(np.int64)), min_train)


def validation_split(split: Split, *, train_fraction: float = 0.8, min_train: int = 1) -> Split:
    """The same protocol applied to ``split.train`` only: tune on this, never on ``split.test``."""
    return split_events(split.train, split.protocol, train_fraction=train_fraction, min_train=min_train)


def _check_train_fraction(train_fraction: float) -> None:
    if not 0 < train_fraction < 1:
        raise InputError(f"train_fraction={train_fraction} should be between 0 and 1 (exclusive)")


def _chronological(data: Interactions, protocol: str, n_test_of: Callable[[np.ndarray], np.ndarray],
                   min_train: int) -> Split:
    """Hold out each user's last ``n_test_of(n_events)`` events (``n_events`` per event, int64)."""
    if min_train < 1:
        raise InputError(f"min_train={min_train} should be >= 1")
    order = data.chronological_order()
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(order.size) - starts[users]
    n_events = counts[users]
    n_test = n_test_of(n_events)
    evaluated = n_events - n_test >= min_train
    is_test = evaluated & (position >= n_events - n_test)
    test_mask = np.zeros(data.n_events, dtype=bool)
    test_mask[order[is_test]] = True
    split = Split(train=data.subset(~test_mask), test=data.subset(test_mask), protocol=protocol)
    if split.test.n_events == 0:
        raise InputError(f"no user has more than min_train={min_train} events; nothing to evaluate")
    return split
