"""Jobs on user attributes that cross domains: the inputs of the user cold-start protocol (events,
catalog, item vectors and the users table, or a MovieLens 100K folder) and the protocol on them.

>>> inputs, users = load_attribute_inputs(data_dir=Path("ml-100k"))            # doctest: +SKIP
>>> result = evaluate_user_cold_start_inputs(inputs, users, seed=0)            # doctest: +SKIP
>>> result.table()                                                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tastemap.errors import InputError
from tastemap.runtime.io.users import UserAttributes
from tastemap.runtime.pipeline.inputs import Inputs

logger = logging.getLogger(__name__)

USERS_NEEDED = ("--protocol user-cold-start needs user attributes: pass --users users.csv (user_id plus "
                "attribute columns) with EVENTS and CATALOG, or --data a MovieLens 100K folder")


def load_attribute_inputs(events_path: Path | None = None, catalog_path: Path | None = None, *,
                          users_path: Path | None = None, data_dir: Path | None = None,
                          model_dir: Path | None = None, vectors_path: Path | None = None,
                          event_columns=None, catalog_columns=None) -> tuple[Inputs, UserAttributes]:
    """:class:`~tastemap.runtime.pipeline.inputs.Inputs` and the users table: from a MovieLens
    100K ``data_dir`` (its own files), or from ``events_path``, ``catalog_path`` and ``users_path``
    (read as :func:`~tastemap.runtime.pipeline.inputs.load_inputs` and
    :func:`~tastemap.runtime.io.users.read_users` read them)."""
    if data_dir is not None:
        if events_path is not None or catalog_path is not None or users_path is not None:
            raise InputError(f"--data {data_dir} holds the events, catalog and users; drop EVENTS, CATALOG and --users")
        return _movielens_inputs(data_dir, model_dir, vectors_path)
    if users_path is None:
        raise InputError(USERS_NEEDED)
    if events_path is None:
        raise InputError("--users needs the EVENTS and CATALOG of those users (the built-in sample has no user attributes)")
    from tastemap.runtime.io.users import read_users
    from tastemap.runtime.pipeline.inputs import load_inputs

    users = read_users(users_path)  # first: a bad users table fails before the items are encoded
    inputs = load_inputs(events_path, catalog_path, model_dir=model_dir, vectors_path=vectors_path,
                         event_columns=event_columns, catalog_columns=catalog_columns)
    return inputs, users


def evaluate_user_cold_start_inputs(inputs: Inputs, users: UserAttributes, *, seed: int = 0,
                                    holdout_fraction: float = 0.2, n_resamples: int = 1000):
    """Split off ``holdout_fraction`` of the users and run the user cold-start protocol
    (:func:`~tastemap.runtime.recommend.user_cold_start.evaluate_user_cold_start`), with the
    tastemap recommender's item cold start as the events-alone ranker."""
    from tastemap.runtime.recommend.user_cold_start import (
        evaluate_user_cold_start,
        split_new_users,
        tastemap_event_scorer,
    )

    split = split_new_users(inputs.interactions, holdout_fraction=holdout_fraction, seed=seed)
    scorer = tastemap_event_scorer(inputs.item_vectors, inputs.catalog, seed=seed)
    return evaluate_user_cold_start(split, users, scorer, n_resamples=n_resamples, seed=seed)


def evaluate_protocol_inputs(inputs: Inputs, protocol_name: str, *, tuned_encoder=None, seed: int = 0,
                             users: UserAttributes | None = None):
    """The registry's evaluation of ``user-cold-start``: :func:`evaluate_user_cold_start_inputs`
    (``users`` is required; a fine-tuned encoder does not apply)."""
    if users is None:
        raise InputError(USERS_NEEDED)
    if tuned_encoder is not None:
        raise InputError(f"--finetune/--finetuned do not apply to {protocol_name}: it ranks from attributes and "
                         "the first events of new users with the frozen encoder")
    return evaluate_user_cold_start_inputs(inputs, users, seed=seed)


def _movielens_inputs(data_dir: Path, model_dir: Path | None, vectors_path: Path | None) -> tuple[Inputs, UserAttributes]:
    from tastemap.runtime.io.events import align_events, render_item_texts
    from tastemap.runtime.io.movielens100k import read_movielens_100k

    data = read_movielens_100k(data_dir)
    interactions, report = align_events(data.events, data.catalog)
    encoder = None
    if vectors_path is not None:
        from tastemap.runtime.io.vectors import load_item_vectors

        vectors = load_item_vectors(vectors_path, n_items=len(data.catalog))
    else:
        from tastemap.runtime.encode.default_encoder import make_encoder

        encoder = make_encoder(model_dir)
        vectors = encoder.encode(render_item_texts(data.catalog))
    inputs = Inputs(interactions=interactions, catalog=data.catalog, item_vectors=np.asarray(vectors, np.float32),
                    report=report, encoder=encoder, rating_scale=5.0)
    return inputs, data.users
