"""Does each job's cost follow its work, not the table? (``make bench-scale``)

Run: ``python bench/bench_scale.py [--scale 0.1] [--workdir DIR]``. Synthetic data made
here (vectors given with ``--embedding-col``: no model cost):

1. **incremental annotate** of the same 20k-doc new snapshot into codes tables that
   already hold 0.2M, 1M and 4M rows of the version (written directly in the codes schema
   with their ledger; their old corpus files are listed but, being in the ledger, never
   read). Prints the three times and t(4M)/t(0.2M) (goal <= 1.3).
2. **stats** and **sample** on 10M and 40M codes rows (levels 64·64·32, from
   ``spark.range``): time ratio (goal <= 4.4 for 4x rows) and, per job, the largest vs
   the median task input (bytes read + shuffle read; from Spark's status REST API).
3. **export** of a 1% sample of those tables: time ratio and bytes read.

Every job's bytes read and bytes shuffled (Spark's task metrics) are also printed over one
plain scan / one plain shuffle of its input in the same run: annotate (a first run over
the snapshot, then the incremental runs) against the snapshot; stats, plan and sample
against the codes table; export against the corpus.

``--scale`` (default 0.1, so a 2-core machine finishes in minutes; 1 = the sizes above)
multiplies every table size (not the 20k snapshot); the output says which sizes ran.
Table building is not timed; a small warm-up run goes first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig, SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.export import export_training_data
from hermes_spark.session import get_spark
from hermes_spark.tasks import ledger
from hermes_spark.tasks.annotate import CODES_CLUSTER_BY, annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from hermes_spark.tasks.stats import compute_stats

DIM = 32
SNAPSHOT = 20_000
DOCS_PER_OLD_FILE = 20_000
ANNOTATE_LEVELS = (16, 8, 4)
STATS_LEVELS = (64, 64, 32)
ANNOTATE_TABLES = (200_000, 1_000_000, 4_000_000)
STATS_TABLES = (10_000_000, 40_000_000)


# ------------------------------------------------------------------ task metrics


@dataclass
class Tasks:
    """Task inputs of the Spark jobs of one job group (bytes read + shuffle bytes read)."""

    jobs: int
    tasks: int
    bytes_read: int
    largest: int
    median: int
    stage: str  # the stage with the most input, where largest/median are measured
    shuffled: int = 0  # shuffle bytes written by the group's tasks

    @property
    def skew(self) -> float:
        return self.largest / self.median if self.median else float("nan")


@dataclass
class Plain:
    """One plain scan and one plain shuffle of a job's input, measured in the same run."""

    name: str
    scan: Tasks
    shuffle: Tasks

    def ratios(self, job: Tasks) -> tuple[float, float]:
        """The job's bytes read and shuffled over this input's plain scan and shuffle."""
        read = job.bytes_read / self.scan.bytes_read if self.scan.bytes_read else float("nan")
        moved = job.shuffled / self.shuffle.shuffled if self.shuffle.shuffled else float("nan")
        return read, moved


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def group_tasks(spark: SparkSession, group: str) -> Tasks:
    """Per-task inputs of ``group``'s jobs from the status REST API (driver)."""
    base = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    api = f"{base}/api/v1/applications/{app}"
    jobs = [j for j in _get(f"{api}/jobs") if j.get("jobGroup") == group]
    per_stage: dict[str, list[int]] = {}
    read = shuffled = 0
    for job in jobs:
        for stage_id in job["stageIds"]:
            for attempt in _get(f"{api}/stages/{stage_id}"):
                if attempt.get("status") != "COMPLETE":
                    continue
                key = f"{stage_id}.{attempt['attemptId']}"
                if key in per_stage:
                    continue
                url = f"{api}/stages/{stage_id}/{attempt['attemptId']}/taskList?length=100000"
                tasks = _get(url)
                inputs = []
                for task in tasks:
                    m = task.get("taskMetrics") or {}
                    got = int(m.get("inputMetrics", {}).get("bytesRead", 0))
                    shuffle = m.get("shuffleReadMetrics", {})
                    got += int(shuffle.get("localBytesRead", 0)) + int(
                        shuffle.get("remoteBytesRead", 0)
                    )
                    inputs.append(got)
                    read += int(m.get("inputMetrics", {}).get("bytesRead", 0))
                    shuffled += int(m.get("shuffleWriteMetrics", {}).get("bytesWritten", 0))
                per_stage[key] = inputs
    if not per_stage:
        return Tasks(len(jobs), 0, 0, 0, 0, "-")
    stage, inputs = max(per_stage.items(), key=lambda kv: sum(kv[1]))
    return Tasks(
        len(jobs),
        sum(len(v) for v in per_stage.values()),
        read,
        max(inputs),
        int(statistics.median(inputs)),
        f"{stage} ({len(inputs)} tasks)",
        shuffled,
    )


def timed(spark: SparkSession, group: str, fn: Any) -> tuple[float, Tasks, Any]:
    """Run ``fn()`` under job group ``group``; seconds, its tasks, its result."""
    spark.sparkContext.setJobGroup(group, group)
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        spark.sparkContext.setJobGroup("bench-setup", "bench-setup")
    return seconds, group_tasks(spark, group), result


# ------------------------------------------------------------------ annotate part


def _u(salt: int, col: str = "id") -> Column:
    h = F.xxhash64(F.col(col), F.lit(salt))
    return h.bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53)


def write_vectors(path: Path, ids: list[str], seed: int) -> None:
    """One Parquet file of unit vectors around 12 centres (``id, text, emb, tokens``)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(12, DIM))
    x = centres[rng.integers(0, 12, len(ids))] + 0.3 * rng.normal(size=(len(ids), DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table(
        {
            "id": ids,
            "text": [f"synthetic document {i}" for i in ids],
            "emb": pa.array(x.astype(np.float32).tolist(), type=pa.list_(pa.float32())),
            "tokens": pa.array(rng.integers(20, 400, len(ids)), type=pa.int64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _cfg(corpus: Path) -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(input=str(corpus), embedding_col="emb", tokens_col="tokens"),
        fit=FitConfig(levels=ANNOTATE_LEVELS, sample_size=5_000, seed=0, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=64),
    )


def build_annotated_table(
    spark: SparkSession, root: Path, rows: int, version: str, snapshot: Path
) -> tuple[Path, str]:
    """A corpus dir (old files + the snapshot) and a codes table holding ``rows`` old
    rows of ``version`` in the codes schema, with the old files in the ledger."""
    corpus = root / "corpus"
    n_files = max(1, rows // DOCS_PER_OLD_FILE)
    for f in range(n_files):  # placeholders: listed, in the ledger, never read
        write_vectors(corpus / f"old-{f:05d}.parquet", [f"old-{f}-0"], seed=f)
    shutil.copy(snapshot, corpus / "snapshot.parquet")
    entries = [e for e in io.list_files(str(corpus)) if "old-" in e.uri]
    spark_files = (
        spark.read.format("text").load(io.spark_paths(e.uri for e in entries)).inputFiles()
    )
    files = spark.createDataFrame(
        [(i, u) for i, u in enumerate(sorted(spark_files))], "f int, u string"
    )
    k1, k2, k3 = ANNOTATE_LEVELS
    base = spark.range(0, rows, numPartitions=max(2, rows // 500_000))
    codes = (
        base.withColumn("f", (F.col("id") % n_files).cast("int"))
        .join(F.broadcast(files), "f")
        .select(
            F.concat(F.lit("old-"), F.col("f"), F.lit("-"), F.col("id")).alias("doc_id"),
            F.floor(_u(1) * k1).cast("int").alias("c1"),
            F.floor(_u(2) * k2).cast("int").alias("c2"),
            F.floor(_u(3) * k3).cast("int").alias("c3"),
            (_u(4) * 0.5).cast("float").alias("qerr1"),
            (_u(5) * 0.3).cast("float").alias("qerr2"),
            (_u(6) * 0.2).cast("float").alias("qerr3"),
            (F.lit(20) + F.floor(_u(7) * 380)).cast("int").alias("n_tokens"),
            F.lit(None).cast("double").alias("quality"),
            F.col("u").alias("source_file"),
        )
    )
    bucket2 = F.col("c1").cast("long") * k2 + F.col("c2")
    codes = codes.select(
        "doc_id",
        "c1",
        "c2",
        "c3",
        F.col("c1").cast("long").alias("bucket1"),
        bucket2.alias("bucket2"),
        (bucket2 * k3 + F.col("c3")).alias("bucket3"),
        "qerr1",
        "qerr2",
        "qerr3",
        "n_tokens",
        "quality",
        F.lit(version).alias("codebook_version"),
        F.current_timestamp().alias("annotated_at"),
        "source_file",
    )
    table = str(root / "codes")
    store = get_store(spark)
    store.append(
        codes.repartition(max(1, rows // 1_000_000), "doc_id"),
        table,
        partition_by=("codebook_version",),
        metadata={
            "hermes.codebook_version": version,
            "hermes.levels": ",".join(map(str, ANNOTATE_LEVELS)),
        },
        cluster_by=CODES_CLUSTER_BY,  # the layout annotate gives a new codes table
    )
    ledger.record_chunk(spark, store, table, version, entries, "bench-seed")
    return corpus, table


def bench_annotate(spark: SparkSession, root: Path, scale: float) -> list[dict[str, Any]]:
    snapshot = root / "snapshot.parquet"
    write_vectors(snapshot, [f"new-{i}" for i in range(SNAPSHOT)], seed=999)
    fit_corpus = root / "fit"
    fit_corpus.mkdir(exist_ok=True)
    shutil.copy(snapshot, fit_corpus / "s.parquet")
    book = fit(spark, _cfg(fit_corpus), str(root / "codebook"))
    version = book.codebook.version
    # warm-up: workers, JIT, the codebook broadcast path
    corpus, table = build_annotated_table(spark, root / "warm", 20_000, version, snapshot)
    annotate(spark, _cfg(corpus), str(root / "codebook"), table)
    plain = _plain_passes(spark, spark.read.parquet(str(snapshot)), "id", "snapshot")
    first = root / "first" / "corpus"
    first.mkdir(parents=True)
    shutil.copy(snapshot, first / "snapshot.parquet")
    seconds, tasks, report = timed(
        spark,
        "annotate-first",
        lambda: annotate(spark, _cfg(first), str(root / "codebook"), str(root / "first" / "c")),
    )
    assert report.rows_written == SNAPSHOT, report
    results = [{"plain": plain, "first": (seconds, tasks)}]
    for rows in (max(20_000, int(n * scale)) for n in ANNOTATE_TABLES):
        where = root / f"t{rows}"
        corpus, table = build_annotated_table(spark, where, rows, version, snapshot)
        seconds, tasks, report = timed(
            spark,
            f"annotate-{rows}",
            lambda c=corpus, t=table: annotate(spark, _cfg(c), str(root / "codebook"), t),
        )
        assert report.rows_written == SNAPSHOT, report
        assert report.files_finished_before == report.files_total - 1, report
        results.append(
            {"rows": rows, "seconds": seconds, "tasks": tasks, "files": report.files_total}
        )
        print(f"[bench-scale] annotate into {rows:,} rows: {seconds:.1f} s", flush=True)
        shutil.rmtree(where, ignore_errors=True)
    return results


def _plain_passes(spark: SparkSession, frame: DataFrame, key: str, name: str) -> Plain:
    """Task metrics of one plain scan and one plain shuffle of ``frame`` (all columns,
    hash-partitioned by ``key``): the units a job's bytes read and shuffled are given in."""
    _, scan, _ = timed(
        spark, f"plain-scan-{name}", lambda: frame.write.format("noop").mode("overwrite").save()
    )
    shuffled = frame.repartition(16, key)
    _, shuffle, _ = timed(
        spark,
        f"plain-shuffle-{name}",
        lambda: shuffled.write.format("noop").mode("overwrite").save(),
    )
    return Plain(name, scan, shuffle)


# --------------------------------------------------------------- stats / sample / export


def build_codes(spark: SparkSession, root: Path, rows: int) -> tuple[str, str]:
    """A corpus (``id, text``) and its codes table (levels 64·64·32, skewed buckets)."""
    k1, k2, k3 = STATS_LEVELS
    parts = max(4, rows // 1_000_000)
    base = spark.range(0, rows, numPartitions=parts)
    corpus_dir = str(root / "corpus")
    base.select(
        F.concat(F.lit("d"), F.col("id").cast("string")).alias("id"),
        F.concat(F.lit("synthetic document "), F.col("id").cast("string"), F.lit(". " * 20)).alias(
            "text"
        ),
    ).write.parquet(corpus_dir)
    read = spark.read.parquet(corpus_dir)
    codes = read.select(
        F.col("id").alias("doc_id"),
        F.floor(F.pow(_u(1), 1.6) * k1).cast("int").alias("c1"),
        F.floor(F.pow(_u(2), 1.3) * k2).cast("int").alias("c2"),
        F.floor(_u(3) * k3).cast("int").alias("c3"),
        (_u(4) * 0.5).cast("float").alias("qerr1"),
        (_u(5) * 0.3).cast("float").alias("qerr2"),
        (_u(6) * 0.2).cast("float").alias("qerr3"),
        (F.lit(30) + F.floor(F.pow(_u(7), 4.0) * 4000)).cast("int").alias("n_tokens"),
        _u(8).alias("quality"),
        F.col("_metadata.file_path").alias("source_file"),
    )
    bucket2 = F.col("c1").cast("long") * k2 + F.col("c2")
    codes = codes.select(
        "doc_id",
        "c1",
        "c2",
        "c3",
        F.col("c1").cast("long").alias("bucket1"),
        bucket2.alias("bucket2"),
        (bucket2 * k3 + F.col("c3")).alias("bucket3"),
        "qerr1",
        "qerr2",
        "qerr3",
        "n_tokens",
        "quality",
        F.lit("bench").alias("codebook_version"),
        F.current_timestamp().alias("annotated_at"),
        "source_file",
    )
    table = str(root / "codes")
    get_store(spark).append(
        codes,
        table,
        partition_by=("codebook_version",),
        metadata={"hermes.codebook_version": "bench", "hermes.levels": "64,64,32"},
    )
    return table, corpus_dir


def bench_tables(spark: SparkSession, root: Path, scale: float) -> list[dict[str, Any]]:
    results = []
    for rows in (max(100_000, int(n * scale)) for n in STATS_TABLES):
        where = root / f"c{rows}"
        table, corpus = build_codes(spark, where, rows)
        total = get_store(spark).read(table).agg(F.sum("n_tokens")).first()[0]
        t_stats, k_stats, _ = timed(
            spark,
            f"stats-{rows}",
            lambda t=table, w=where: compute_stats(spark, t, str(w / "stats")),
        )
        plain_codes = _plain_passes(spark, get_store(spark).read(table), "doc_id", "codes")
        plain_corpus = _plain_passes(spark, spark.read.parquet(corpus), "id", "corpus")
        settings = SampleConfig(
            budget_tokens=float(total) * 0.01, weights="proportional", stage2="random", seed=0
        )
        t_plan, k_plan, plan = timed(
            spark, f"plan-{rows}", lambda t=table, c=settings: compute_plan(spark, c, table=t)
        )
        t_sample, k_sample, _ = timed(
            spark,
            f"sample-{rows}",
            lambda t=table, w=where, p=plan: run_sample(spark, t, str(w / "manifest"), p),
        )
        t_export, k_export, exported = timed(
            spark,
            f"export-{rows}",
            lambda c=corpus, w=where: export_training_data(
                spark, str(w / "manifest"), CorpusConfig(input=c), str(w / "export"), seed=0
            ),
        )
        results.append(
            {
                "rows": rows,
                "plain": {"codes": plain_codes, "corpus": plain_corpus},
                "stats": (t_stats, k_stats),
                "plan": (t_plan, k_plan),
                "sample": (t_sample, k_sample),
                "export": (t_export, k_export),
                "exported_rows": exported.rows,
            }
        )
        print(
            f"[bench-scale] {rows:,} codes rows: stats {t_stats:.1f} s, plan {t_plan:.1f} s, "
            f"sample {t_sample:.1f} s, export {t_export:.1f} s",
            flush=True,
        )
        shutil.rmtree(where, ignore_errors=True)
    return results


# ------------------------------------------------------------------------ report


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _print_annotate(runs: list[dict]) -> None:
    plain = runs[0]["plain"]
    scan, shuffle = plain.scan, plain.shuffle
    ann = runs[1:]
    print(f"1. incremental annotate of a {SNAPSHOT:,}-doc snapshot into a table of N rows")
    print(
        f"  bytes read / shuffled are over one plain scan ({_mb(scan.bytes_read)}) / one "
        f"plain shuffle ({_mb(shuffle.shuffled)}) of the snapshot (goal <= 1.3 each)"
    )
    print(
        f"  {'N rows':>11} {'files':>6} {'seconds':>8} {'tasks':>6} {'largest/median':>15} "
        f"{'read':>6} {'shuffled':>9}"
    )
    for r in ann:
        k = r["tasks"]
        read, moved = plain.ratios(k)
        print(
            f"  {r['rows']:>11,} {r['files']:>6} {r['seconds']:>8.1f} {k.tasks:>6} "
            f"{_mb(k.largest):>9}/{_mb(k.median)} {read:>5.2f}x {moved:>8.2f}x"
        )
    ratio = ann[-1]["seconds"] / ann[0]["seconds"]
    grow = ann[-1]["rows"] / ann[0]["rows"]
    print(
        f"  t({ann[-1]['rows']:,})/t({ann[0]['rows']:,}) = {ratio:.2f} for {grow:.0f}x rows "
        f"(goal <= 1.3): {'ok' if ratio <= 1.3 else 'MISSED'}"
    )


#: The input each job's bytes are measured against.
JOB_INPUTS = {"stats": "codes", "plan": "codes", "sample": "codes", "export": "corpus"}


def _print_ratios(ann: list[dict], tab: list[dict]) -> None:
    """Per job: bytes read / shuffled over one plain scan / shuffle of its input."""
    print("per-job ratios: bytes read / one plain scan, bytes shuffled / one plain shuffle")
    print(f"  {'job':<22} {'input':<22} {'read':>7} {'shuffled':>9}")
    rows: list[tuple[str, Plain, Tasks]] = []
    if ann:
        rows.append(("annotate (first run)", ann[0]["plain"], ann[0]["first"][1]))
        rows += [(f"annotate (incr., {r['rows']:,})", ann[0]["plain"], r["tasks"]) for r in ann[1:]]
    for r in tab:
        for job, src in JOB_INPUTS.items():
            rows.append((f"{job} ({r['rows']:,})", r["plain"][src], r[job][1]))
    for job, plain, k in rows:
        read, moved = plain.ratios(k)
        where = f"{plain.name} ({_mb(plain.scan.bytes_read)})"
        print(f"  {job:<22} {where:<22} {read:>6.2f}x {moved:>8.2f}x")


def print_report(spark: SparkSession, scale: float, ann: list[dict], tab: list[dict]) -> None:
    cores = spark.sparkContext.defaultParallelism
    engine = get_store(spark).name
    print(
        f"\nhermes bench-scale (scale {scale:g}, local[{cores}] cores, given vectors, "
        f"{engine} Delta)"
    )
    if ann or tab:
        _print_ratios(ann, tab)
    if ann:
        _print_annotate(ann)
    if not tab:
        return
    print("2./3. stats, sample (1% budget, random at L2) and export on codes tables")
    for name in ("stats", "plan", "sample", "export"):
        for r in tab:
            seconds, k = r[name]
            print(
                f"  {name:>6} {r['rows']:>11,} rows: {seconds:7.1f} s, {k.jobs} jobs, "
                f"{k.tasks} tasks, bytes read {_mb(k.bytes_read)}, largest task input "
                f"{_mb(k.largest)} vs median {_mb(k.median)} (x{k.skew:.2f}) in stage {k.stage}"
            )
        a, b = tab[0][name][0], tab[-1][name][0]
        grow = tab[-1]["rows"] / tab[0]["rows"]
        print(f"  {name:>6} time ratio {b / a:.2f} for {grow:.0f}x rows (goal <= {grow * 1.1:.1f})")
    exported = ", ".join(f"{r['exported_rows']:,}" for r in tab)
    print(f"  exported rows: {exported}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scale", type=float, default=0.1, help="multiplies every table size (1 = the issue's)"
    )
    ap.add_argument("--workdir", help="scratch directory (default: a temp dir, removed)")
    ap.add_argument("--skip-tables", action="store_true", help="annotate part only")
    ap.add_argument("--skip-annotate", action="store_true", help="stats/sample/export only")
    args = ap.parse_args()
    spark = get_spark(
        "local[*]",
        {
            "spark.driver.memory": "4g",
            "spark.sql.shuffle.partitions": "16",
            "spark.ui.enabled": "true",  # the status REST API measures task inputs
            "spark.ui.port": "4057",
            # Parquet's vectored reads run on other threads, so Spark's task metrics
            # count almost none of their bytes (measured: 10 KB reported for a 150 MB
            # scan); plain reads make "bytes read" the bytes the scans really read.
            "spark.hadoop.parquet.hadoop.vectored.io.enabled": "false",
        },
        app_name="hermes-bench-scale",
    )
    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="hermes-bench-scale-"))
    try:
        ann = [] if args.skip_annotate else bench_annotate(spark, scratch / "annotate", args.scale)
        tab = [] if args.skip_tables else bench_tables(spark, scratch / "tables", args.scale)
    finally:
        if not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    print_report(spark, args.scale, ann, tab)


if __name__ == "__main__":
    main()
