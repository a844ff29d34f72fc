"""``hermes report`` in a real browser, on the report data of a small real run (shared
synthetic corpus: fit → annotate → stats → sample): no console errors, every figure
drawn with a non-zero size, the numbers shown equal the JSON reports'; writes the
screenshot docs/img/report.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.helpers import run_cli as run

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "report.png"


@pytest.fixture(scope="module")
def page(spark, tmp_path_factory):
    from tests.helpers import build_codes

    root = tmp_path_factory.mktemp("browser_report")
    data = build_codes(spark, root)
    return data, root


def test_report_renders_with_the_reports_numbers(browser, page, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    data, root = page
    manifest = str(root / "m")
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", manifest,
        "--budget-tokens", "200000", "--weights", "uniform", "--stage2", "random",
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "report.html"
    code, _, err = run(
        capsys, "report", "--stats", data["stats"], "--manifest", manifest,
        "--codebook", data["cb"], "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    browser.get(out.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    figs = browser.find_elements(By.CSS_SELECTOR, "section.figure svg")
    assert len(figs) == 6  # no evaluation given
    for svg in figs:
        assert svg.size["width"] > 0 and svg.size["height"] > 0
        assert svg.find_elements(By.CSS_SELECTOR, "rect, polyline, circle")
    fit = json.loads((Path(data["cb"]) / "fit_report.json").read_text())
    cells = browser.find_elements(By.CSS_SELECTOR, 'td[data-key="relative_mse"]')
    assert [c.text for c in cells] == [f"{s['relative_mse']:.4g}" for s in fit["stages"]]
    levels = DeltaTable(f"{data['stats']}_levels").to_pandas().sort_values("level")
    cells = browser.find_elements(By.CSS_SELECTOR, 'td[data-key="imbalance"]')
    assert [c.text for c in cells] == [f"{v:.4g}" for v in levels["imbalance"]]
    mixture = json.loads((root / "m_report.json").read_text())
    shown = browser.find_element(By.CSS_SELECTOR, '[data-key="contraction"]').text
    assert shown == f"{mixture['pool_contraction']['contraction']:.3f}"
    shown = browser.find_element(By.CSS_SELECTOR, '[data-key="within_bound"]').text
    assert shown == str(mixture["within_bound"])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
