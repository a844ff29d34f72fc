"""Each notebook in notebooks/ runs end to end locally, off Databricks, on small data.

A notebook is executed as Databricks would run its cells (top to bottom, one namespace)
but without ``dbutils`` or ``display``: the widgets fall back to ``HERMES_<NAME>``
environment variables set here, and the session is the test's local one. Results are
checked against the CLI (same codes) and against the corpus (every document, and only
the new ones of a new snapshot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import hermes_spark
from tests.helpers import clustered_vectors, run_cli, write_embedded_corpus

pytestmark = [pytest.mark.spark]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
N_DOCS = 400


def run_notebook(name: str, widgets: dict[str, str]) -> dict:
    """Execute ``notebooks/NAME`` with widget values from the environment; its namespace."""
    path = NOTEBOOKS / name
    source = path.read_text()
    assert source.startswith("# Databricks notebook source\n")
    assert "# COMMAND ----------" in source
    namespace: dict = {"__name__": "__notebook__"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in widgets.items():
            mp.setenv(f"HERMES_{key.upper()}", value)
        exec(compile(source, str(path), "exec"), namespace)
    return namespace


def _codes(table: Path) -> pd.DataFrame:
    df = DeltaTable(str(table)).to_pandas()[["doc_id", "c1", "c2", "c3", "codebook_version"]]
    return df.sort_values("doc_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory) -> dict:
    """notebooks/01 run once: the corpus, codebook and codes table it wrote."""
    root = tmp_path_factory.mktemp("notebooks")
    corpus = write_embedded_corpus(root / "corpus", n=N_DOCS, dim=16, files=2)
    widgets = {
        "config": "default",
        "input_table": "",
        "input": str(corpus),
        "embedding_col": "emb",
        "tokens_col": "tokens",
        "levels": "4,3,2",
        "sample_size": "300",
        "codebook": str(root / "codebook"),
        "table": str(root / "codes"),
    }
    ns = run_notebook("01_fit_and_annotate.py", widgets)
    return {"root": root, "corpus": corpus, "widgets": widgets, "ns": ns}


def test_fit_and_annotate_notebook_writes_the_cli_codes(fitted, capsys):
    ns, root = fitted["ns"], fitted["root"]
    assert "dbutils" not in ns  # ran on the local widgets stand-in
    version = hermes_spark.HermesModel.load(str(root / "codebook")).version
    preview = ns["preview"].toPandas()
    assert len(preview) == 20 and preview["reason"].isna().all()
    assert set(preview["codebook_version"]) == {version}
    assert ns["report"].table_rows == N_DOCS
    codes = _codes(root / "codes")
    assert len(codes) == N_DOCS and set(codes["codebook_version"]) == {version}
    code, _, err = run_cli(
        capsys, "annotate", "--input", str(fitted["corpus"]), "--embedding-col", "emb",
        "--tokens-col", "tokens", "--codebook", str(root / "codebook"),
        "--table", str(root / "cli_codes"),
    )  # fmt: skip
    assert code == 0, err
    pd.testing.assert_frame_equal(codes, _codes(root / "cli_codes"))


def test_reannotate_notebook_embeds_only_the_new_snapshot(fitted):
    root, corpus = fitted["root"], fitted["corpus"]
    new = 57
    vectors = clustered_vectors(new, dim=16, seed=9)
    rng = np.random.default_rng(9)
    pq.write_table(
        pa.table(
            {
                "id": [f"new-{i:04d}" for i in range(new)],
                "text": [f"a new document {i}" for i in range(new)],
                "emb": pa.array(
                    [list(map(float, v)) for v in vectors], type=pa.list_(pa.float32())
                ),
                "tokens": pa.array(rng.integers(20, 400, size=new), type=pa.int64()),
                "quality": rng.random(new),
                "source": ["s9"] * new,
                "cluster": ["k9"] * new,
            }
        ),
        corpus / "part-900.parquet",
    )
    widgets = {
        k: fitted["widgets"][k]
        for k in ("config", "input", "embedding_col", "tokens_col", "codebook", "table")
    }
    ns = run_notebook("04_reannotate_snapshot.py", {**widgets, "mode": "incremental"})
    report = ns["report"]
    assert report.rows_written == new
    assert report.table_rows == N_DOCS + new
    codes = _codes(root / "codes")
    assert codes["doc_id"].is_unique and len(codes) == N_DOCS + new
    (version,) = ns["versions"]
    assert version.rows == N_DOCS + new


def _needs_public_api(*names: str) -> None:
    """The notebooks import these from the package root: a missing one is a regression."""
    missing = [n for n in names if not hasattr(hermes_spark, n)]
    assert not missing, f"hermes_spark does not export {', '.join(missing)}"


def test_explore_stats_notebook_counts_every_document(fitted):
    _needs_public_api("bucket_stats")
    root = fitted["root"]
    ns = run_notebook(
        "02_explore_stats.py",
        {
            "table": str(root / "codes"),
            "top": "3",
            "input": str(fitted["corpus"]),
            "explorer": str(root / "explorer"),
        },
    )
    levels = ns["levels_pdf"]
    assert list(levels["level"]) == [1, 2, 3]
    assert (levels["cells_nonempty"] <= levels["cells_total"]).all()
    assert len(ns["largest_pdf"]) <= 3
    docs = ns["stats"].where("level = 1").toPandas()["docs"].sum()
    assert docs == len(DeltaTable(str(fitted["root"] / "codes")).to_pandas())
    assert "Rank-size per level" in ns["page"]._repr_html_()  # the report, inline
    cards = ns["cards"]  # the explorer's cards, written beside the codes
    assert (root / "explorer" / "index.html").exists()
    assert cards.frame[cards.frame["level"] == 1]["docs"].sum() == docs


def test_design_mixture_notebook_meets_the_budget(fitted):
    _needs_public_api("bucket_stats", "plan_mixture", "sample", "materialize")
    out = fitted["root"] / "train"
    ns = run_notebook(
        "03_design_mixture.py",
        {
            "table": str(fitted["root"] / "codes"),
            "input": str(fitted["corpus"]),
            "budget_tokens": "20000",
            "weights": "uniform",
            "stage2": "coverage",
            "max_epochs": "2",
            "seed": "5",
            "manifest": str(fitted["root"] / "manifest"),
            "shards": "2",
            "out": str(out),
        },
    )
    manifest = ns["manifest"].toPandas()
    realized = (manifest["repeats"] * manifest["tokens"]).sum()
    assert abs(realized - 20000) <= 4 * 400
    assert ns["train_rows"] == manifest["repeats"].sum()
    # exported as hermes export does: per-bucket shard folders and the Megatron blend
    assert (out / "megatron_blend.txt").exists() and (out / "mixture.json").exists()
    assert any(p.name.startswith("bucket-") for p in out.iterdir())
    assert ns["result"].report["within_bound"] in (True, False)


def test_fit_notebook_reuses_an_existing_artifact(fitted):
    root = fitted["root"]
    before = hermes_spark.HermesModel.load(str(root / "codebook")).version
    ns = run_notebook("01_fit_and_annotate.py", fitted["widgets"])
    assert ns["fitted_now"] is False and ns["model"].version == before
    assert ns["report"].rows_written == 0  # every chunk already committed
    assert ns["report"].table_rows == len(_codes(root / "codes"))


def test_first_cell_installs_the_wheel_and_restarts_only_on_databricks(monkeypatch):
    """The install cell with a stand-in ``dbutils``: pip installs the wheel of the
    widget, then Python restarts; without ``dbutils`` nothing runs."""
    import subprocess

    calls: list = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd: calls.append(cmd))

    class Widgets:
        def text(self, name, default):
            self.value = default

        def get(self, name):
            return self.value

    class Library:
        def restartPython(self):
            calls.append("restart")

    class DBUtils:
        widgets, library = Widgets(), Library()

    for path in sorted(NOTEBOOKS.glob("0*.py")):
        cell = path.read_text().split("# COMMAND ----------")[1]
        assert "dbutils.library.restartPython()" in cell, path.name
        exec(compile(cell, str(path), "exec"), {"__name__": "__notebook__"})
        assert calls == []  # locally: a no-op
        exec(compile(cell, str(path), "exec"), {"__name__": "__notebook__", "dbutils": DBUtils()})
        assert calls[0][-1].startswith("/Volumes/") and calls[0][-1].endswith(".whl")
        assert calls[0][1:4] == ["-m", "pip", "install"] and calls[1] == "restart"
        calls.clear()


def test_notebooks_use_only_public_modules():
    for path in sorted(NOTEBOOKS.glob("0*.py")):
        source = path.read_text()
        assert "dataclasses.replace" not in source, path.name  # config via with_overrides
        for line in source.splitlines():
            if line.startswith(("from hermes_spark", "import hermes_spark")):
                module = line.split()[1]
                assert not any(p.startswith("_") for p in module.split(".")), line
