"""`tastemap evaluate` with a fine-tuned encoder (never trained on test events), the item cold-start
protocol on the command line, and the content signal chosen on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_gates
from typer.testing import CliRunner

from planted import make_planted, make_recommender, write_planted_files
from tastemap.cli import app
from tastemap.errors import InputError
from tastemap.runtime.io.events import align_events, render_item_texts, validate_catalog
from tastemap.runtime.pipeline.inputs import Inputs
from tastemap.runtime.recommend.evaluate import FINETUNED, content_signal, split_events, tune_blend
from tastemap.runtime.recommend.recommender import BlendWeights


class LookupEncoder:
    """Encodes an item text to its planted vector and any other text (a history) to the mean of
    the item vectors whose titles it names."""

    def __init__(self, catalog: pd.DataFrame, vectors: np.ndarray):
        self.item_texts, self.vectors = render_item_texts(catalog), vectors
        self.by_text = dict(zip(self.item_texts, vectors))
        self.by_title = dict(zip(catalog["title"], vectors))

    def encode(self, texts):
        if list(texts) == self.item_texts:  # the catalog (titles may repeat)
            return np.asarray(self.vectors, np.float32)
        out = []
        for text in texts:
            vector = self.by_text.get(text)
            if vector is None:
                named = [v for title, v in self.by_title.items() if title in text]
                vector = np.mean(named, axis=0) if named else np.zeros(next(iter(self.by_text.values())).shape)
            out.append(vector)
        return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def planted_inputs():
    events, catalog, vectors, _ = make_planted(20)
    catalog = validate_catalog(catalog)
    interactions, report = align_events(events, catalog)
    return Inputs(interactions=interactions, catalog=catalog, item_vectors=vectors, report=report,
                  encoder=LookupEncoder(catalog, vectors))


def recording_tuner(inputs: Inputs, vectors: np.ndarray, calls: list, *, data_sha256=None):
    """A TunedEncoder that records the events it was given and returns a lookup encoder on
    ``vectors`` (rows of ``inputs.catalog``), reporting the true hash of those events (or ``data_sha256``)."""
    from tastemap.export.finetuned import training_sha256

    def tuned(events, catalog, part):
        calls.append((events, part))
        return LookupEncoder(inputs.catalog, vectors), data_sha256 or training_sha256(events, catalog)

    return tuned


def test_warm_protocol_evaluates_the_finetuned_encoder_beside_the_frozen_one(planted_inputs):
    from tastemap.runtime.pipeline.evaluation import evaluate_warm

    rng = np.random.default_rng(3)
    tuned_vectors = planted_inputs.item_vectors + rng.normal(0, 0.3, planted_inputs.item_vectors.shape).astype(np.float32)
    calls = []
    warm = evaluate_warm(planted_inputs, "leave-last-out", tuned_encoder=recording_tuner(planted_inputs, tuned_vectors, calls))
    names = warm.table["model"].tolist()
    assert names[-4:] == [f"{name}{FINETUNED}" for name in ("Content single-vector", "Content multi-interest",
                                                             "Content literal (history text)", "tastemap")]
    pairs = warm.finetuned_vs_frozen.set_index("model")
    assert list(pairs.index) == ["Content single-vector", "Content multi-interest", "Content literal (history text)",
                                 "tastemap"]
    assert np.isfinite(pairs[["HR@10", "HR@10_low", "HR@10_high"]].to_numpy()).all()
    # the fine-tune was given the training part, and not one test event
    (events, part), = calls
    split = split_events(planted_inputs.interactions, "leave-last-out")
    test = split.test.to_frame()
    key = ["user_id", "item_id", "timestamp"]
    assert part == "the leave-last-out split" and len(events) == split.train.n_events
    assert events.merge(test[key], on=key).empty


def test_an_encoder_trained_on_other_data_is_refused(planted_inputs):
    from tastemap.runtime.pipeline.evaluation import evaluate_warm

    leaky = recording_tuner(planted_inputs, planted_inputs.item_vectors, [], data_sha256="ab" * 32)
    with pytest.raises(InputError, match=r"trained on data with sha256 abababababab\.\.\., but the training part of the "
                                         r"temporal split hashes to [0-9a-f]{12}\.\.\.; it may have seen test interactions"):
        evaluate_warm(planted_inputs, "temporal", tuned_encoder=leaky)


def test_item_cold_start_ranks_new_items_with_both_encoders(planted_inputs):
    from tastemap.runtime.pipeline.evaluation import evaluate_item_cold_start

    calls = []
    result = evaluate_item_cold_start(planted_inputs, tuned_encoder=recording_tuner(planted_inputs, planted_inputs.item_vectors, calls),
                                      seed=1)
    assert list(result.metrics) == ["Frozen encoder (mean)", "Frozen encoder (max)", "Fine-tuned encoder (mean)",
                                    "Fine-tuned encoder (max)", "Random"]
    assert result.reference == "Frozen encoder (mean)"
    # same vectors: the same figures, and a ratio of exactly 1
    assert result.metrics["Fine-tuned encoder (mean)"]["Recall@20"] == result.metrics["Frozen encoder (mean)"]["Recall@20"]
    assert result.ratios["Fine-tuned encoder (mean)"]["Recall@20"].mean == 1.0
    tuned, frozen, ratios = result.best_versus_best("Fine-tuned", "Frozen")
    better = max(("mean", "max"), key=lambda rule: result.metrics[f"Frozen encoder ({rule})"]["Recall@20"].mean)
    assert (tuned, frozen) == (f"Fine-tuned encoder ({better})", f"Frozen encoder ({better})")
    assert ratios["Recall@20"].mean == ratios["NDCG@10"].mean == 1.0
    (events, part), = calls
    held_ids = planted_inputs.catalog["item_id"].to_numpy()[result_held_out(planted_inputs)]
    assert part == "the item cold-start split" and not events["item_id"].isin(held_ids).any()


def result_held_out(inputs):
    from tastemap.runtime.recommend.cold_start import split_new_items

    return split_new_items(inputs.interactions.to_frame(), inputs.catalog).held_out


def test_finetuned_package_is_trained_on_the_part_exported_and_reused(tiny_bert, tmp_path, monkeypatch):
    from tastemap.export import ModelPackage
    from tastemap.export import finetune as finetune_module
    from tastemap.export.finetune import FinetuneConfig
    from tastemap.export.finetuned import finetuned_package, training_sha256, tuned_encoder

    events, catalog, _, _ = make_planted(12)
    catalog = validate_catalog(catalog)
    interactions, _ = align_events(events, catalog)
    train = split_events(interactions, "leave-last-out").train.to_frame()
    config = FinetuneConfig(out=tmp_path / "unused", base=tiny_bert, max_steps=2, batch_size=4, max_seq_len=16,
                            device="cpu")
    export = {"variants": ("fp32",), "gates": tiny_gates()}
    package = finetuned_package(train, catalog, config, export=export, cache=tmp_path / "cache")
    manifest = ModelPackage.load(package).manifest
    assert manifest["finetune"]["data"]["sha256"] == training_sha256(train, catalog)
    assert manifest["finetune"]["data"]["n_events"] == len(train) == len(events) - 12
    assert manifest["name"] == f"{tiny_bert.name}-finetuned"
    # the second call finds it: no training, no export
    monkeypatch.setattr(finetune_module, "finetune_encoder", lambda *a, **k: pytest.fail("trained again"))
    assert finetuned_package(train, catalog, config, export=export, cache=tmp_path / "cache") == package
    encoder, data_sha256 = tuned_encoder(config=config, export=export, cache=tmp_path / "cache")(train, catalog, "part")
    assert data_sha256 == training_sha256(train, catalog)
    assert encoder.encode(["a b c"]).shape == (1, 32)
    # --finetuned with that package: accepted for its own training part, refused for another
    checked = tuned_encoder(folder=package)
    assert checked(train, catalog, "part")[1] == data_sha256
    with pytest.raises(InputError, match="the training part of the whole log hashes to"):
        checked(events, catalog, "the whole log")


def test_cli_item_cold_start_with_precomputed_vectors(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", *write_planted_files(tmp_path), "--protocol", "item-cold-start",
                                      "--out", str(tmp_path / "eval")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "item cold start: 22 new items" in result.output and "cannot score items without interactions" in result.output
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert table["model"].tolist() == ["Frozen encoder (mean)", "Frozen encoder (max)", "Random"]
    assert table["protocol"].eq("item-cold-start").all() and table["Recall@20"].between(0, 1).all()


@pytest.mark.parametrize("args, message", [
    (["--finetune", "--finetuned", "x"], "give --finetune (train on each training part) or --finetuned DIR, not both"),
    (["--finetuned", "no-such-folder"], "--finetuned no-such-folder: no such folder"),
    (["--protocol", "item-cold-start", "--sasrec"], "--tune and --sasrec apply to the chronological protocols"),
    (["--protocol", "both", "--finetuned", "x"], "--finetuned x was fine-tuned on the training part of one protocol; "
     "pass --protocol leave-last-out or temporal (--finetune trains one encoder per protocol)"),
])
def test_cli_bad_finetune_options_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", *write_planted_files(tmp_path, 8), *args], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_content_signal_is_chosen_on_validation_one_at_a_time(planted_inputs):
    split = split_events(planted_inputs.interactions, "leave-last-out")
    grid = {"long_term": (0.0, 0.5), "interests": (0.0, 0.2), "literal": (0.0, 0.2)}
    weights, table = tune_blend(make_recommender(), split, catalog=planted_inputs.catalog,
                                item_vectors=planted_inputs.item_vectors, grid=grid, encoder=planted_inputs.encoder)
    assert not ((table["interests"] > 0) & (table["literal"] > 0)).any()
    assert len(table) == 5  # 2 x 2 x 2 combinations, minus all-zero, minus the two with both content signals
    best = table.sort_values(["NDCG@10", "HR@10"], ascending=False, kind="stable").iloc[0]
    assert (weights.interests, weights.literal) == (best["interests"], best["literal"])
    assert content_signal(weights) in ("multi-interest", "literal", "none")
    assert content_signal(BlendWeights(literal=0.1, interests=0)) == "literal"
    assert content_signal(BlendWeights()) == "multi-interest"


def test_literal_component_needs_the_encoder_and_is_not_stored(planted_inputs, tmp_path):
    from tastemap.runtime.pipeline.model import TastemapModel

    weights = BlendWeights(long_term=0.3, short_term=0.7, interests=0.0, literal=0.2)
    data, catalog, vectors = planted_inputs.interactions, planted_inputs.catalog, planted_inputs.item_vectors
    with pytest.raises(InputError, match=r"weights.literal > 0 needs the encoder of the item vectors"):
        make_recommender(weights=weights).fit(data, catalog, vectors)
    fitted = make_recommender(weights=weights).fit(data, catalog, vectors, encoder=planted_inputs.encoder)
    user = fitted.user_index_[0]
    assert len(fitted.recommend(user, k=5)) == 5
    assert "literal" in fitted.components(np.array([0]))
    with pytest.raises(InputError, match="a model directory cannot hold the literal content signal"):
        TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(weights=weights))


def test_demo_with_a_finetuned_encoder(tiny_package, tmp_path, monkeypatch):
    from tastemap.export.finetuned import training_sha256
    from tastemap.runtime.pipeline.demo import make_encoder, run_demo

    monkeypatch.setenv("TASTEMAP_HOME", str(tmp_path / "home"))
    parts = []

    def tuned(events, catalog, part):
        parts.append((part, len(events)))
        return make_encoder(tiny_package), training_sha256(events, catalog)

    summary = run_demo(tmp_path / "out", sample=12, model_dir=tiny_package, tuned_encoder=tuned)
    evaluation = pd.read_csv(tmp_path / "out" / "evaluation.csv")
    assert evaluation["model"].tolist()[-2:] == ["Content literal (history text) (fine-tuned)", "tastemap (fine-tuned)"]
    # evaluated on the leave-last-out training part, and the interests built with that same encoder
    assert [part for part, _ in parts] == ["the leave-last-out split"] * 2
    assert parts[0][1] == summary["events"] - summary["users"]
    assert "fine-tune" in summary["stage_seconds"]
    assert summary["metrics"]["leave-last-out HR@10 tastemap (fine-tuned)"] >= 0
