"""CLI of recommendation and evaluation: ``tastemap recommend``, ``tastemap evaluate``, ``tastemap demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.paths import MODEL_HELP, MODEL_HELP_EXPORTING
from tastemap.runtime.recommend import protocols
from tastemap.runtime.spark.session import Engine

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


# The --protocol choices, from the protocol registry.
ComparingProtocol = protocols.choices(
    "ComparingProtocol", [*protocols.protocol_names(compares_models=True), protocols.ALL_COMPARING])
EvaluateProtocol = protocols.choices("EvaluateProtocol", protocols.evaluate_choices())


@app.command("recommend")
@exits_on_error
def recommend_command(
    ctx: typer.Context,
    user: Optional[str] = typer.Option(None, "--user", "-u", help="User id to recommend for."),
    all_users: bool = typer.Option(False, "--all", help="Batch mode: every user, written to --out as Parquet."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Parquet file for --all (with --engine spark: a folder of Parquet parts)."),
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
    engine: Engine = typer.Option(Engine.local, help="With --model DIR --all: local (this process) or spark (users partitioned over Spark)."),
    master: str = typer.Option("local[2]", help="Spark master with --engine spark (ignored under spark-submit)."),
    attributes: Optional[str] = typer.Option(None, "--attributes", help='A new user\'s attributes, e.g. "age=24,gender=M,occupation=student" (with --model DIR fitted with --users).'),
    items: Optional[str] = typer.Option(None, "--items", help="A new user's liked item ids, e.g. 12,40 (latest last), alone or with --attributes (with --model DIR)."),
    text: Optional[str] = typer.Option(None, "--text", help='A new user described in a few words, e.g. "space operas and robots", alone or with --attributes (with --model DIR fitted through an encoder package).'),
) -> None:
    """Recommend items with explanations for one user, or for all users to Parquet.

    Example: tastemap recommend --user 414 --k 10

    From a fitted model (no refit): tastemap recommend --model model/ --user 414

    Every user of a fitted model on Spark: tastemap recommend --model model/ --all --out recs.parquet --engine spark

    A new user from their attributes: tastemap recommend --model model/ --attributes "age=24,gender=M,occupation=student"

    A new user from a few words: tastemap recommend --model model/ --text "space operas and robots"
    """
    if attributes is not None or items is not None or text is not None:
        from tastemap.runtime.cli.attributes import recommend_new_user

        return recommend_new_user(model, attributes, text=text, items=items, user=user, all_users=all_users, k=k)
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.cli.model import refuse_inputs, refuse_options
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.pipeline.model_io import is_fitted_model
    from tastemap.runtime.io.outputs import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    if (user is None) == (not all_users):
        raise InputError("give --user USER for one user, or --all --out FILE.parquet for every user")
    if all_users and out is None:
        raise InputError("--all needs --out FILE.parquet")
    spark = engine is Engine.spark
    if spark and not (all_users and is_fitted_model(model)):
        raise InputError("--engine spark recommends for every user of a fitted model: give --model DIR --all --out "
                         "FOLDER (fit the model with `tastemap fit`)")
    if all_users:
        from tastemap.runtime.io.outputs import hold_output

        hold_output(out, folder=spark)
    if is_fitted_model(model):
        from tastemap.runtime.pipeline.model import TastemapModel

        refuse_inputs(model, events=events, catalog=catalog, vectors=vectors)
        refuse_options(ctx, model, ["event_columns", "catalog_columns", "topics", "coarse_topics", "seed"])
        if spark:
            from tastemap.runtime.spark.recommend import recommend_with_spark

            done = recommend_with_spark(model, out, k=k, master=master)
            typer.echo(f"wrote {done.n_rows:,} recommendations for {done.n_users:,} users to {out} (Spark, "
                       f"{done.seconds:.1f} s)")
            return
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
    ctx: typer.Context,
    events: Optional[Path] = typer.Option(None, help=EVENTS_HELP),
    catalog: Optional[Path] = typer.Option(None, help=CATALOG_HELP),
    protocol: EvaluateProtocol = typer.Option(
        EvaluateProtocol.leave_last_out, help="Split protocol: " + ", ".join(
            f"{p.name} ({p.evaluates})" for p in protocols.PROTOCOLS) + f", or {protocols.ALL_COMPARING} ("
        + " and ".join(protocols.protocol_names(compares_models=True)) + ")."),
    tune: bool = typer.Option(False, "--tune", help="Choose the blend weights on the validation split first (and, with an encoder, the content signal: multi-interest or literal)."),
    finetune: bool = typer.Option(False, "--finetune", help="Also evaluate an encoder fine-tuned on each protocol's "
                                  "training part (cached by its data hash; needs tastemap[finetune])."),
    finetuned: Optional[Path] = typer.Option(None, help="Also evaluate this fine-tuned encoder (a `tastemap finetune` "
                                             "folder or its package); its data hash must match the training part."),
    sasrec: bool = typer.Option(False, "--sasrec", help="Add the SASRec sequential baseline (needs PyTorch; minutes)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write evaluation.csv into this folder."),
    sample: Optional[int] = typer.Option(None, help="Evaluate on this many users drawn with --seed."),
    model: Optional[Path] = typer.Option(None, help=FITTED_HELP.replace("answers", "is evaluated on its held-out split")
                                         + MODEL_HELP),
    vectors: Optional[Path] = typer.Option(
        None, help="Precomputed item vectors (.npy, catalog order); skips the encoder and the content-literal baseline."),
    event_columns: str = typer.Option("", help=EVENT_COLUMNS_HELP),
    catalog_columns: str = typer.Option("", help=CATALOG_COLUMNS_HELP),
    seed: int = typer.Option(0, help="Random seed (sampling, bootstrap, clustering, fine-tuning)."),
    users: Optional[Path] = typer.Option(None, "--users", help="With --protocol user-cold-start: users table (user_id plus attribute columns)."),
    data: Optional[Path] = typer.Option(None, "--data", help="With --protocol user-cold-start: a MovieLens 100K folder (u.data, u.item, u.user) instead of EVENTS, CATALOG and --users."),
) -> None:
    """Compare tastemap with MostPop, ItemKNN, EASE, content and (--sasrec) SASRec baselines
    (full ranking, 95% CIs), or rank new items (--protocol item-cold-start).

    Example: tastemap evaluate --protocol both --out eval/

    Fine-tuned encoder, trained on each training part only: tastemap evaluate --finetune --protocol item-cold-start

    A fitted model on the split recorded at fit time (no refit): tastemap evaluate --model model/

    New users from their attributes and first events: tastemap evaluate --protocol user-cold-start --data ml-100k/
    """
    import pandas as pd

    from tastemap.errors import InputError
    from tastemap.runtime.io.outputs import write_atomically
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.pipeline.model_io import is_fitted_model

    if out is not None:
        from tastemap.runtime.io.outputs import hold_output

        hold_output(out / "evaluation.csv")
    tables = []
    if protocol.value == "user-cold-start" or users is not None or data is not None:
        from tastemap.runtime.cli.attributes import evaluate_user_cold_start

        if protocol.value != "user-cold-start":
            raise InputError("--users and --data go with --protocol user-cold-start")
        tables.append(evaluate_user_cold_start(
            events, catalog, users=users, data=data, model=model, vectors=vectors, seed=seed,
            columns=_columns(event_columns, catalog_columns),
            refused={"--tune": tune, "--finetune": finetune, "--finetuned": finetuned, "--sasrec": sasrec,
                     "--sample": sample}))
    elif is_fitted_model(model):
        from tastemap.runtime.cli.model import evaluate_fitted, option_given, refuse_inputs, refuse_options

        refuse_inputs(model, events=events, catalog=catalog, vectors=vectors, sample=sample, tune=tune,
                      finetune=finetune, finetuned=finetuned, sasrec=sasrec)
        refuse_options(ctx, model, ["event_columns", "catalog_columns"])
        asked = protocol.value if option_given(ctx, "protocol") else None
        name, table, reference = evaluate_fitted(model, seed=seed, protocol=asked)
        _print_evaluation(name, table, reference)
        tables.append(table.assign(protocol=name))
    else:
        from tastemap.runtime.pipeline import evaluation
        from tastemap.runtime.recommend.comparison import ease_name
        from tastemap.stages import tuned_encoder_source

        names = protocols.expand_choice(protocol.value)
        if finetuned is not None and len(names) > 1:
            raise InputError(f"--finetuned {finetuned} was fine-tuned on the training part of one protocol; pass "
                             f"--protocol {' or '.join(names)} (--finetune trains one encoder per protocol)")
        tuned = tuned_encoder_source(finetune=finetune, finetuned=finetuned, seed=seed)
        if tuned is not None and vectors is not None:
            raise InputError("--finetune/--finetuned encode the items themselves; drop --vectors")
        inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, sample=sample, seed=seed,
                             **_columns(event_columns, catalog_columns))
        for name in names:
            result = evaluation.evaluate_protocol(inputs, name, tune=tune, tuned_encoder=tuned, sasrec=sasrec,
                                                  seed=seed)
            if not protocols.get_protocol(name).compares_models:
                _print_result(name, result)
                tables.append(result.table().assign(protocol=name))
                continue
            for encoder_name, chosen in result.weights.items():
                if chosen is not None:
                    typer.echo(f"{name}, {encoder_name} encoder: blend chosen on validation {chosen.as_dict()} "
                               f"(content signal: {result.content_signals[encoder_name]})")
            _print_evaluation(name, result.table, ease_name())
            if len(result.finetuned_vs_frozen):
                _print_finetuned(name, result.finetuned_vs_frozen)
            tables.append(result.table.assign(protocol=name))
    if out is not None:
        frame = pd.concat(tables, ignore_index=True)
        write_atomically(out, {"evaluation.csv": lambda path: frame.to_csv(path, index=False)})
        typer.echo(f"wrote {out / 'evaluation.csv'}")


def _print_finetuned(name: str, pairs) -> None:
    from tastemap.console import print_table

    print_table(f"{name}: fine-tuned / frozen encoder, paired over the same users, mean [95% CI]",
                ["model", "HR@10 ratio", "NDCG@10 ratio"],
                [(r["model"], _ci(r, "HR@10", "{:.2f}"), _ci(r, "NDCG@10", "{:.2f}")) for _, r in pairs.iterrows()])


def _print_result(name: str, result) -> None:
    """The result of a protocol that does not compare the models: item cold start in its own
    form, any other as its table (each metric with its 95% interval)."""
    from pandas.api.types import is_numeric_dtype

    from tastemap.console import print_table
    from tastemap.runtime.recommend.cold_start import ColdStartResult

    if isinstance(result, ColdStartResult):
        _print_cold_start(result)
        return
    table = result.table()
    metrics = [c for c in table.columns if f"{c}_low" in table.columns and f"{c}_high" in table.columns]
    labels = [c for c in table.columns if c not in metrics and not c.endswith(("_low", "_high"))
              and not is_numeric_dtype(table[c])]
    print_table(f"{name}, mean [95% CI]", [*labels, *metrics],
                [(*(r[c] for c in labels), *(_ci(r, m) for m in metrics)) for _, r in table.iterrows()])


def _print_cold_start(result) -> None:
    from tastemap.console import print_table, stdout

    table = result.table()
    print_table(f"item cold start: {result.n_items_held_out:,} new items, {result.n_users:,} users, mean [95% CI]",
                ["model (user history)", "Recall@10", "Recall@20", "NDCG@10", f"Recall@20 / {result.reference}"],
                [(r["model"], _ci(r, "Recall@10"), _ci(r, "Recall@20"), _ci(r, "NDCG@10"),
                  _ci(r, "Recall@20_vs_ref", "{:.2f}")) for _, r in table.iterrows()])
    if any(name.startswith("Fine-tuned") for name in result.metrics):
        tuned, frozen, ratios = result.best_versus_best("Fine-tuned", "Frozen")
        stdout.print(f"each encoder at its better rule, {tuned} / {frozen}, paired: "
                     + ", ".join(f"{m} {r.mean:.2f} [{r.low:.2f}, {r.high:.2f}]" for m, r in ratios.items()))
    stdout.print(result.not_evaluated)


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
    protocol: ComparingProtocol = typer.Option(ComparingProtocol.leave_last_out, help="Evaluation protocol."),
    finetune: bool = typer.Option(False, "--finetune", help="Fine-tune the encoder on the protocol's training part "
                                  "(cached; minutes on a CPU; needs tastemap[finetune]), evaluate it next to the frozen "
                                  "one and build the interests with it."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Run the whole pipeline on the bundled MovieLens sample and write report.html.

    Example: tastemap demo --out tastemap-demo

    With an encoder fine-tuned on the interactions: tastemap demo --finetune
    """
    from tastemap.console import print_table
    from tastemap.runtime.pipeline.demo import run_demo

    from tastemap.stages import tuned_encoder_source

    tuned = tuned_encoder_source(finetune=finetune, seed=seed)
    summary = run_demo(out, sample=sample, model_dir=model, protocols=protocols.expand_choice(protocol.value), tuned_encoder=tuned,
                       seed=seed)
    rows = [(name, value) for name, value in summary.items() if name not in ("metrics", "stage_seconds", "out_dir")]
    rows += list(summary["metrics"].items())
    print_table("tastemap demo", ["", "value"], rows)
    typer.echo(f"open {Path(summary['out_dir']) / 'report.html'}")
