"""The report page (hermes_spark.report): size at 131,072 leaf cells, self-containment,
numbers equal to the JSON reports, omitted figures. No Spark."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hermes_spark.errors import InvalidInputError
from hermes_spark.report import build_page
from hermes_spark.tasks.report import build_report


def synthetic_stats(sizes: tuple[int, ...] = (64, 64, 32), seed: int = 0) -> pd.DataFrame:
    """A STATS-shaped frame with every cell of ``sizes`` non-empty (Zipf-ish docs)."""
    rng = np.random.default_rng(seed)
    frames, cells = [], 1
    for level, k in enumerate(sizes, start=1):
        cells *= k
        docs = rng.zipf(1.6, cells).astype(np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "codebook_version": "v1",
                    "level": level,
                    "bucket": np.arange(cells),
                    "docs": docs,
                    "tokens": docs * 300,
                    "share_docs": docs / docs.sum(),
                    "share_tokens": docs / docs.sum(),
                    "quality_p50": rng.random(cells),
                    "quality_p70": rng.random(cells),
                    "children": sizes[level] if level < len(sizes) else np.nan,
                    "child_entropy_bits": rng.random(cells) * 5 if level < len(sizes) else np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Collect()
    p.feed(html)
    return p.tags


def test_page_stays_small_at_131072_leaf_cells():
    stats = synthetic_stats()
    assert (stats["level"] == 3).sum() == 64 * 64 * 32
    html = build_page(stats).html()
    assert len(html.encode()) < 300_000
    assert len(_tags(html)) < 3_000  # never one node per leaf cell


def test_page_is_self_contained():
    html = build_page(synthetic_stats((4, 3, 2))).html()
    tags = _tags(html)
    assert not [t for t, a in tags if t in ("script", "link", "img", "iframe")]
    assert not re.search(r"(src|href)\s*=", html)
    assert sum(t == "svg" for t, _ in tags) == 3  # rank-size, children, quality


def _mixture() -> dict:
    stage1 = [
        {
            "bucket": b,
            "target_share": t,
            "realized_share": r,
            "within_bound": ok,
        }
        for b, t, r, ok in ((0, 0.5, 0.48, True), (1, 0.3, 0.33, True), (2, 0.2, 0.19, False))
    ]
    return {
        "stage1": stage1,
        "within_bound": False,
        "pool_contraction": {
            "level": 2,
            "coarser_level": 1,
            "contraction": 3.25,
            "doc_weighted_contraction": 2.5,
        },
        "repetition_histogram": [
            {"repeats": 1, "docs": 90, "tokens": 900},
            {"repeats": 2, "docs": 10, "tokens": 200},
        ],
    }


def _fit() -> dict:
    return {
        "stages": [
            {"level": 1, "size": 4, "relative_mse": 0.61, "perplexity": 3.7, "dead_codes": 0},
            {"level": 2, "size": 3, "relative_mse": 0.42, "perplexity": 2.9, "dead_codes": 1},
        ]
    }


def _evaluation() -> dict:
    return {
        "methods": [
            {
                "method": m,
                "level": lv,
                "k": 4 * lv,
                "relative_mse": mse,
                "perplexity": 3.0,
                "silhouette_cosine": 0.1,
            }
            for m, lv, mse in (("hermes", 1, 0.6), ("kmeans", 1, 0.58), ("hermes", 2, 0.4))
        ]
    }


def test_numbers_on_the_page_equal_the_reports():
    fit, ev = _fit(), _evaluation()
    page = build_page(synthetic_stats((4, 3)), mixture=_mixture(), evaluation=ev, fit=fit)
    html = page.html()
    cells = [a for t, a in _tags(html) if t == "td" and a.get("data-key") == "relative_mse"]
    shown = [float(a["data-value"]) for a in cells]
    expected = [s["relative_mse"] for s in fit["stages"]] + [
        m["relative_mse"] for m in ev["methods"]
    ]
    assert shown == expected
    assert re.search(r'data-key="contraction">3\.250<', html)
    assert re.search(r'data-key="within_bound">False<', html)
    assert "1 of 3 buckets outside" in html
    assert sum(t == "svg" for t, _ in _tags(html)) == 7
    assert page._repr_html_() in html


def test_missing_inputs_are_omitted_with_a_note():
    page = build_page(synthetic_stats((4, 3)))
    notes = " ".join(page.omitted)
    for name in ("target_vs_realized", "contraction", "codebook_health", "evaluation"):
        assert f"{name}: omitted" in notes
    assert "centroid_map: omitted" in notes


def test_build_report_reads_json_paths_and_saves(tmp_path):
    art = tmp_path / "cb"
    art.mkdir()
    (art / "fit_report.json").write_text(json.dumps(_fit()))
    page = build_report(synthetic_stats((4, 3)), fit=str(art))
    out = page.save(str(tmp_path / "r.html"))
    assert "Codebook health" in (tmp_path / "r.html").read_text()
    assert out == str(tmp_path / "r.html")
    with pytest.raises(InvalidInputError, match="does not exist"):
        build_report(synthetic_stats((4, 3)), evaluation=str(tmp_path / "nowhere"))


def test_build_report_refuses_mixed_versions():
    a, b = synthetic_stats((4, 3)), synthetic_stats((4, 3))
    b["codebook_version"] = "v2"
    with pytest.raises(InvalidInputError, match="versions"):
        build_report(pd.concat([a, b]))
    assert "v2" in build_report(pd.concat([a, b]), codebook_version="v2").title


def test_notebook_views_of_the_plan_and_the_reports():
    from hermes_spark.report.tables import MAX_ROWS, EvaluationReport, MixtureReport
    from hermes_spark.sampling.plan import SamplePlan

    mix = MixtureReport(_mixture())
    html = mix._repr_html_()
    assert "<svg" in html and html.count("<tr") == 1 + len(_mixture()["stage1"])
    assert json.loads(json.dumps(mix)) == _mixture()  # still the JSON report
    ev = EvaluationReport(_evaluation())._repr_html_()
    assert _values_of(ev, "relative_mse") == [m["relative_mse"] for m in _evaluation()["methods"]]
    n = MAX_ROWS + 7
    stage1 = pd.DataFrame({"bucket": range(n), "weight": 1.0 / n, "target": 10.0})
    settings = {"weights_level": 1, "stage2_level": 2, "budget_tokens": 1e6, "seed": 3}
    plan = SamplePlan("v1", (n, 2), settings, stage1, pd.DataFrame())
    view = plan._repr_html_()
    assert "budget 1e+06 tokens" in view and "7 more Stage-1 buckets" in view
    assert view.count("<tr") == 1 + MAX_ROWS


def _values_of(html: str, key: str) -> list[float]:
    return [
        float(a["data-value"]) for t, a in _tags(html) if t == "td" and a.get("data-key") == key
    ]


def test_centroid_map_keeps_distances_and_the_page_small():
    from hermes_spark.report.figures import _pca2

    rng = np.random.default_rng(3)
    plane = rng.normal(size=(2, 32))  # 64 centroids on a 2-D plane of a 32-D space
    c1 = rng.normal(size=(64, 2)) @ plane
    xy = _pca2(c1, c1)
    d_in = np.linalg.norm(c1[:, None] - c1[None], axis=-1)
    d_out = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-8)  # a plane is mapped isometrically
    # level 2: one residual centroid per bucket (shared books are tiled by the reader)
    books = [c1, rng.normal(size=(64 * 64, 32)) * 0.1, rng.normal(size=(32, 32)) * 0.01]
    page = build_page(synthetic_stats(), centroids=books).html()
    assert len(page.encode()) < 400_000 and len(_tags(page)) < 3_600
    assert page.count("<circle") == 64 + 200  # every L1 centroid, the largest 200 L2 cells


def test_explorer_pages_its_children_out_at_4096_cards(tmp_path):
    from hermes_spark.report.explorer import Cards

    rows = []
    for level, n in ((1, 64), (2, 64 * 64)):
        for b in range(n):
            rows.append({
                "level": level, "bucket": b, "parent": None if level == 1 else b // 64,
                "code": str(b) if level == 1 else f"{b // 64}.{b % 64}", "docs": 10 + b,
                "tokens": 100 + b, "share_tokens": 0.0, "quality_p50": None,
                "top_terms": ["alpha", "beta"], "mix": [],
                "nearest": [{"doc_id": f"d{b}", "qerr": 0.1, "snippet": "x" * 200}] * 5,
                "random": [{"doc_id": f"d{b}", "qerr": 0.1, "snippet": "y" * 200}] * 5,
            })  # fmt: skip
    index = Cards(pd.DataFrame(rows), "cb-x").save(str(tmp_path / "explore"))
    html = Path(index).read_text()
    assert len(html.encode()) < 400_000  # the level-1 cards only; children in parts/
    parts = sorted((tmp_path / "explore" / "parts").iterdir())
    assert len(parts) == 64 and parts[0].read_text().startswith('hermesPart("0",')
    assert '"63.63"' in (tmp_path / "explore" / "parts" / "63.js").read_text()
