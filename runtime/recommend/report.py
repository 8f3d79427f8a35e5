"""``report.html``: one self-contained page (inline CSS and SVG, no script, no network asset).

Sections: summary, evaluation table, topic tree, 2-D map of the items coloured by coarse topic
(PCA of the item vectors), segments, and a few example users with their interests and
explained recommendations. Every string that comes from the data (titles, tags, labels, user ids,
descriptions) goes through :func:`html.escape`; the page carries no script at all.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Sequence

import numpy as np
import pandas as pd

from tastemap.runtime.io.outputs import write_atomically

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
METRICS = ("HR@10", "HR@20", "HR@50", "Recall@10", "Recall@20", "Recall@50", "NDCG@10", "NDCG@20", "ILD@10")


@dataclass
class ExampleUser:
    """One user shown in the report: ``interests`` are dicts with ``rank, topic`` (the interest's
    label: what its members share, or "a mix of ..."), ``share, size, medoid`` (a title) and
    ``members`` (a few titles); ``recommendations`` are
    :class:`~tastemap.runtime.recommend.recommender.Recommendation`."""

    user_id: object
    n_events: int
    interests: list
    recommendations: list


@dataclass
class ReportData:
    """Everything the page shows.

    ``topics``: :meth:`TopicTree.to_dict` output; ``points`` ``[n, 2]`` map coordinates with
    ``point_topics`` ``[n]`` (coarse topic index) and ``point_titles`` ``[n]``; ``topic_names``
    coarse topic labels; ``segments`` frame (segment, size, share, label); ``evaluations`` maps a
    protocol name to an :func:`~tastemap.runtime.recommend.evaluate.evaluation_table` frame.
    """

    title: str
    summary: dict
    topics: dict
    points: np.ndarray
    point_topics: np.ndarray
    point_titles: Sequence[str]
    topic_names: Sequence[str]
    segments: pd.DataFrame
    users: list = field(default_factory=list)
    evaluations: dict = field(default_factory=dict)
    reference: str | None = None


def esc(value) -> str:
    """Escape any value for HTML text and attribute context."""
    return html.escape(str(value), quote=True)


def project_2d(vectors: np.ndarray, *, max_points: int = 2500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA of ``vectors`` ``[n, dim]`` to 2-D on at most ``max_points`` rows (a seeded sample).

    Returns ``(rows [m], coordinates [m, 2])`` with coordinates scaled into ``[0, 1]``.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    rows = np.arange(vectors.shape[0])
    if rows.size > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    x = vectors[rows] - vectors[rows].mean(axis=0)
    if x.shape[0] < 2:
        return rows, np.full((rows.size, 2), 0.5)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T if vt.shape[0] >= 2 else np.hstack([x @ vt[:1].T, np.zeros((rows.size, 1))])
    low, high = coords.min(axis=0), coords.max(axis=0)
    return rows, (coords - low) / np.where(high > low, high - low, 1.0)


def render_report(data: ReportData) -> str:
    """The page as a string."""
    sections = [
        _section("summary", "Summary", _summary(data.summary)),
        _section("evaluation", "Evaluation", _evaluation(data.evaluations, data.reference)),
        _section("topics", "Topic tree", _topic_tree(data.topics)),
        _section("map", "Map of items", _item_map(data)),
        _section("segments", "User segments", _segments(data.segments)),
        _section("users", "Example users", "".join(_user(u) for u in data.users) or "<p>No example users.</p>"),
    ]
    return _PAGE.substitute(title=esc(data.title), body="\n".join(sections))


def write_report(data: ReportData, path: str | Path) -> Path:
    """Render and write the page atomically (temporary name, then rename)."""
    path = Path(path)
    page = render_report(data)
    write_atomically(path.parent, {path.name: lambda tmp: tmp.write_text(page, encoding="utf-8")})
    return path


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(heading)}</h2>{body}</section>'


def _summary(summary: dict) -> str:
    cells = "".join(f"<div class='stat'><span class='value'>{esc(_fmt(v))}</span>"
                    f"<span class='name'>{esc(k)}</span></div>" for k, v in summary.items())
    return f"<div class='stats'>{cells}</div>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def _evaluation(evaluations: dict, reference: str | None) -> str:
    if not evaluations:
        return "<p>No evaluation was run.</p>"
    parts = []
    for protocol, table in evaluations.items():
        metrics = [m for m in METRICS if m in table.columns]
        head = "".join(f"<th>{esc(m)}</th>" for m in ["model", *metrics, "Coverage@10"])
        if "HR@10_vs_ref" in table.columns:
            head += f"<th>HR@10 vs {esc(reference)}</th><th>NDCG@10 vs {esc(reference)}</th>"
        best = {m: table[m].max() for m in metrics}
        rows = []
        for _, row in table.iterrows():
            cells = [f"<th scope='row'>{esc(row['model'])}</th>"]
            for m in metrics:
                mark = " class='best'" if math.isclose(row[m], best[m]) else ""
                cells.append(f"<td{mark}>{row[m]:.4f}<small> [{row[m + '_low']:.4f}, {row[m + '_high']:.4f}]</small></td>")
            cells.append(f"<td>{row.get('Coverage@10', float('nan')):.4f}</td>")
            if "HR@10_vs_ref" in table.columns:
                for m in ("HR@10", "NDCG@10"):
                    if math.isnan(row[m + "_vs_ref"]):
                        cells.append("<td>n/a</td>")
                        continue
                    cells.append(f"<td>{row[m + '_vs_ref']:.2f}×<small> [{row[m + '_vs_ref_low']:.2f}, "
                                 f"{row[m + '_vs_ref_high']:.2f}]</small></td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        users = int(table["users"].iloc[0]) if "users" in table.columns else 0
        parts.append(f"<h3>{esc(protocol)} ({users:,} users, full ranking, seen items removed, "
                     f"bootstrap 95% intervals)</h3><div class='scroll'><table><thead><tr>{head}</tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table></div>")
    return "".join(parts)


def _topic_tree(topics: dict) -> str:
    def node(entry: dict) -> str:
        medoids = ", ".join(esc(m["title"]) for m in entry.get("medoids", [])[:3])
        label = (f"<span class='label'>{esc(entry['label'])}</span> <span class='size'>{entry['size']:,} items</span>"
                 f"<div class='medoids'>{medoids}</div>")
        children = entry.get("children") or []
        if not children:
            return f"<li>{label}</li>"
        inner = "".join(node(c) for c in children)
        return f"<li><details><summary>{label}</summary><ul>{inner}</ul></details></li>"

    entries = topics.get("topics", [])
    return f"<ul class='tree'>{''.join(node(e) for e in entries)}</ul>" if entries else "<p>No topics.</p>"


def _item_map(data: ReportData) -> str:
    width, height, pad = 900, 560, 12
    circles = []
    for (x, y), topic, title in zip(data.points, data.point_topics, data.point_titles):
        colour = PALETTE[int(topic) % len(PALETTE)]
        circles.append(f"<circle cx='{pad + x * (width - 2 * pad):.1f}' cy='{pad + (1 - y) * (height - 2 * pad):.1f}' "
                       f"r='3' fill='{colour}'><title>{esc(title)}</title></circle>")
    legend = "".join(f"<li><span class='swatch' style='background:{PALETTE[i % len(PALETTE)]}'></span>{esc(name)}</li>"
                     for i, name in enumerate(data.topic_names))
    return (f"<p>{len(circles):,} items, first two principal components of the item vectors, coloured by coarse "
            f"topic (hover a dot for its title).</p><svg viewBox='0 0 {width} {height}' role='img' "
            f"aria-label='item map'>{''.join(circles)}</svg><ul class='legend'>{legend}</ul>")


def _segments(segments: pd.DataFrame) -> str:
    if segments is None or segments.empty:
        return "<p>No segments.</p>"
    largest = max(int(segments["size"].max()), 1)
    described = "top_attributes" in segments  # segments described by user attributes too
    rows = "".join(
        f"<tr><th scope='row'>{int(row['segment'])}</th><td>{int(row['size']):,} ({row['share']:.0%})</td>"
        f"<td><div class='bar' style='width:{100 * int(row['size']) / largest:.1f}%'></div></td>"
        f"<td>{_lifts(row.get('top_topics'), 'label')}</td><td>{_lifts(row.get('top_categories'), 'category')}</td>"
        + (f"<td>{_attribute_lifts(row['top_attributes'])}</td>" if described else "") + "</tr>"
        for _, row in segments.iterrows()
    )
    return ("<p>Each segment's topics and categories most over-represented against all users: share of the "
            "segment's interest, and lift (segment share over population share)"
            + ("; attributes: share of the segment's users in the group (groups of 10 users or more)" if described else "")
            + ".</p><table><thead><tr><th>segment</th><th>users</th><th class='barcol'></th><th>over-represented topics</th>"
            "<th>over-represented categories</th>" + ("<th>over-represented attributes</th>" if described else "")
            + f"</tr></thead><tbody>{rows}</tbody></table>")


def _attribute_lifts(entries) -> str:
    """A segment's ``top_attributes`` (``occupation student``, share of its users, lift)."""
    from tastemap.runtime.recommend.attributes import AttributeGroup

    return _lifts([{"label": AttributeGroup(e["attribute"], e["value"]).describe(), "weight": e["share"],
                    "lift": e["lift"]} for e in (entries if entries is not None else [])], "label")


def _lifts(entries, key: str) -> str:
    if entries is None or len(entries) == 0:
        return ""
    items = []
    for entry in entries:
        lift = entry.get("lift")
        detail = f"{entry['weight']:.0%}" + (f", ×{lift:.1f}" if lift is not None else "")
        items.append(f"<span class='label'>{esc(entry[key])}</span> <span class='size'>{esc(detail)}</span>")
    return "<br>".join(items)


def _user(user: ExampleUser) -> str:
    interests = "".join(
        f"<li><span class='label'>{esc(i['topic'])}</span> <span class='size'>share {i['share']:.0%}, "
        f"{int(i['size'])} items</span><div class='medoids'>medoid: {esc(i['medoid'])}"
        + (f"; also {esc(', '.join(i['members']))}" if i.get("members") else "") + "</div></li>"
        for i in user.interests
    ) or "<li>no interests</li>"
    recs = "".join(
        f"<li><span class='title'>{esc(r.title)}</span> <span class='layer'>{esc(r.explanation.layer)}</span>"
        f"<div class='why'>{esc(r.explanation.describe())}</div></li>"
        for r in user.recommendations
    )
    return (f"<article class='user'><h3>User {esc(user.user_id)} <small>{user.n_events:,} events</small></h3>"
            f"<div class='cols'><div><h4>Interests</h4><ol>{interests}</ol></div>"
            f"<div><h4>Recommendations</h4><ol>{recs}</ol></div></div></article>")


_PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
nav a{color:#cfd6e4;margin-right:14px;text-decoration:none;font-size:14px}
main{max-width:1200px;margin:0 auto;padding:8px 24px 48px}
section{background:#fff;border-radius:8px;padding:6px 22px 18px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:19px;border-bottom:1px solid #e3e6eb;padding-bottom:6px}h3{font-size:16px}
.stats{display:flex;flex-wrap:wrap;gap:12px}.stat{background:#f0f3f8;border-radius:6px;padding:10px 14px;min-width:120px}
.stat .value{display:block;font-size:20px;font-weight:600}.stat .name{font-size:12px;color:#5b6477}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:5px 8px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
td small{color:#7a8294;display:block}td.best{font-weight:700;background:#eef8ee}.scroll{overflow-x:auto}
.tree,.tree ul{list-style:none;padding-left:18px}.tree li{margin:4px 0}summary{cursor:pointer}
.label{font-weight:600}.size{color:#7a8294;font-size:12px}.medoids{color:#5b6477;font-size:12px}
svg{width:100%;height:auto;background:#fbfcfd;border:1px solid #eceff3;border-radius:6px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;list-style:none;padding:0;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px}
.bar{background:#4e79a7;height:12px;border-radius:3px}.barcol{width:30%}
.user{border-top:1px solid #eceff3;padding-top:4px}.cols{display:grid;grid-template-columns:1fr 1.4fr;gap:24px}
.layer{font-size:11px;background:#eef1f7;border-radius:3px;padding:1px 5px;color:#3b4a66}.why{font-size:12px;color:#5b6477}
</style></head>
<body><header><h1>$title</h1><nav><a href="#summary">Summary</a><a href="#evaluation">Evaluation</a>
<a href="#topics">Topics</a><a href="#map">Map</a><a href="#segments">Segments</a><a href="#users">Users</a></nav></header>
<main>
$body
</main></body></html>
""")


def report_from_recommender(
    recommender,
    *,
    title: str,
    summary: dict,
    example_users: Sequence = (),
    evaluations: dict | None = None,
    reference: str | None = None,
    k: int = 10,
    max_points: int = 2500,
    seed: int = 0,
) -> ReportData:
    """Collect the page's content from a fitted
    :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender` (topics, map, segments, the
    ``example_users``' interests and top ``k`` recommendations) and evaluation tables."""
    from tastemap.runtime.interests.base import check_fitted

    from tastemap.runtime.recommend.explain import interest_name

    check_fitted(recommender, "state_", "fit(train, catalog, item_vectors)")
    profiler = recommender.profiler_
    tree = profiler.topic_tree_
    rows, points = project_2d(profiler.item_vectors_, max_points=max_points, seed=seed)
    titles = recommender.titles_
    users = []
    for user_id in example_users:
        position = int(recommender.user_index_.get_indexer([user_id])[0])
        interests = recommender.state_.interests.of_user(position)
        users.append(ExampleUser(
            user_id=user_id,
            n_events=int(profiler.profiles_.n_events[position]),
            interests=[{"rank": r, "topic": interest_name(i.members, profiler), "share": i.share,
                        "size": i.size, "medoid": titles[i.medoid], "members": [titles[m] for m in i.members[1:3]]}
                       for r, i in enumerate(interests)],
            recommendations=recommender.recommend(user_id, k=k),
        ))
    segmenter = recommender.segmenter_
    return ReportData(
        title=title,
        summary=summary,
        topics=tree.to_dict(profiler.item_ids_, titles),
        points=points,
        point_topics=tree.levels[0].labels[rows],
        point_titles=[titles[r] for r in rows],
        topic_names=tree.levels[0].names,
        segments=segmenter.segments_ if segmenter is not None else pd.DataFrame(),
        users=users,
        evaluations=evaluations or {},
        reference=reference,
    )
