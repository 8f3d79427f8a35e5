"""Fine-tuning the encoder on co-engagement: what it learns, determinism, export, no leakage, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import WORDS, tiny_gates
from typer.testing import CliRunner

from tastemap.cli import app
from tastemap.errors import InputError
from tastemap.export.finetune import (
    FINETUNE_RECORD,
    FinetuneConfig,
    co_engaged_pairs,
    finetune_encoder,
    history_loss,
    plan_batches,
    sampling_log_frequency,
    user_groups,
)
from tastemap.runtime.io.events import render_item_texts, validate_catalog, validate_events
from tastemap.runtime.io.fingerprint import training_data_sha256

N_GROUPS, GROUP_SIZE = 4, 8


def make_co_engaged(n_users: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Items with random, unrelated titles; user ``u`` consumes every item of group ``u % 4`` in a
    random order. Returns validated ``(events, catalog, group per catalog row)``."""
    rng = np.random.default_rng(seed)
    n_items = N_GROUPS * GROUP_SIZE
    groups = rng.permutation(np.repeat(np.arange(N_GROUPS), GROUP_SIZE))
    titles = [" ".join(rng.choice(WORDS[20:], size=3, replace=False)) for _ in range(n_items)]
    catalog = validate_catalog(pd.DataFrame({"item_id": np.arange(1000, 1000 + n_items), "title": titles}))
    rows = []
    for user in range(n_users):
        members = rng.permutation(np.flatnonzero(groups == user % N_GROUPS))
        rows += [(f"u{user}", 1000 + int(item), 1_600_000_000 + 60 * step) for step, item in enumerate(members)]
    events = validate_events(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    return events, catalog, groups


def embed(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def group_gap(vectors: np.ndarray, groups: np.ndarray) -> float:
    """Mean cosine within groups (pairs of distinct items) minus mean cosine across groups."""
    cosines = vectors @ vectors.T
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    return float(cosines[same & off_diagonal].mean() - cosines[~same].mean())


def tiny_config(out: Path, base: Path, **overrides) -> FinetuneConfig:
    settings = dict(out=out, base=base, epochs=4, batch_size=8, learning_rate=1e-2, max_seq_len=16, device="cpu")
    return FinetuneConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def planted():
    return make_co_engaged()


@pytest.fixture(scope="module", params=["history", "pairs"])
def finetuned(request, planted, tiny_bert, tmp_path_factory):
    events, catalog, _ = planted
    folder = tmp_path_factory.mktemp("finetuned") / request.param
    return finetune_encoder(events, catalog, tiny_config(folder, tiny_bert, objective=request.param))


def test_pairs_are_close_in_time_and_positive():
    events = validate_events(pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2],
        "item_id": [10, 11, 12, 13, 10, 10],
        "timestamp": [1, 2, 3, 4, 1, 2],
        "rating": [5, 5, 1, 5, 5, 5],
    }))
    catalog = validate_catalog(pd.DataFrame({"item_id": [10, 11, 12, 13], "title": list("abcd")}))
    from tastemap.runtime.io.events import align_events

    interactions, _ = align_events(events, catalog)
    # the 1-star event is no positive; user 2's repeat of one item is no pair; window 1 pairs neighbours only
    assert co_engaged_pairs(interactions, window=1, min_weight=0.7).tolist() == [[0, 1], [1, 3]]
    assert co_engaged_pairs(interactions, window=5, min_weight=0.7).tolist() == [[0, 1], [0, 3], [1, 3]]


def test_groups_are_distinct_items_of_one_user_close_in_time(planted):
    from tastemap.runtime.io.events import align_events

    events, catalog, groups_of_items = planted
    interactions, _ = align_events(events, catalog)
    groups = user_groups(interactions, size=4, window=5, n=50, rng=np.random.default_rng(0))
    assert groups.shape == (50, 4)
    assert all(len(set(group)) == 4 for group in groups.tolist())
    # every user consumes one planted group only, so a group never mixes planted groups
    assert all(len(set(groups_of_items[group])) == 1 for group in groups)
    assert np.array_equal(groups, user_groups(interactions, size=4, window=5, n=50, rng=np.random.default_rng(0)))


@pytest.mark.parametrize("examples", [
    np.array([[0, 1], [0, 2], [0, 3], [4, 5], [6, 7], [1, 8], [9, 10]]),
    np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [8, 9, 10], [0, 11, 12]]),
])
def test_batches_never_repeat_an_item(examples):
    batches = plan_batches(examples.copy(), 3, np.random.default_rng(0))
    for batch in batches:
        assert len(np.unique(batch)) == batch.size
    assert sum(len(b) for b in batches) >= 3
    seen = sorted(map(sorted, np.concatenate(batches).tolist()))
    assert all(row in sorted(map(sorted, examples.tolist())) for row in seen)


def test_history_loss_is_low_when_each_item_is_its_groups_mean():
    import torch

    axes = torch.eye(4).repeat_interleave(3, dim=0)  # 4 groups of 3 identical unit vectors
    good = history_loss(axes + 0.01 * torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), 3, 20.0)
    shuffled = history_loss(axes[torch.randperm(12, generator=torch.Generator().manual_seed(1))], 3, 20.0)
    assert float(good) < 0.01 < float(shuffled)


def test_sampling_log_frequency_is_each_items_share_of_the_batches():
    batches = [np.array([[0, 1], [2, 3]]), np.array([[0, 2]])]
    # item 4 is never drawn and counts once
    np.testing.assert_allclose(np.exp(sampling_log_frequency(batches, 5)), [2 / 6, 1 / 6, 2 / 6, 1 / 6, 1 / 6], rtol=1e-6)


def test_a_uniform_correction_changes_no_loss():
    import torch

    embeddings = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    plain = history_loss(embeddings, 3, 20.0)
    assert torch.allclose(history_loss(embeddings, 3, 20.0, torch.full((12,), -2.5)), plain)
    assert not torch.allclose(history_loss(embeddings, 3, 20.0, torch.linspace(-3, 0, 12)), plain)


def test_co_engaged_items_move_together(planted, finetuned, tiny_bert):
    events, catalog, groups = planted
    texts = render_item_texts(catalog)
    before = group_gap(embed(tiny_bert, texts), groups)
    after = group_gap(embed(finetuned.path, texts), groups)
    # the titles are random: the base model sees no groups; the fine-tuned one learned them from the log
    assert abs(before) < 0.05
    assert after > before + 0.2, (before, after)
    assert finetuned.losses[-5:].mean() < finetuned.losses[:5].mean()


def test_same_seed_same_model(planted, tiny_bert, tmp_path):
    from tastemap.export.source import SourceModel

    events, catalog, _ = planted
    runs = [finetune_encoder(events, catalog, tiny_config(tmp_path / name, tiny_bert, max_steps=6, seed=seed))
            for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    hashes = [SourceModel.resolve(run.path).sha256 for run in runs]
    assert hashes[0] == hashes[1] and np.array_equal(runs[0].losses, runs[1].losses)
    assert hashes[2] != hashes[0]


def test_export_takes_the_finetuned_folder(planted, finetuned, tiny_bert, tmp_path):
    from tastemap.export import ExportConfig, ModelPackage, export_model
    from tastemap.export.source import SourceModel

    events, catalog, _ = planted
    result = export_model(ExportConfig(out=tmp_path / "pkg", source=finetuned.path, variants=("fp32",), gates=tiny_gates()))
    assert all(variant.passed for variant in result.variants)
    manifest = ModelPackage.load(tmp_path / "pkg").manifest
    record = manifest["finetune"]
    assert record["base"]["sha256"] == SourceModel.resolve(tiny_bert).sha256
    assert record["data"]["sha256"] == training_data_sha256(events, catalog, render_item_texts(catalog))
    loss = {"history": "HistoryInfoNCE", "pairs": "MultipleNegativesRankingLoss"}[finetuned.record["loss"]["objective"]]
    assert (record["seed"], record["epochs"], record["loss"]["name"]) == (0, 4, loss)
    assert record["loss"]["popularity_correction"] == "logQ"
    assert manifest["pooling"] == "mean" and manifest["embedding_dim"] == 32


def test_cli_writes_a_model_folder(planted, tiny_bert, tmp_path):
    events, catalog, _ = planted
    events.to_csv(tmp_path / "events.csv", index=False)
    catalog[["item_id", "title"]].to_csv(tmp_path / "catalog.csv", index=False)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, ["finetune", str(tmp_path / "events.csv"), str(tmp_path / "catalog.csv"),
                                      "--out", str(out), "--base", str(tiny_bert), "--epochs", "1", "--seed", "3",
                                      "--batch-size", "4", "--max-steps", "2", "--device", "cpu",
                                      "--no-popularity-correction", "--window", "3", "--min-weight", "0"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / FINETUNE_RECORD).read_text())
    assert (record["seed"], record["steps"], record["batch_size"]) == (3, 2, 4)
    assert (record["loss"]["popularity_correction"], record["loss"]["window"], record["loss"]["min_weight"]) == (None, 3, 0)
    assert {"config.json", "tokenizer.json", "model.safetensors", "modules.json"} <= {p.name for p in out.iterdir()}


def test_finetune_sees_only_the_training_part_of_the_cold_start_split(planted, tiny_bert, tmp_path):
    from tastemap.runtime.recommend.cold_start import ContentModel, evaluate_cold_start, split_new_items

    events, catalog, _ = planted
    split = split_new_items(events, catalog, holdout_fraction=0.25)
    held_ids = catalog["item_id"].to_numpy()[split.held_out]
    assert not np.isin(split.train_events["item_id"], held_ids).any()
    assert not np.isin(split.train_catalog["item_id"], held_ids).any()
    tuned = finetune_encoder(split.train_events, split.train_catalog, tiny_config(tmp_path / "cold", tiny_bert, max_steps=3))
    assert tuned.data_sha256 == split.train_sha256
    assert tuned.record["data"]["n_events"] == len(split.train_events) < len(events)
    # a fine-tune on the whole log (held-out interactions included) is refused by the protocol
    leaky = finetune_encoder(events, catalog, tiny_config(tmp_path / "leaky", tiny_bert, max_steps=1))
    vectors = embed(tuned.path, render_item_texts(catalog))
    evaluate_cold_start(split, [ContentModel("tuned", vectors, trained_on=tuned.data_sha256)], n_resamples=50)
    with pytest.raises(InputError, match="may have seen the held-out items"):
        evaluate_cold_start(split, [ContentModel("leaky", vectors, trained_on=leaky.data_sha256)])


@pytest.mark.parametrize("change, message", [
    (lambda e, c: (e.drop(columns="timestamp"), c), r"missing column\(s\) \['timestamp'\]"),
    (lambda e, c: (e.iloc[:0], c), "empty"),
    (lambda e, c: (e, c.drop(columns="title")), r"lacks column\(s\) \['title'\]"),
    (lambda e, c: (e.assign(weight=0.1), c), "no co-engaged items"),
])
def test_bad_input_is_an_input_error(planted, tiny_bert, tmp_path, change, message):
    events, catalog = change(*planted[:2])
    with pytest.raises(InputError, match=message):
        finetune_encoder(events, catalog, tiny_config(tmp_path / "out", tiny_bert))
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_exits_2(tmp_path, tiny_bert):
    (tmp_path / "events.csv").write_text("user_id,item_id\n1,2\n")
    (tmp_path / "catalog.csv").write_text("item_id,title\n2,a\n")
    result = CliRunner().invoke(app, ["finetune", str(tmp_path / "events.csv"), str(tmp_path / "catalog.csv"),
                                      "--out", str(tmp_path / "out"), "--base", str(tiny_bert)])
    assert result.exit_code == 2
    assert "timestamp" in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["training", "saving"])
def test_interrupted_run_leaves_nothing(planted, tiny_bert, tmp_path, monkeypatch, where):
    from tastemap.export import finetune

    events, catalog, _ = planted
    if where == "training":
        monkeypatch.setattr(finetune, "_schedule", _interrupting_schedule)
    else:
        original = finetune._write_model

        def write_then_fail(*args):
            original(*args)  # the folder is complete on disk, then the run is killed before the rename
            raise KeyboardInterrupt

        monkeypatch.setattr(finetune, "_write_model", write_then_fail)
    out = tmp_path / "models" / "tuned"
    with pytest.raises(KeyboardInterrupt):
        finetune_encoder(events, catalog, tiny_config(out, tiny_bert, max_steps=3))
    assert not out.exists()
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def _interrupting_schedule(n_steps, warmup):
    def factor(step):
        if step >= 1:
            raise KeyboardInterrupt
        return 1.0

    return factor


def test_config_rejects_impossible_values(tmp_path):
    with pytest.raises(InputError, match="batch_size=1"):
        FinetuneConfig(out=tmp_path, batch_size=1)
    with pytest.raises(InputError, match="device='tpu'"):
        FinetuneConfig(out=tmp_path, device="tpu")
    with pytest.raises(InputError, match="max_steps=0"):
        FinetuneConfig(out=tmp_path, max_steps=0)
    with pytest.raises(InputError, match=r"train_layers=0 should be None \(all layers\) or an integer >= 1"):
        FinetuneConfig(out=tmp_path, train_layers=0)


def test_a_config_without_out_cannot_train(planted):
    with pytest.raises(InputError, match="FinetuneConfig.out is None: say which folder the fine-tuned model goes to"):
        finetune_encoder(*planted[:2], FinetuneConfig())


def test_cached_lower_layers_give_the_models_own_embeddings(planted, tiny_bert):
    import torch
    from sentence_transformers import SentenceTransformer

    from tastemap.export.finetune import _TopLayers

    texts = render_item_texts(planted[1])
    model = SentenceTransformer(str(tiny_bert), device="cpu").eval()
    items = np.array([[0, 5], [9, 2], [7, 31]])
    top = _TopLayers.maybe(model, texts, [items], FinetuneConfig(train_layers=1), "cpu")
    cached = torch.nn.functional.normalize(top.embed(items.ravel()).detach(), dim=-1).numpy()
    np.testing.assert_allclose(cached, model.encode([texts[i] for i in items.ravel()], normalize_embeddings=True),
                               atol=1e-5)


def test_training_the_top_layer_on_cached_lower_layers(planted, tiny_bert, tmp_path):
    from safetensors.numpy import load_file

    events, catalog, groups = planted
    tuned = finetune_encoder(events, catalog, tiny_config(tmp_path / "top", tiny_bert, train_layers=1))
    texts = render_item_texts(catalog)
    assert group_gap(embed(tuned.path, texts), groups) > group_gap(embed(tiny_bert, texts), groups) + 0.2
    before, after = load_file(tiny_bert / "model.safetensors"), load_file(tuned.path / "model.safetensors")
    assert before.keys() == after.keys()
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    # only the top layer (of two) learned; the embeddings and the lower layer are the base's
    assert changed and all(name.startswith("encoder.layer.1.") for name in changed), changed
    assert tuned.record["train_layers"] == 1
