"""CLI of recommendation and evaluation: ``tastemap recommend``, ``tastemap evaluate``, ``tastemap demo``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.paths import MODEL_HELP, MODEL_HELP_EXPORTING
from tastemap.runtime.recommend.protocols import Protocol

app = typer.Typer()

EVENTS_HELP = "Events file (.csv, .parquet, .jsonl); default: the built-in MovieLens sample."
CATALOG_HELP = "Catalog file (item_id, title[, categories, tags, description]); give it with EVENTS."
EVENT_COLUMNS_HELP = "Event column names, e.g. user_id=uid,item_id=sku,timestamp=ts,timestamp_unit=ms."
CATALOG_COLUMNS_HELP = "Catalog column names, e.g. item_id=sku,title=name,categories=path."


def _columns(event_columns: str, catalog_columns: str) -> dict:
    from tastemap.runtime.io.events import CatalogColumns, EventColumns

    return {"event_columns": EventColumns.from_option(event_columns),
            "catalog_columns": CatalogColumns.from_option(catalog_columns)}
FITTED_HELP = "A fitted model directory (`tastemap fit`), which answers without refitting; or: "


ProtocolChoice = Enum("ProtocolChoice", {**{p.name: p.value for p in Protocol}, "both": "both"}, type=str)


def _protocols(choice: ProtocolChoice) -> list[str]:
    return [p.value for p in Protocol] if choice is ProtocolChoice.both else [choice.value]


@app.command("recommend")
@exits_on_error
def recommend_command(
    user: Optional[str] = typer.Option(None, "--user", "-u", help="User id to recommend for."),
    all_users: bool = typer.Option(False, "--all", help="Batch mode: every user, written to --out as Parquet."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Parquet file for --all."),
    k: int = typer.Option(20, "--k", help="Number of recommendations per user."),
    events: Optional[Path] = typer.Option(None, help=EVENTS_HELP),
    catalog: Optional[Path] = typer.Option(None, help=CATALOG_HELP),
    model: Optional[Path] = typer.Option(None, help=FITTED_HELP + MODEL_HELP),
    vectors: Optional[Path] = typer.Option(None, help="Precomputed item vectors (.npy, catalog order); skips the encoder."),
    event_columns: str = typer.Option("", help=EVENT_COLUMNS_HELP),
    catalog_columns: str = typer.Option("", help=CATALOG_COLUMNS_HELP),
    topics: int = typer.Option(50, help="Number of fine topics (at most the number of catalog items)."),
    coarse_topics: int = typer.Option(10, help="Number of coarse topics (0: a single level)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Recommend items with explanations for one user, or for all users to Parquet.

    Example: tastemap recommend --user 414 --k 10

    From a fitted model (no refit): tastemap recommend --model model/ --user 414
    """
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.cli.model import refuse_inputs
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.pipeline.model_io import is_fitted_model
    from tastemap.runtime.interests.profile_io import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    if (user is None) == (not all_users):
        raise InputError("give --user USER for one user, or --all --out FILE.parquet for every user")
    if all_users and out is None:
        raise InputError("--all needs --out FILE.parquet")
    if all_users:
        from tastemap.runtime.io.outputs import hold_output

        hold_output(out)
    if is_fitted_model(model):
        from tastemap.runtime.pipeline.model import TastemapModel

        refuse_inputs(model, events=events, catalog=catalog, vectors=vectors)
        recommender = TastemapModel.load(model)
        user_ids = recommender.user_ids
    else:
        inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, seed=seed,
                             **_columns(event_columns, catalog_columns))
        from tastemap.runtime.interests.profiles import InterestProfiler

        profiler = InterestProfiler(n_topics=topics, n_coarse_topics=coarse_topics or None, seed=seed)
        recommender = TastemapRecommender(profiler=profiler, seed=seed).fit(
            inputs.interactions, inputs.catalog, inputs.item_vectors)
        user_ids = inputs.interactions.user_ids
    if all_users:
        frame = recommender.recommend_batch(k=k)
        write_atomically(out.parent, {out.name: lambda path: frame.to_parquet(path, index=False)})
        typer.echo(f"wrote {len(frame):,} recommendations for {frame['user_id'].nunique():,} users to {out}")
        return
    user_id = _as_user_id(user, user_ids)
    recs = recommender.recommend(user_id, k=k)
    print_table(f"Recommendations for user {user}", ["#", "item", "title", "layer", "why"],
                [(r.rank, r.item_id, r.title, r.explanation.layer, r.explanation.describe()) for r in recs])


def _as_user_id(text: str, user_ids):
    """Match the command-line string to the ids' type (MovieLens user ids are integers)."""
    import numpy as np

    if np.issubdtype(np.asarray(user_ids).dtype, np.integer):
        try:
            return int(text)
        except ValueError:
            from tastemap.errors import InputError

            raise InputError(f"--user {text!r} is not an integer; this data set's user ids are integers") from None
    return text


@app.command("evaluate")
@exits_on_error
def evaluate_command(
    events: Optional[Path] = typer.Option(None, help=EVENTS_HELP),
    catalog: Optional[Path] = typer.Option(None, help=CATALOG_HELP),
    protocol: ProtocolChoice = typer.Option(ProtocolChoice.leave_last_out, help="Split protocol."),
    tune: bool = typer.Option(False, "--tune", help="Choose the blend weights on the validation split first."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write evaluation.csv into this folder."),
    sample: Optional[int] = typer.Option(None, help="Evaluate on this many users drawn with --seed."),
    model: Optional[Path] = typer.Option(None, help=FITTED_HELP.replace("answers", "is evaluated on its held-out split")
                                         + MODEL_HELP),
    vectors: Optional[Path] = typer.Option(
        None, help="Precomputed item vectors (.npy, catalog order); skips the encoder and the content-literal baseline."),
    event_columns: str = typer.Option("", help=EVENT_COLUMNS_HELP),
    catalog_columns: str = typer.Option("", help=CATALOG_COLUMNS_HELP),
    seed: int = typer.Option(0, help="Random seed (sampling, bootstrap, clustering)."),
) -> None:
    """Compare tastemap with MostPop, ItemKNN, EASE and content baselines (full ranking, 95% CIs).

    Example: tastemap evaluate --protocol both --out eval/

    A fitted model on the split recorded at fit time (no refit): tastemap evaluate --model model/
    """
    import pandas as pd

    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.pipeline.model_io import is_fitted_model
    from tastemap.runtime.recommend.evaluate import compare_models, ease_name, evaluation_table, split_events, tune_blend
    from tastemap.runtime.interests.profile_io import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    tables = []
    if is_fitted_model(model):
        from tastemap.runtime.cli.model import evaluate_fitted, refuse_inputs

        refuse_inputs(model, events=events, catalog=catalog, vectors=vectors, sample=sample, tune=tune)
        name, table, reference = evaluate_fitted(model, seed=seed)
        _print_evaluation(name, table, reference)
        tables.append(table.assign(protocol=name))
    else:
        inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, sample=sample, seed=seed,
                             **_columns(event_columns, catalog_columns))
        for name in _protocols(protocol):
            split = split_events(inputs.interactions, name)
            weights = None
            if tune:
                weights, _ = tune_blend(TastemapRecommender(seed=seed), split, catalog=inputs.catalog,
                                        item_vectors=inputs.item_vectors)
                typer.echo(f"{name}: blend weights chosen on validation: {weights.as_dict()}")
            results = compare_models(split, catalog=inputs.catalog, item_vectors=inputs.item_vectors,
                                     encoder=inputs.encoder, weights=weights, seed=seed)
            table = evaluation_table(results, reference=ease_name(), seed=seed)
            tables.append(table.assign(protocol=name))
            _print_evaluation(name, table, ease_name())
    if out is not None:
        frame = pd.concat(tables, ignore_index=True)
        write_atomically(out, {"evaluation.csv": lambda path: frame.to_csv(path, index=False)})
        typer.echo(f"wrote {out / 'evaluation.csv'}")


def _print_evaluation(name: str, table, reference: str | None) -> None:
    from tastemap.console import print_table

    if reference is None:
        table = table.assign(**{f"HR@10_vs_ref{end}": float("nan") for end in ("", "_low", "_high")})
    print_table(f"{name}: {int(table['users'].iloc[0]):,} users, mean [95% CI]",
                ["model", "HR@10", "NDCG@10", "HR@50", "Coverage@10", f"HR@10 vs {reference}"],
                [(r["model"], _ci(r, "HR@10"), _ci(r, "NDCG@10"), _ci(r, "HR@50"), f"{r['Coverage@10']:.3f}",
                  _ci(r, "HR@10_vs_ref", "{:.2f}")) for _, r in table.iterrows()])


def _ci(row, metric: str, fmt: str = "{:.4f}") -> str:
    return f"{fmt.format(row[metric])} [{fmt.format(row[metric + '_low'])}, {fmt.format(row[metric + '_high'])}]"


@app.command("demo")
@exits_on_error
def demo_command(
    out: Path = typer.Option(Path("tastemap-demo"), "--out", "-o", help="Output folder."),
    sample: Optional[int] = typer.Option(None, help="Run on this many users drawn with --seed (faster)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP_EXPORTING),
    protocol: ProtocolChoice = typer.Option(ProtocolChoice.leave_last_out, help="Evaluation protocol."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Run the whole pipeline on the bundled MovieLens sample and write report.html.

    Example: tastemap demo --out tastemap-demo
    """
    from tastemap.console import print_table
    from tastemap.runtime.pipeline.demo import run_demo

    summary = run_demo(out, sample=sample, model_dir=model, protocols=_protocols(protocol), seed=seed)
    rows = [(name, value) for name, value in summary.items() if name not in ("metrics", "stage_seconds", "out_dir")]
    rows += list(summary["metrics"].items())
    print_table("tastemap demo", ["", "value"], rows)
    typer.echo(f"open {Path(summary['out_dir']) / 'report.html'}")
