"""The runtime commands' door to the export stage, opened only when a command asks for it.

The runtime never imports :mod:`tastemap.export`; a command that needs it (``evaluate
--finetune``, ``demo --finetune``; ``demo``'s first export goes through
:func:`tastemap.paths.resolve_model_dir`) calls here, and a lean install gets the install hint.
"""

from __future__ import annotations

from pathlib import Path


def tuned_encoder_source(*, finetune: bool = False, finetuned: Path | None = None, seed: int = 0):
    """The :data:`~tastemap.runtime.pipeline.evaluation.TunedEncoder` of ``--finetune`` (train on
    each training part, default settings, ``seed``) or ``--finetuned DIR`` (check ``DIR``'s data
    hash), or None when neither is asked for."""
    from tastemap.errors import InputError, require

    if finetune and finetuned is not None:
        raise InputError("give --finetune (train on each training part) or --finetuned DIR, not both")
    if not finetune and finetuned is None:
        return None
    from tastemap.export import require_dependencies

    require_dependencies()
    if finetune:
        require("sentence_transformers", "finetune")
    from tastemap.export.finetune import FinetuneConfig
    from tastemap.export.finetuned import tuned_encoder

    return tuned_encoder(folder=finetuned) if finetuned is not None else tuned_encoder(config=FinetuneConfig(seed=seed))
