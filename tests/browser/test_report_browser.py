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
    assert len(figs) == 7  # no evaluation given; the centroid map from --codebook
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
    sections = browser.find_elements(By.CSS_SELECTOR, "section.figure")
    (section,) = [
        s for s in sections if s.find_element(By.TAG_NAME, "h2").text.startswith("Centroid")
    ]
    mapped = section.find_element(By.CSS_SELECTOR, "svg")
    assert mapped.size["width"] > 0 and mapped.size["height"] > 0
    dots = mapped.find_elements(By.CSS_SELECTOR, "circle")
    k1 = json.loads((Path(data["cb"]) / "fit_report.json").read_text())["stages"][0]["size"]
    assert len(dots) > k1  # every L1 centroid and some L2 ones
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))


def test_explorer_opens_searches_and_drills(browser, page, capsys):
    from selenium.webdriver.common.by import By

    data, root = page
    out = root / "explore"
    code, _, err = run(
        capsys, "explore", "--table", data["codes"], "--input", data["corpus"],
        "--out", str(out), "--examples", "3",
    )  # fmt: skip
    assert code == 0, err
    cards = DeltaTable(f"{data['codes']}_cards").to_pandas()
    level1 = cards[cards["level"] == 1]
    browser.get((out / "index.html").as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    shown = browser.find_elements(By.CSS_SELECTOR, "#list .card")
    assert len(shown) == min(len(level1), 50)
    biggest = level1.sort_values(["tokens", "bucket"], ascending=[False, True]).iloc[0]
    assert shown[0].get_attribute("data-code") == biggest["code"]
    box = browser.find_element(By.ID, "q")
    box.send_keys(biggest["code"] + ".")
    hits = [c.get_attribute("data-code") for c in browser.find_elements(By.CSS_SELECTOR, ".card")]
    kids = cards[(cards["level"] == 2) & (cards["parent"] == biggest["bucket"])]
    assert sorted(hits) == sorted([biggest["code"], *kids["code"]])
    box.clear()
    box.send_keys("nosuchtermzz")
    assert browser.find_elements(By.CSS_SELECTOR, ".card") == []
    box.clear()
    term = biggest["top_terms"][0]
    box.send_keys(term)
    hits = browser.find_elements(By.CSS_SELECTOR, ".card")
    with_term = cards[cards["top_terms"].apply(lambda t: any(term in w for w in t))]
    assert len(hits) == min(len(with_term), 50)
    box.clear()
    box.send_keys(" ")  # back to every level-1 card, then drill into the first one
    first = browser.find_elements(By.CSS_SELECTOR, "#list > .card")[0]
    first.find_element(By.TAG_NAME, "h3").click()
    opened = first.find_elements(By.CSS_SELECTOR, ".kids .card")
    parent = int(level1.set_index("code").loc[first.get_attribute("data-code"), "bucket"])
    assert len(opened) == int((cards["parent"] == parent).sum()) > 0
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
