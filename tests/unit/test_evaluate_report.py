"""The evaluate report (goals, Markdown, terminal table) built from a real scoring run."""

from __future__ import annotations

import numpy as np
import pytest

from hermes_spark.evaluate.report import goals, summary_lines, to_markdown
from hermes_spark.quantize.codebook import fit_codebook
from hermes_spark.quantize.scoring import score_codebook
from tests.helpers import labelled_vectors


@pytest.fixture(scope="module")
def report() -> dict:
    x, labels = labelled_vectors(1200, 12, clusters=4, seed=7)
    model = {"name": "t", "dim": 12, "max_seq_length": 32}
    book = fit_codebook(x[:600], (4, 4), seed=0, lst_dim=None, model=model, n_iter=8)
    scored = score_codebook(book, x[:600], x[600:], {"topic": labels[600:]}, baselines=("kmeans",))
    return {
        "codebook_version": book.version,
        "table": "codes",
        "levels": [4, 4],
        "label_cols": ["topic"],
        "sampling": {
            "disjoint_from_fit": True,
            "fit_seed": 0,
            "fit_sample_size": 600,
            "fit_threshold_u": 0.5,
            "fit_threshold_source": "artifact",
            "eval_hash": "xxhash64",
        },
        "vectors": "test",
        "eval_rows": scored["eval_rows"],
        "baseline_fit_rows": scored["baseline_fit_rows"],
        "methods": scored["methods"],
        "goals": goals(scored["methods"], ["topic"]),
    }


def test_goals_are_ratios_of_the_rows(report: dict) -> None:
    rows = {(r["method"], r["level"]): r for r in report["methods"]}
    g = report["goals"]
    assert g["space"] == "model"
    for level, key in ((1, "l1_mse_ratio"), (2, "l12_mse_ratio")):
        ours, km = rows[("hermes", level)], rows[("kmeans", level)]
        assert g[key] == pytest.approx(ours["cell_mse_model"] / km["cell_mse_model"])
        lst = ours["spaces"]["lst"]["cell_mse"] / km["spaces"]["lst"]["cell_mse"]
        assert g[key + "_lst"] == pytest.approx(lst)
    assert g["l1_mse_within_1pct"] == (g["l1_mse_ratio"] <= 1.01)
    assert g["l12_kmeans_k"] == 16
    nmi = g["l1_nmi"]["topic"]
    assert nmi["hermes"] == rows[("hermes", 1)]["labels"]["topic"]["nmi"]
    assert nmi["at_least_kmeans"] == (nmi["hermes"] >= nmi["kmeans"])
    assert g["leaf_collision_rate"] == rows[("hermes", 2)]["collision_rate"]
    assert set(g["dead_codes"]) == {1, 2}


def test_markdown_and_summary_show_every_method_and_the_disjointness(report: dict) -> None:
    md = to_markdown(report)
    assert "disjoint from the fit sample: **yes**" in md
    assert md.count("## Level") == 2 and "Labels `topic`" in md and "## Goals" in md
    for r in report["methods"]:
        assert f"| {r['method']} | {r['k']} | {r['relative_mse']:.4f} |" in md
        for space in ("model", "lst"):
            cell = r["spaces"][space]["cell_mse"]
            assert f"| {r['method']} | {space} | {cell:.4f} |" in md
    assert "goals are judged in the **model** space" in md
    lines = summary_lines(report)
    assert "disjoint from the fit sample" in lines[0]
    assert len([ln for ln in lines if ln.strip().startswith("L")]) >= len(report["methods"])
    overlapping = {**report, "sampling": {**report["sampling"], "disjoint_from_fit": False}}
    assert "**NO**" in to_markdown(overlapping)
    assert "OVERLAPPING" in summary_lines(overlapping)[0]
    assert np.isfinite(report["goals"]["l12_mse_ratio"])
