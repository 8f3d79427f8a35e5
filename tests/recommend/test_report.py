import re

import numpy as np
import pandas as pd
import pytest

from browser import dump_dom, needs_chromium, png_stats, screenshot
from planted import make_planted, make_recommender
from tastemap.runtime.io.events import align_events
from tastemap.runtime.recommend.report import project_2d, render_report, report_from_recommender, write_report

EVIL = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
SECTIONS = ("summary", "evaluation", "topics", "map", "segments", "users")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A report whose data carries a malicious title, user id and segment-worthy tags."""
    events, catalog, vectors, _ = make_planted(16)
    catalog.loc[0, "title"] = EVIL
    catalog.loc[1, "tags"] = [EVIL]
    events.loc[events.item_id == catalog.loc[0, "item_id"], "user_id"] = 0  # user 0 surely has the evil item
    data, _ = align_events(events, catalog)
    recommender = make_recommender().fit(data, catalog, vectors)
    table = pd.DataFrame([{"model": EVIL, "users": 16, **{f"{m}{s}": 0.5 for m in ("HR@10", "NDCG@10")
                                                           for s in ("", "_low", "_high")}, "Coverage@10": 0.1}])
    report = report_from_recommender(recommender, title=f"demo {EVIL}", summary={"users": 16, EVIL: EVIL},
                                     example_users=[0, 1], evaluations={EVIL: table})
    report.users[0].user_id = EVIL
    path = write_report(report, tmp_path_factory.mktemp("report") / "report.html")
    return path, report


def test_every_user_string_is_escaped(page):
    path, _ = page
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "<img" not in text.lower()
    assert "onerror=&quot;" in text or "onerror=" not in text.replace("onerror=&quot;", "")
    escaped = "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;"
    assert text.count(escaped) >= 4  # title (page and header), evaluation, summary, example user
    assert not re.search(r"https?://", text), "the page must not load network assets"


def test_sections_and_content(page):
    path, report = page
    text = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert text.count("<circle") == len(report.points) == 120
    assert text.count("because you like") >= 10  # "because you like <ground>" or "because you liked <seeds>"
    assert "over-represented topics" in text and "×" in text  # segments by lift
    first = report.users[1].interests[0]
    assert first["topic"] in text and first["topic"] != ""  # interests by what their members share


def test_project_2d_is_scaled_and_sampled():
    vectors = np.random.default_rng(0).normal(size=(50, 8))
    rows, coords = project_2d(vectors, max_points=20, seed=1)
    assert rows.shape == (20,) and coords.shape == (20, 2)
    assert coords.min() == 0.0 and coords.max() == 1.0
    np.testing.assert_array_equal(project_2d(vectors, max_points=20, seed=1)[0], rows)


@pytest.mark.browser
@needs_chromium
def test_planted_markup_shows_as_text_and_runs_nothing(page, tmp_path):
    path, _ = page
    dom = dump_dom(path, tmp_path / "profile")
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    # a script that ran would have replaced the title with "pwned"
    title = dom.split("<title>")[1].split("</title>")[0]
    assert title == "demo " + EVIL.replace("<", "&lt;").replace(">", "&gt;")
    assert '&lt;script&gt;document.title="pwned"&lt;/script&gt;' in dom  # shown as text
    for section in SECTIONS:
        assert f'id="{section}"' in dom


@pytest.mark.browser
@needs_chromium
def test_report_screenshot(page, tmp_path):
    path, _ = page
    shot = screenshot(path, tmp_path / "profile", tmp_path / "report.png")
    width, height, distinct = png_stats(shot)
    assert (width, height) == (1280, 2400)
    assert distinct > 50, "the screenshot looks blank"


def test_render_without_evaluation_or_users():
    events, catalog, vectors, _ = make_planted(8)
    data, _ = align_events(events, catalog)
    report = report_from_recommender(make_recommender().fit(data, catalog, vectors), title="t", summary={})
    html = render_report(report)
    assert "No evaluation was run." in html and "No example users." in html
