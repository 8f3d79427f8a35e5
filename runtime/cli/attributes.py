"""The new-user parts of ``tastemap recommend`` (``--attributes``, ``--items``, ``--text``) and
``tastemap evaluate --protocol user-cold-start``: build the call, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

USER_COLD_START = "user-cold-start"
USERS_HELP = ("Users table (user_id plus attribute columns such as age, gender, occupation, zip_code): attribute "
              "cold starts and segments described by attributes; the model keeps group aggregates only.")
DATA_HELP = "A MovieLens 100K folder (u.data, u.item, u.user) with --protocol user-cold-start, instead of EVENTS, CATALOG and --users."


def recommend_new_user(model: Optional[Path], attributes: str | None, *, text: str | None, items: str | None,
                       user: Optional[str], all_users: bool, k: int) -> None:
    """``tastemap recommend --model DIR`` for a new user: ``--attributes "age=24,gender=M"``, ``--items
    12,40`` or ``--text "..."``, the attributes alone or with the items or the text."""
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.io.users import parse_attributes
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.pipeline.model_io import is_fitted_model

    if user is not None or all_users:
        raise InputError("--attributes, --items and --text describe a new user: drop --user and --all")
    if text is not None and items is not None:
        raise InputError("give --text or --items for a new user, not both")
    if not is_fitted_model(model):
        raise InputError("a new user (--attributes, --items, --text) needs --model DIR, a model fitted with "
                         "`tastemap fit` (with --users for --attributes)")
    fitted = TastemapModel.load(model)
    given = text if text is not None else (_item_ids(items, fitted.item_ids) if items is not None else None)
    recs = fitted.recommend_cold(given, k=k, attributes=parse_attributes(attributes) if attributes is not None else None)
    described = [part for part in (attributes, f"items {items}" if items else None,
                                   f"“{text}”" if text is not None else None) if part]
    print_table(f"Recommendations for a new user ({', '.join(described)})",
                ["#", "item", "title", "why"], [(r.rank, r.item_id, r.title, r.explanation.describe()) for r in recs])


def evaluate_user_cold_start(events: Optional[Path], catalog: Optional[Path], *, users: Optional[Path],
                             data: Optional[Path], model: Optional[Path], vectors: Optional[Path], columns: dict,
                             seed: int, refused: dict):
    """``tastemap evaluate --protocol user-cold-start``: print the table and return it
    (``protocol`` column added) for evaluation.csv. ``refused``: options that do not apply."""
    from tastemap.errors import InputError
    from tastemap.runtime.pipeline.user_attributes import evaluate_protocol_inputs, load_attribute_inputs

    given = [flag for flag, value in refused.items() if value]
    if given:
        raise InputError(f"{', '.join(given)} do not apply to --protocol {USER_COLD_START}, which ranks for held-out "
                         "users from their attributes and first events")
    inputs, user_table = load_attribute_inputs(events, catalog, users_path=users, data_dir=data, model_dir=model,
                                               vectors_path=vectors, **columns)
    result = evaluate_protocol_inputs(inputs, USER_COLD_START, seed=seed, users=user_table)
    print_user_cold_start(result)
    return result.table().assign(protocol=USER_COLD_START)


def print_user_cold_start(result) -> None:
    from tastemap.console import print_table

    def ci(row, metric, fmt="{:.4f}"):
        if row[metric] != row[metric]:
            return ""
        return f"{fmt.format(row[metric])} [{fmt.format(row[metric + '_low'])}, {fmt.format(row[metric + '_high'])}]"

    print_table(f"user cold start: {result.n_test_users:,} held-out users, {result.n_train_users:,} training users, "
                "mean [95% CI]", ["events given", "model", "Recall@20", "NDCG@10", "HR@10", "Recall@20 / reference"],
                [(r["events_given"], r["model"], ci(r, "Recall@20"), ci(r, "NDCG@10"), ci(r, "HR@10"),
                  (f"{ci(r, 'Recall@20_vs_ref', '{:.2f}')} vs {r['reference']}" if r["reference"] else ""))
                 for _, r in result.table().iterrows()])


def print_attribute_groups(groups: list[dict]) -> None:
    """The attribute groups of ``tastemap profile --users`` and the topics over-represented in each."""
    from tastemap.console import print_table
    from tastemap.runtime.recommend.attributes import AttributeGroup

    print_table("Attribute groups (10 users or more), over-represented topics", ["group", "users", "topics (lift, weight)"],
                [(AttributeGroup(g["attribute"], g["value"]).describe(), g["users"],
                  ", ".join(f"{t['label']} ×{t['lift']:.1f} ({t['weight']:.0%})" for t in g["top_topics"]) or "-")
                 for g in groups])


def _item_ids(text: str, known):
    """``"12,40"`` as the model's item ids (integers when the model's ids are)."""
    import numpy as np

    from tastemap.errors import InputError

    values = [part.strip() for part in text.split(",") if part.strip()]
    if np.issubdtype(np.asarray(known).dtype, np.integer):
        try:
            return [int(value) for value in values]
        except ValueError:
            raise InputError(f"--items {text!r}: this model's item ids are integers") from None
    return values
