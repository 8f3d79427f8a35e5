import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from browser import dump_dom, needs_chromium, png_stats, screenshot
from tastemap.cli import app

OUTPUTS = ("profiles.parquet", "profiles.jsonl", "topics.json", "segments.parquet", "user_segments.parquet",
           "recommendations.parquet", "evaluation.csv", "summary.json", "report.html")


@pytest.fixture(scope="module")
def demo_dir(tiny_package, tmp_path_factory):
    """``tastemap demo`` end to end on 25 MovieLens users with the tiny model package."""
    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(out.parent / "cache"))
        patch.delenv("TASTEMAP_HOME", raising=False)  # the cache folder then follows XDG_CACHE_HOME
        result = CliRunner().invoke(app, ["demo", "--out", str(out), "--sample", "25", "--model", str(tiny_package)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert (out.parent / "cache" / "tastemap" / "embeddings").is_dir()
    return out


def test_demo_writes_every_output(demo_dir):
    for name in OUTPUTS:
        assert (demo_dir / name).is_file(), name
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["users"] == 25
    assert summary["segments"] >= 2
    recs = pd.read_parquet(demo_dir / "recommendations.parquet")
    assert recs["user_id"].nunique() == 25 and recs.groupby("user_id").size().eq(10).all()
    assert recs["explanation"].str.match(r"because you (like .+, as in |liked )").all()
    assert not recs["explanation"].str.contains("a mix of").any()
    evaluation = pd.read_csv(demo_dir / "evaluation.csv")
    assert evaluation["model"].tolist() == ["MostPop", "ItemKNN", "EASE (l2=500)", "Content single-vector",
                                            "Content multi-interest", "Content literal (history text)", "tastemap"]
    assert evaluation["users"].eq(25).all()
    assert {"HR@10_low", "HR@10_high", "NDCG@20", "Recall@50", "ILD@10", "Coverage@10"} <= set(evaluation.columns)


@pytest.mark.browser
@needs_chromium
def test_demo_report_renders_in_browser(demo_dir, tmp_path):
    dom = dump_dom(demo_dir / "report.html", tmp_path / "profile")
    for section in ("summary", "evaluation", "topics", "map", "segments", "users"):
        assert f'id="{section}"' in dom
    assert 'new user: "space adventure' in dom.replace("&quot;", '"')
    width, height, distinct = png_stats(screenshot(demo_dir / "report.html", tmp_path / "profile2", tmp_path / "s.png"))
    assert width == 1280 and distinct > 50
