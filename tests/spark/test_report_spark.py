"""``hermes report`` on a small real run (shared codes: fit → annotate → stats, then
sample): the page reads the STATS tables and the JSON reports the commands wrote, and
the numbers it prints are theirs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark


def _values(html: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf'data-key="{key}" data-value="([^"]+)"', html)]


def test_report_of_a_real_run_prints_the_reports_numbers(spark, shared_codes, tmp_path, capsys):
    data = shared_codes
    manifest = str(tmp_path / "m")
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", manifest,
        "--budget-tokens", "200000", "--weights", "uniform", "--stage2", "random",
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "report.html"
    code, stdout, err = run(
        capsys, "report", "--stats", data["stats"], "--manifest", manifest,
        "--codebook", data["cb"], "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert str(out) in stdout
    html = out.read_text()
    fit = json.loads((Path(data["cb"]) / "fit_report.json").read_text())
    assert _values(html, "relative_mse") == [s["relative_mse"] for s in fit["stages"]]
    levels = DeltaTable(f"{data['stats']}_levels").to_pandas().sort_values("level")
    assert _values(html, "imbalance") == levels["imbalance"].tolist()
    mixture = json.loads((tmp_path / "m_report.json").read_text())
    pc = mixture["pool_contraction"]["contraction"]
    assert f'data-key="contraction">{pc:.3f}<' in html
    assert f'data-key="within_bound">{mixture["within_bound"]}<' in html
    assert html.count("<svg") == 7  # no evaluation given; the centroid map from --codebook
    assert "evaluation: omitted" in html


def test_report_of_a_missing_stats_table_is_a_clean_error(spark, tmp_path, capsys):
    code, _, err = run(
        capsys, "report", "--stats", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")
    )
    assert_clean_error(code, err, "nope")


def test_stats_and_sample_write_the_page_and_report_json_keeps_its_old_meaning(
    spark, shared_codes, tmp_path, capsys
):
    data = shared_codes
    page = tmp_path / "stats.html"
    code, stdout, err = run(
        capsys, "stats", "--table", data["codes"], "--out", str(tmp_path / "st"),
        "--codebook", data["cb"], "--report", str(page),
    )  # fmt: skip
    assert code == 0, err
    assert str(page) in stdout
    html = page.read_text()
    levels = DeltaTable(str(tmp_path / "st_levels")).to_pandas().sort_values("level")
    assert _values(html, "imbalance") == levels["imbalance"].tolist()
    assert "Centroid map" in html and "target_vs_realized: omitted" in html
    sample = ["sample", "--table", data["codes"], "--budget-tokens", "200000",
              "--weights", "uniform", "--stage2", "random"]  # fmt: skip
    code, _, err = run(
        capsys, *sample, "--out", str(tmp_path / "m"), "--stats", str(tmp_path / "st"),
        "--report", str(tmp_path / "mix.html"),
    )  # fmt: skip
    assert code == 0, err
    mixture = json.loads((tmp_path / "m_report.json").read_text())
    html = (tmp_path / "mix.html").read_text()
    assert f'data-key="within_bound">{mixture["within_bound"]}<' in html
    assert _values(html, "imbalance") == levels["imbalance"].tolist()
    code, _, err = run(capsys, *sample, "--out", str(tmp_path / "m2"), "--report",
                       str(tmp_path / "old.json"))  # fmt: skip
    assert code == 0 and "deprecated" in err and "--mixture-report" in err
    assert json.loads((tmp_path / "old.json").read_text())["totals"] == mixture["totals"]
    assert not (tmp_path / "m2_report.json").exists()
