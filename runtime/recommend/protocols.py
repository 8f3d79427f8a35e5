"""The split protocols of offline evaluation, in a module of their own so that the command line can
offer them as choices without importing the evaluation code (see
:func:`tastemap.runtime.recommend.evaluate.split_events`)."""

from __future__ import annotations

from enum import Enum


class Protocol(str, Enum):
    """How each user's history is cut into training and test parts."""

    leave_last_out = "leave-last-out"
    temporal = "temporal"
