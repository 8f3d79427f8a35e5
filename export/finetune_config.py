"""The fine-tuning settings (:class:`FinetuneConfig`), apart from the training code so that the
command line reads its defaults without importing numpy, pandas or the data stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tastemap.errors import InputError

FINETUNE_RECORD = "finetune.json"
OBJECTIVES = ("pairs", "history")
LOSS_NAMES = {"pairs": "MultipleNegativesRankingLoss", "history": "HistoryInfoNCE"}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune. Invalid values are rejected here, before any work.

    Positives: each user's events with ``weight >= min_weight`` (MovieLens: rating >= 3.5), in
    time order. ``pairs``: every event is paired with the next ``window`` ones. ``history``: groups
    of ``items_per_user`` items drawn from ``max(items_per_user, window + 1)`` consecutive events
    of one user. At most ``max_examples`` examples (pairs or groups) are drawn (seeded) per epoch,
    ``batch_size`` examples per batch; ``max_steps`` caps the optimizer steps over all epochs.
    ``max_seq_len`` truncates the texts during training only (the written model keeps the base
    model's length). ``learning_rate`` peaks after a linear warm-up over ``warmup`` of the steps
    and decays linearly to 0. ``scale`` is the loss's inverse temperature.

    ``popularity_correction`` subtracts from every candidate's score the log of its share of the
    batches' items (logQ correction, Yi et al., RecSys 2019). In-batch negatives are drawn in
    proportion to popularity, so without it the loss learns scores with popularity divided out
    and ranks the popular items a warm catalogue's users go to next too low.

    ``train_layers`` (None: all) trains only the top N transformer layers: the lower layers'
    outputs are computed once per item text and reused at every step, so a step costs about
    ``N / n_layers`` of a full one and the same minutes buy several times more examples.
    """

    out: Path | None = None
    base: str | Path | None = None
    objective: str = "history"
    epochs: int = 1
    seed: int = 0
    batch_size: int = 16
    items_per_user: int = 4
    max_examples: int = 4_000
    max_steps: int | None = None
    window: int = 5
    min_weight: float = 0.7
    learning_rate: float = 2e-4
    warmup: float = 0.1
    scale: float = 20.0
    max_seq_len: int = 32
    template: str | None = None
    device: str = "auto"
    train_layers: int | None = None
    popularity_correction: bool = True

    def __post_init__(self):
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective={self.objective!r} is not one of {list(OBJECTIVES)}")
        for name in ("epochs", "batch_size", "items_per_user", "max_examples", "window", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}={value!r} should be an integer >= 1")
        if self.batch_size < 2:
            raise InputError(f"batch_size={self.batch_size} should be >= 2: the other examples of a batch are the negatives")
        if self.items_per_user < 2:
            raise InputError(f"items_per_user={self.items_per_user} should be >= 2: one item against the others of its group")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise InputError(f"max_steps={self.max_steps!r} should be None (no cap) or an integer >= 1")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate={self.learning_rate} should be > 0")
        if not 0 <= self.warmup < 1:
            raise InputError(f"warmup={self.warmup} should be a fraction of the steps in [0, 1)")
        if not self.scale > 0:
            raise InputError(f"scale={self.scale} should be > 0")
        if not self.min_weight >= 0:
            raise InputError(f"min_weight={self.min_weight} should be >= 0")
        if self.device not in DEVICES:
            raise InputError(f"device={self.device!r} is not one of {list(DEVICES)}")
        if self.train_layers is not None and (not isinstance(self.train_layers, int) or self.train_layers < 1):
            raise InputError(f"train_layers={self.train_layers!r} should be None (all layers) or an integer >= 1")


DEFAULTS = FinetuneConfig()
"""The default settings, which the command lines show as their option defaults."""
