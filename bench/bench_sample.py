"""Throughput of ``hermes sample`` and ``hermes export`` on synthetic codes tables.

Run: ``python bench/bench_sample.py [--rows 10000000] [--budget-share 0.1]`` (``make bench``).
A codes table of N rows (levels 64·64·32, skewed buckets, heavy-tailed token counts,
uniform quality; every column derived from hashes of ``spark.range`` ids, no model) is
written as a Delta table through the store, with a matching corpus (``id, text``) as
Parquet. Then, for N and 2N rows, it times planning + selection + manifest write
(``random`` at level 2 under proportional Stage-1 weights, budget = ``budget-share`` of the
tokens) and the export of that manifest (join to the corpus, repeat expansion, 8 shuffled
Parquet shards). Prints rows/s for both and how the time grows from N to 2N (2.0 = linear).
Generation and a 100k-row warm-up are not timed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.export import export_training_data
from hermes_spark.session import get_spark
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample

LEVELS = (64, 64, 32)


def _u(salt: int) -> Column:
    """A uniform in [0, 1) from the row id and a salt (53 bits of xxhash64)."""
    h = F.xxhash64(F.col("id"), F.lit(salt))
    return h.bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53)


def write_synthetic(spark: SparkSession, rows: int, root: Path) -> tuple[str, str]:
    """Write a codes Delta table and its corpus of ``rows`` documents; return their paths."""
    k1, k2, k3 = LEVELS
    base = spark.range(0, rows, numPartitions=max(4, rows // 1_000_000))
    codes = base.select(
        F.concat(F.lit("d"), F.col("id").cast("string")).alias("doc_id"),
        F.floor(F.pow(_u(1), 1.6) * k1).cast("int").alias("c1"),
        F.floor(F.pow(_u(2), 1.3) * k2).cast("int").alias("c2"),
        F.floor(_u(3) * k3).cast("int").alias("c3"),
        (_u(4) * 0.5).cast("float").alias("qerr1"),
        (_u(5) * 0.3).cast("float").alias("qerr2"),
        (_u(6) * 0.2).cast("float").alias("qerr3"),
        (F.lit(30) + F.floor(F.pow(_u(7), 4.0) * 4000)).cast("int").alias("n_tokens"),
        _u(8).alias("quality"),
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
    )
    table = str(root / "codes")
    get_store(spark).append(codes, table, partition_by=("codebook_version",))
    corpus = base.select(
        F.concat(F.lit("d"), F.col("id").cast("string")).alias("id"),
        F.concat(
            F.lit("synthetic document "),
            F.col("id").cast("string"),
            F.lit(" about topic "),
            (F.col("id") % 97).cast("string"),
            F.lit(". " * 20),
        ).alias("text"),
    )
    corpus_dir = str(root / "corpus")
    corpus.write.parquet(corpus_dir)
    return table, corpus_dir


def bench_once(spark: SparkSession, rows: int, root: Path, budget_share: float) -> dict:
    table, corpus = write_synthetic(spark, rows, root)
    total = get_store(spark).read(table).agg(F.sum("n_tokens")).first()[0]
    settings = SampleConfig(
        budget_tokens=float(total) * budget_share, weights="proportional", stage2="random", seed=0
    )
    t0 = time.perf_counter()
    plan = compute_plan(spark, settings, table=table)
    t1 = time.perf_counter()
    result = run_sample(spark, table, str(root / "manifest"), plan)
    t2 = time.perf_counter()
    exported = export_training_data(
        spark,
        str(root / "manifest"),
        CorpusConfig(input=corpus),
        str(root / "export"),
        shards=8,
        seed=0,
    )
    t3 = time.perf_counter()
    return {
        "rows": rows,
        "plan_s": t1 - t0,
        "sample_s": t2 - t0,
        "export_s": t3 - t2,
        "selected": result.report["totals"]["docs"],
        "exported_rows": exported.rows,
        "within_bound": result.report["within_bound"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--budget-share", type=float, default=0.1)
    ap.add_argument("--workdir", help="scratch directory (default: a temp dir, removed)")
    args = ap.parse_args()
    spark = get_spark(
        "local[*]",
        {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "16"},
        app_name="hermes-bench-sample",
    )
    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="hermes-bench-sample-"))
    results = []
    try:
        bench_once(spark, 100_000, scratch / "warmup", args.budget_share)  # JIT, workers
        shutil.rmtree(scratch / "warmup", ignore_errors=True)
        for rows in (args.rows, 2 * args.rows):
            root = scratch / f"n{rows}"
            shutil.rmtree(root, ignore_errors=True)
            results.append(bench_once(spark, rows, root, args.budget_share))
            shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    cores = spark.sparkContext.defaultParallelism
    print(
        f"\nhermes sample + export on synthetic codes (levels {LEVELS}, {cores} cores, "
        f"budget {args.budget_share:.0%} of tokens, random at L2 under proportional L1)"
    )
    print(
        "  sample s = plan + selection + manifest write + report; export rows/s counts "
        "written rows, corpus rows/s the corpus rows joined"
    )
    print(
        f"  {'rows':>11} {'plan s':>7} {'sample s':>9} {'sample rows/s':>14} "
        f"{'selected':>10} {'export s':>9} {'export rows/s':>14} {'corpus rows/s':>14} bound"
    )
    for r in results:
        print(
            f"  {r['rows']:>11,} {r['plan_s']:>7.1f} {r['sample_s']:>9.1f} "
            f"{r['rows'] / r['sample_s']:>14,.0f} {r['selected']:>10,} {r['export_s']:>9.1f} "
            f"{r['exported_rows'] / r['export_s']:>14,.0f} "
            f"{r['rows'] / r['export_s']:>14,.0f} {'ok' if r['within_bound'] else 'NO'}"
        )
    a, b = results
    print(
        f"  time ratio for {b['rows'] // a['rows']}x rows: sample "
        f"{b['sample_s'] / a['sample_s']:.2f}x, export {b['export_s'] / a['export_s']:.2f}x "
        "(2.00 = linear)"
    )


if __name__ == "__main__":
    main()
