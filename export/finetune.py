"""Fine-tune the encoder on the interaction log: co-engaged items, contrastive loss.

Two objectives, both with in-batch negatives and both on items a user engaged with positively and
close in time:

- ``pairs``: two such items form a positive pair; ``MultipleNegativesRankingLoss`` (InfoNCE
  over scaled cosine similarities, as in sentence-transformers) ranks each item's partner above
  the other items of the batch.
- ``history``: a group of ``items_per_user`` such items of one user; each item must be ranked
  first, among the items of the batch, by the normalized mean of the other items of its group.
  This is the rule the runtime scores a new item with (a user's mean item vector), trained
  directly, in the spirit of beeFormer (a text encoder trained to predict a user's other items).
  It is the default: on MovieLens item cold start (``bench/finetune.py``), at equal compute
  (125 steps of 64 texts), it reached twice the Recall@20 of ``pairs``, and its warm
  multi-interest HR@10 was higher too.

Both subtract each candidate's log sampling frequency from its score by default (logQ
correction, ``popularity_correction``): without it the in-batch negatives, drawn in proportion
to popularity, teach the model to divide popularity out, and the warm next-item ranking suffers.

Items are rendered as texts exactly as the runtime renders them
(:func:`~tastemap.runtime.io.events.render_item_texts`). The result is an ordinary
sentence-transformers folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``modules.json`` with the pooling config) that :func:`tastemap.export.export_model` takes
unchanged, plus ``finetune.json`` recording the base model, its hash, the hash of the training
data, the seed, the epochs and the objective.

>>> from tastemap.export.finetune import FinetuneConfig, finetune_encoder
>>> result = finetune_encoder(events, catalog, FinetuneConfig(out="models/movielens-minilm"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from tastemap.errors import DeviceError, InputError, ModelPackageError, require
from tastemap.export.finetune_config import FINETUNE_RECORD, LOSS_NAMES, FinetuneConfig
from tastemap.runtime.io.catalog import check_catalog_frame
from tastemap.versions import installed_versions

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FinetuneResult:
    """The written model folder, its record (the content of ``finetune.json``) and the per-step
    training losses ``[n_steps]``."""

    path: Path
    record: dict
    losses: np.ndarray

    @property
    def data_sha256(self) -> str:
        return self.record["data"]["sha256"]


def finetune_encoder(events: pd.DataFrame, catalog: pd.DataFrame, config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune ``config.base`` on co-engaged items of ``events`` and write it atomically to ``config.out``.

    ``events`` and ``catalog`` are validated frames as returned by
    :func:`~tastemap.runtime.io.events.read_events` and :func:`~tastemap.runtime.io.events.read_catalog`
    (or :func:`~tastemap.runtime.io.events.load_movielens`). The model is trained first and written
    at the end, to a temporary folder renamed to ``config.out``: an interrupted run writes nothing.
    """
    from tastemap.export.source import SourceModel
    from tastemap.package import atomic_directory
    from tastemap.runtime.io.events import DEFAULT_TEMPLATE, align_events, render_item_texts, validate_events
    from tastemap.runtime.io.fingerprint import training_data_sha256

    if config.out is None:
        raise InputError("FinetuneConfig.out is None: say which folder the fine-tuned model goes to")
    events = validate_events(events, source="events")
    check_catalog_frame(catalog)
    template = config.template or DEFAULT_TEMPLATE
    texts = render_item_texts(catalog, template)
    interactions, _ = align_events(events, catalog)
    rng = np.random.default_rng(config.seed)
    epochs = [_examples(interactions, config, rng) for _ in range(config.epochs)]
    batches = [batch for examples in epochs for batch in plan_batches(examples, config.batch_size, rng)][: config.max_steps]
    if not batches:
        raise InputError(
            f"the {len(epochs[0])} co-engaged examples make no batch of 2 examples with distinct items; pass more events"
        )
    source = SourceModel.resolve(config.base)
    _check_modules(source.path)
    data_sha256 = training_data_sha256(events, catalog, texts)
    device = _resolve_device(config.device)
    log.info("fine-tuning %s (%s objective) on %d batches of co-engaged items (%d events, %d users) on %s",
             source.name, config.objective, len(batches), interactions.n_events, interactions.n_users, device)
    start = time.perf_counter()
    model, losses = _train(source, texts, batches, config, device)
    seconds = time.perf_counter() - start
    record = {
        "base": {"name": source.name, "path": str(source.path), "sha256": source.sha256},
        "data": {"sha256": data_sha256, "n_events": int(len(events)), "n_users": interactions.n_users,
                 "n_items": int(np.unique(interactions.items).size), "template": template},
        "loss": {"name": LOSS_NAMES[config.objective], "objective": config.objective, "scale": config.scale,
                 "similarity": "cosine", "negatives": "in-batch", "window": config.window,
                 "min_weight": config.min_weight,
                 "popularity_correction": "logQ" if config.popularity_correction else None,
                 **({"items_per_user": config.items_per_user} if config.objective == "history" else {})},
        "seed": config.seed,
        "epochs": config.epochs,
        "steps": int(losses.size),
        "examples_seen": int(sum(len(batch) for batch in batches)),
        "texts_seen": int(sum(batch.size for batch in batches)),
        "batch_size": config.batch_size,
        "max_examples": config.max_examples,
        "learning_rate": config.learning_rate,
        "warmup": config.warmup,
        "max_seq_len": config.max_seq_len,
        "train_layers": config.train_layers,
        "final_loss": round(float(losses[-max(1, losses.size // 10):].mean()), 6),
        "loss_curve": [round(float(chunk.mean()), 4) for chunk in np.array_split(losses, min(10, losses.size))],
        "device": device,
        "seconds": round(seconds, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": installed_versions(("tastemap", "torch", "transformers", "sentence-transformers")),
    }
    with atomic_directory(config.out) as staging:
        _write_model(model, source, staging)
        (staging / FINETUNE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("fine-tuned model written to %s (%d steps, %.0f s, final loss %.4f)",
             config.out, losses.size, seconds, record["final_loss"])
    return FinetuneResult(path=config.out, record=record, losses=losses)


def read_record(folder: str | Path) -> dict | None:
    """The ``finetune.json`` record of a model folder, or None when the folder was not fine-tuned here."""
    path = Path(folder) / FINETUNE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path} is not valid JSON: {exc}; remove it or fine-tune again") from exc


def co_engaged_pairs(interactions, *, window: int = 5, min_weight: float = 0.7) -> np.ndarray:
    """Distinct unordered item pairs ``[n_pairs, 2]`` (catalog indices, smaller first, sorted):
    within each user's events of weight >= ``min_weight`` in time order, each event is paired
    with the next ``window`` ones. Pairs of an item with itself are left out."""
    users, items = _positive_sequences(interactions, min_weight)
    found = []
    for gap in range(1, window + 1):
        same_user = users[:-gap] == users[gap:]
        found.append(np.stack([items[:-gap][same_user], items[gap:][same_user]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, axis=1), axis=0).astype(np.int64).reshape(-1, 2)


def user_groups(interactions, *, size: int = 4, window: int = 5, min_weight: float = 0.7, n: int,
                rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` groups ``[n_groups, size]`` of distinct items (catalog indices) one user engaged
    with close in time: each group is ``size`` items drawn from a run of ``max(size, window + 1)``
    consecutive positive events (weight >= ``min_weight``) of one user, the runs drawn uniformly
    among all users' runs (so active users give more groups)."""
    users, items = _positive_sequences(interactions, min_weight)
    span = max(size, window + 1)
    if users.size < span:
        return np.empty((0, size), np.int64)
    starts = np.flatnonzero(users[: users.size - span + 1] == users[span - 1:])
    if starts.size > n:
        starts = np.sort(rng.choice(starts, n, replace=False))
    offsets = np.argsort(rng.random((starts.size, span)), axis=1)[:, :size]
    groups = items[starts[:, None] + offsets]
    ordered = np.sort(groups, axis=1)
    distinct = (ordered[:, 1:] != ordered[:, :-1]).all(axis=1)
    return groups[distinct].astype(np.int64)


def plan_batches(examples: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle ``examples`` ``[n, k]`` (pairs or groups of item indices) and the items within each,
    and cut them into batches ``[<= batch_size, k]`` in which no item appears twice (a repeated
    item would be its own in-batch negative). An example that does not fit the current batch waits
    for the next one; batches left smaller than half ``batch_size`` at the end (examples of the
    most popular items) are dropped, as they would hold too few negatives."""
    examples = examples[rng.permutation(len(examples))]
    examples = np.take_along_axis(examples, np.argsort(rng.random(examples.shape), axis=1), axis=1)
    batches: list[np.ndarray] = []
    waiting = list(range(len(examples)))
    while waiting:
        batch, used, rest = [], set(), []
        for index in waiting:
            items = examples[index].tolist()
            if len(batch) < batch_size and used.isdisjoint(items):
                batch.append(index)
                used.update(items)
            else:
                rest.append(index)
        batches.append(examples[batch])
        waiting = rest
    smallest = max(2, min(batch_size // 2, len(batches[0]) if batches else 0))
    kept = [batch for batch in batches if len(batch) >= smallest]
    if len(kept) < len(batches):
        log.debug("%d examples left out: their items repeat in every batch", sum(map(len, batches)) - sum(map(len, kept)))
    return kept


def _examples(interactions, config: FinetuneConfig, rng: np.random.Generator) -> np.ndarray:
    """One epoch's training examples: pairs ``[n, 2]`` or groups ``[n, items_per_user]``."""
    if config.objective == "pairs":
        pairs = co_engaged_pairs(interactions, window=config.window, min_weight=config.min_weight)
        if len(pairs) > config.max_examples:
            pairs = pairs[np.sort(rng.choice(len(pairs), config.max_examples, replace=False))]
        found = pairs
    else:
        found = user_groups(interactions, size=config.items_per_user, window=config.window,
                            min_weight=config.min_weight, n=config.max_examples, rng=rng)
    if len(found) == 0:
        need = 2 if config.objective == "pairs" else max(config.items_per_user, config.window + 1)
        raise InputError(
            f"no co-engaged items: no user has {need} events with weight >= min_weight={config.min_weight} "
            f"among {interactions.n_events} events; lower min_weight, pass more events"
            + (" or lower items_per_user / window" if config.objective == "history" else "")
        )
    return found


def _positive_sequences(interactions, min_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Users and items ``[n_positive]`` of the events with weight >= ``min_weight``, by user then time."""
    keep = interactions.weights >= min_weight
    users, items, times = interactions.users[keep], interactions.items[keep], interactions.timestamps[keep]
    order = np.lexsort((items, times, users))
    return users[order], items[order]


def _train(source, texts: list[str], batches: list[np.ndarray], config: FinetuneConfig, device: str):
    """The training loop. Returns ``(model, losses [n_steps])``."""
    torch = require("torch", "finetune")
    st = require("sentence_transformers", "finetune")
    from tastemap.console import progress

    with _deterministic(torch, config.seed, device):
        model = st.SentenceTransformer(str(source.path), device=device)
        base_length = model.max_seq_length
        model.max_seq_length = min(config.max_seq_len, base_length)
        top = _TopLayers.maybe(model, texts, batches, config, device)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(len(batches), config.warmup))
        tokenize = getattr(model, "preprocess", None) or model.tokenize
        log_q = (torch.as_tensor(sampling_log_frequency(batches, len(texts)), device=device)
                 if config.popularity_correction else None)
        losses = np.empty(len(batches), np.float32)
        model.train()
        for step, batch in enumerate(progress(batches, total=len(batches), description="fine-tuning")):
            items = batch.T.ravel() if config.objective == "pairs" else batch.ravel()
            if top is not None:
                embeddings = top.embed(items)
            else:
                embeddings = model(_to(tokenize([texts[i] for i in items]), device))["sentence_embedding"]
            if config.objective == "pairs":
                anchors, positives = embeddings.chunk(2)
                loss = pairs_loss(anchors, positives, config.scale, None if log_q is None else log_q[batch[:, 1]])
            else:
                loss = history_loss(embeddings, batch.shape[1], config.scale, None if log_q is None else log_q[items])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses[step] = float(loss.detach())
            if (step + 1) % max(1, len(batches) // 10) == 0:
                log.info("step %d/%d: loss %.4f", step + 1, len(batches), losses[max(0, step - 9) : step + 1].mean())
        model.eval()
        model.max_seq_length = base_length
    return model, losses


def sampling_log_frequency(batches: list[np.ndarray], n_items: int) -> np.ndarray:
    """Log of each item's share of all the items in ``batches`` ``[n_items]`` float32 (items never
    drawn count once): how often an item is an in-batch candidate."""
    counts = np.bincount(np.concatenate([batch.ravel() for batch in batches]), minlength=n_items)
    return np.log(np.maximum(counts, 1) / counts.sum()).astype(np.float32)


def history_loss(embeddings, group_size: int, scale: float, log_q=None):
    """InfoNCE of each item against the leave-one-out mean of its group.

    ``embeddings`` ``[n_groups * group_size, dim]`` (groups contiguous). The query of item ``j``
    of group ``g`` is the normalized sum of the other items of ``g``; its candidates are every item
    of the batch except the other items of ``g``; the target is ``j`` itself. ``log_q``
    ``[n_groups * group_size]``, when given, is subtracted from each candidate's score (logQ
    correction, see :class:`FinetuneConfig`).
    """
    import torch
    import torch.nn.functional as F

    vectors = F.normalize(embeddings, dim=-1)
    n, dim = vectors.shape
    groups = vectors.view(-1, group_size, dim)
    queries = F.normalize(groups.sum(dim=1, keepdim=True) - groups, dim=-1).reshape(n, dim)
    scores = scale * queries @ vectors.T
    if log_q is not None:
        scores = scores - log_q[None, :]
    owner = torch.arange(n, device=vectors.device) // group_size
    same_group = owner[:, None] == owner[None, :]
    scores = scores.masked_fill(same_group & ~torch.eye(n, dtype=torch.bool, device=vectors.device), float("-inf"))
    return F.cross_entropy(scores, torch.arange(n, device=vectors.device))


def pairs_loss(anchors, positives, scale: float, log_q=None):
    """MultipleNegativesRankingLoss: each anchor ``[n, dim]`` must rank its own positive first
    among all positives of the batch (scaled cosine similarities, minus the positives' ``log_q``
    ``[n]`` when given)."""
    import torch
    import torch.nn.functional as F

    scores = scale * F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T
    if log_q is not None:
        scores = scores - log_q[None, :]
    return F.cross_entropy(scores, torch.arange(len(anchors), device=anchors.device))


class _TopLayers:
    """Training of the top ``train_layers`` layers on cached outputs of the frozen lower ones."""

    @classmethod
    def maybe(cls, model, texts: list[str], batches: list[np.ndarray], config: FinetuneConfig, device: str):
        bert = model[0].auto_model
        layers = getattr(getattr(bert, "encoder", None), "layer", None)
        if config.train_layers is None or layers is None or config.train_layers >= len(layers):
            return None
        pooling = model[1].get_pooling_mode_str() if len(model) > 1 and hasattr(model[1], "get_pooling_mode_str") else "mean"
        if pooling not in ("mean", "cls"):
            raise InputError(f"train_layers needs mean or cls pooling; this model pools by {pooling!r}")
        return cls(model, bert, layers, texts, np.unique(np.concatenate([b.ravel() for b in batches])), config,
                   device, pooling)

    def __init__(self, model, bert, layers, texts, needed, config, device, pooling):
        import torch

        self.frozen, self.top, self.pooling = layers[: len(layers) - config.train_layers], layers[len(layers) - config.train_layers:], pooling
        model.requires_grad_(False)
        self.top.requires_grad_(True)
        self.row = np.full(len(texts), -1)
        self.row[needed] = np.arange(needed.size)
        tokens = model[0].tokenizer([texts[i] for i in needed], padding="max_length", truncation=True,
                                    max_length=min(config.max_seq_len, model.max_seq_length), return_tensors="pt")
        self.mask = tokens["attention_mask"].to(device)
        self.extended = bert.get_extended_attention_mask(self.mask, self.mask.shape)
        hidden = []
        with torch.no_grad():
            for start in range(0, needed.size, 256):
                part = slice(start, start + 256)
                h = bert.embeddings(input_ids=tokens["input_ids"][part].to(device),
                                    token_type_ids=tokens.get("token_type_ids", torch.zeros_like(tokens["input_ids"]))[part].to(device))
                for layer in self.frozen:
                    h = layer(h, attention_mask=self.extended[part])[0]
                hidden.append(h)
        self.hidden = torch.cat(hidden)
        log.info("cached the lower %d layers' outputs of %d item texts; training the top %d",
                 len(self.frozen), needed.size, len(self.top))

    def embed(self, items: np.ndarray):
        """Pooled embeddings ``[len(items), dim]`` with gradients through the top layers."""
        import torch

        rows = torch.as_tensor(self.row[items], device=self.hidden.device)
        h, mask = self.hidden[rows], self.mask[rows]
        for layer in self.top:
            h = layer(h, attention_mask=self.extended[rows])[0]
        if self.pooling == "cls":
            return h[:, 0]
        weights = mask.unsqueeze(-1).to(h.dtype)
        return (h * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _write_model(model, source, folder: Path) -> None:
    """Save the trained transformer and its tokenizer to ``folder`` with the classic
    sentence-transformers module configs (Transformer, Pooling with the base's mode, Normalize),
    which every sentence-transformers version and :class:`~tastemap.export.source.SourceModel` read."""
    transformer = model[0]
    transformer.auto_model.save_pretrained(str(folder), safe_serialization=True)
    transformer.tokenizer.save_pretrained(str(folder))
    modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    (folder / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)
    ], indent=2) + "\n", encoding="utf-8")
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": int(transformer.auto_model.config.hidden_size),
               **{f"pooling_mode_{key}": source.pooling == mode
                  for key, mode in (("cls_token", "cls"), ("mean_tokens", "mean"), ("max_tokens", "max"))},
               "pooling_mode_mean_sqrt_len_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n", encoding="utf-8")
    (folder / "2_Normalize").mkdir()
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": source.max_seq_len, "do_lower_case": False}, indent=2) + "\n", encoding="utf-8")


def _check_modules(path: Path) -> None:
    """Refuse a base whose sentence-transformers modules go beyond Transformer, Pooling and
    Normalize (a Dense head, say): the export graph has no place for them."""
    modules_path = path / "modules.json"
    if not modules_path.is_file():
        return
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in json.loads(modules_path.read_text(encoding="utf-8"))]
    other = [kind for kind in kinds if kind not in ("Transformer", "Pooling", "Normalize")]
    if other:
        raise InputError(
            f"{modules_path} lists modules {kinds}; fine-tuning and export support Transformer, Pooling and "
            f"Normalize only, not {other}: start from a model without them"
        )


def _schedule(n_steps: int, warmup: float):
    warmup_steps = int(round(n_steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (n_steps - step) / max(1, n_steps - warmup_steps))

    return factor


def _to(features: dict, device: str) -> dict:
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in features.items()}


@contextmanager
def _deterministic(torch, seed: int, device: str) -> Iterator[None]:
    """Seed torch and turn on its deterministic algorithms for the block (restored after).

    On CUDA some kernels have no deterministic version; there they only warn.
    """
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _resolve_device(device: str) -> str:
    torch = require("torch", "finetune")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise DeviceError("device='cuda' was asked for but torch sees no CUDA device; use device='cpu' or 'auto'")
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
        log.info("device auto: training on %s", device)
    return device


def config_dict(config: FinetuneConfig) -> dict:
    """``config`` as JSON-ready values (for bench results)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
