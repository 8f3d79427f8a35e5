"""The evaluation protocols, in one registry that ``tastemap evaluate``, ``tastemap demo``,
``tastemap fit --holdout`` and the pipeline's evaluation all read.

A protocol is one :class:`EvaluationProtocol`: its command-line name, what it holds out and
evaluates, its split function, the evaluation that ``tastemap evaluate`` runs on it, and whether a
fitted model can keep its test part (``tastemap fit --holdout NAME``, then ``tastemap evaluate
--model DIR``). Functions are named ``"module:function"`` and imported on first use, so that the
command line lists the protocols without importing the evaluation code.

>>> [p.name for p in PROTOCOLS]
['leave-last-out', 'temporal', 'item-cold-start', 'user-cold-start']
>>> get_protocol("temporal").fitted_holdout
True

**Adding a protocol** is one entry and one test: append an :class:`EvaluationProtocol` to
:data:`PROTOCOLS` naming its split function and its evaluation function, and add a test that
splits a small log with it and evaluates it. The command-line choices, the ``--holdout`` choices
of ``tastemap fit`` and the error messages follow from the registry. The two functions follow
these contracts:

- ``split``: with ``fitted_holdout``, ``split(data: Interactions, *, train_fraction, min_train)
  -> Split`` (see :mod:`~tastemap.runtime.recommend.splits`); otherwise any signature, called by
  the protocol's own evaluation;
- ``evaluate``: ``evaluate(inputs: Inputs, protocol_name, *, tuned_encoder, seed)`` (plus ``tune``
  and ``sasrec`` when ``compares_models``; see :mod:`~tastemap.runtime.pipeline.evaluation`)
  returning, unless it compares models, a result whose ``table()`` has a ``model`` column and each
  metric ``M`` with ``M_low`` and ``M_high``: ``tastemap evaluate`` prints and writes that table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from importlib import import_module
from typing import Callable

from tastemap.errors import InputError


@dataclass(frozen=True)
class EvaluationProtocol:
    """One way of holding data out and what is evaluated on it.

    ``name``: the command-line name (``--protocol NAME``); ``evaluates``: one line saying what is
    held out and ranked (the command-line help); ``split`` and ``evaluate``: ``"module:function"``
    (see the module docstring for their signatures); ``compares_models``: the evaluation compares
    every model of :func:`~tastemap.runtime.recommend.comparison.compare_models` (``--tune`` and
    ``--sasrec`` apply); ``fitted_holdout``: ``tastemap fit --holdout NAME`` can keep the test part
    of this split for ``tastemap evaluate --model DIR``.
    """

    name: str
    evaluates: str
    split: str
    evaluate: str
    compares_models: bool = False
    fitted_holdout: bool = False

    def __post_init__(self):
        for role in ("split", "evaluate"):
            module, _, function = getattr(self, role).partition(":")
            if not module or not function:
                raise ValueError(f"protocol {self.name!r}: {role}={getattr(self, role)!r} should be 'module:function'")

    def split_function(self) -> Callable:
        """The split function, imported."""
        return _resolve(self.split)

    def evaluation_function(self) -> Callable:
        """The evaluation function, imported."""
        return _resolve(self.evaluate)


PROTOCOLS: tuple[EvaluationProtocol, ...] = (
    EvaluationProtocol(
        name="leave-last-out",
        evaluates="each user's last event held out, every model ranking the full catalogue",
        split="tastemap.runtime.recommend.splits:leave_last_out",
        evaluate="tastemap.runtime.pipeline.evaluation:evaluate_warm",
        compares_models=True,
        fitted_holdout=True,
    ),
    EvaluationProtocol(
        name="temporal",
        evaluates="the last 20% of each user's events held out, every model ranking the full catalogue",
        split="tastemap.runtime.recommend.splits:temporal",
        evaluate="tastemap.runtime.pipeline.evaluation:evaluate_warm",
        compares_models=True,
        fitted_holdout=True,
    ),
    EvaluationProtocol(
        name="item-cold-start",
        evaluates="the newest 20% of items held out with all their events, ranked by content",
        split="tastemap.runtime.recommend.cold_start:split_new_items",
        evaluate="tastemap.runtime.pipeline.evaluation:evaluate_item_cold_start",
    ),
    EvaluationProtocol(
        name="user-cold-start",
        evaluates="20% of users held out with all their events, ranked from their attributes and first 1, 3, 5 events",
        split="tastemap.runtime.recommend.user_cold_start:split_new_users",
        evaluate="tastemap.runtime.pipeline.user_attributes:evaluate_protocol_inputs",
    ),
)
"""Every evaluation protocol, in the order the command line lists them."""

ALL_COMPARING = "both"
"""The command-line choice that runs every protocol comparing models (``--protocol both``)."""


def get_protocol(name: str) -> EvaluationProtocol:
    """The protocol called ``name``, or :class:`InputError` listing the known ones."""
    for protocol in PROTOCOLS:
        if protocol.name == name:
            return protocol
    raise InputError(f"{name!r} is not a valid Protocol: choose one of {protocol_names()}")


def protocol_names(*, compares_models: bool | None = None, fitted_holdout: bool | None = None) -> list[str]:
    """The names of the protocols, optionally only those with the given properties."""
    return [p.name for p in PROTOCOLS
            if (compares_models is None or p.compares_models == compares_models)
            and (fitted_holdout is None or p.fitted_holdout == fitted_holdout)]


def expand_choice(choice: str) -> list[str]:
    """The protocols a command-line choice runs: :data:`ALL_COMPARING` is every protocol that
    compares models, any other choice the protocol of that name."""
    if choice == ALL_COMPARING:
        return protocol_names(compares_models=True)
    return [get_protocol(choice).name]


def choices(enum_name: str, values: list[str]) -> type[Enum]:
    """A ``str`` Enum of ``values`` for a typer option, members named with underscores
    (``leave_last_out``)."""
    return Enum(enum_name, {value.replace("-", "_"): value for value in values}, type=str)


def evaluate_choices() -> list[str]:
    """The ``--protocol`` choices of ``tastemap evaluate``: the protocols comparing models,
    :data:`ALL_COMPARING`, then the others."""
    return [*protocol_names(compares_models=True), ALL_COMPARING, *protocol_names(compares_models=False)]


def _resolve(reference: str) -> Callable:
    module, _, function = reference.partition(":")
    return getattr(import_module(module), function)
