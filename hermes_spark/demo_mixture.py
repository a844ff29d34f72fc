"""The end of the demo: from the statistics to an exported mixture, its report and the
bucket explorer, each step printed as the ``hermes`` command that does the same.

Driver orchestration of library calls (each runs its own Spark jobs); the corpus is
read only by export and explore.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

from hermes_spark.config import CorpusConfig, SampleConfig
from hermes_spark.export import export_training_data
from hermes_spark.sampling.planner import compute_plan
from hermes_spark.sampling.select import run_sample
from hermes_spark.tasks.explore import cards_table_name, explore
from hermes_spark.tasks.report import report_from_tables

log = logging.getLogger(__name__)

#: the demo's mixture: UniMax weights at three tenths of the version's tokens
BUDGET_SHARE = 0.3
WEIGHTS, STAGE2 = "unimax", "coverage"


@dataclass
class MixtureRun:
    """What :func:`design_mixture` wrote, and the commands that would do the same."""

    commands: list[str] = field(default_factory=list)
    plan: str = ""
    manifest: str = ""
    export: str = ""
    report: str = ""
    explorer: str = ""
    realized_tokens: float = 0.0


def _command(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in ("hermes", *args))


def design_mixture(
    spark: SparkSession,
    corpus: CorpusConfig,
    *,
    table: str,
    stats: str,
    codebook: str,
    version: str,
    out_dir: str,
) -> MixtureRun:
    """plan (UniMax at 30% of the tokens, coverage inside buckets) → sample → export →
    explore → report under ``out_dir``; the result lists the equivalent commands."""
    out = Path(out_dir).resolve()
    run = MixtureRun(
        plan=str(out / "plan.json"),
        manifest=str(out / "manifest"),
        export=str(out / "train"),
        report=str(out / "report.html"),
        explorer=str(out / "explore"),
    )
    mix = ["--weights", WEIGHTS, "--stage2", STAGE2]
    settings = SampleConfig(budget_share=BUDGET_SHARE, weights=WEIGHTS, stage2=STAGE2)
    plan = compute_plan(spark, settings, table=table, stats=stats, version=version)
    plan.save(run.plan)
    share = ["--budget-share", str(BUDGET_SHARE)]
    run.commands.append(_command("plan", "--stats", stats, *share, *mix, "--out", run.plan))
    result = run_sample(spark, table, run.manifest, plan)
    run.realized_tokens = float(result.report.get("totals", {}).get("realized_tokens", 0.0))
    run.commands.append(
        _command("sample", "--table", table, "--plan", run.plan, "--out", run.manifest)
    )
    export_training_data(spark, run.manifest, corpus, run.export, per_bucket=True, overwrite=True)
    run.commands.append(
        _command("export", "--manifest", run.manifest, "--input", str(corpus.input),
                 "--out", run.export, "--per-bucket", "--overwrite")
    )  # fmt: skip
    explore(spark, corpus, table, run.explorer, version=version)
    run.commands.append(
        _command("explore", "--table", table, "--input", str(corpus.input), "--out", run.explorer)
    )
    explorer_page = str(Path(run.explorer) / "index.html")
    report_from_tables(
        spark,
        stats,
        run.report,
        mixture=result.report_path,
        codebook=codebook,
        codebook_version=version,
        cards=cards_table_name(table),
        explorer=explorer_page,
    )
    run.commands.append(
        _command("report", "--stats", stats, "--manifest", run.manifest, "--codebook", codebook,
                 "--cards", cards_table_name(table), "--explorer", explorer_page,
                 "--out", run.report)
    )  # fmt: skip
    return run
