# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 3 · design a training mixture: plan → sample → export
# MAGIC `plan_mixture` allocates a token budget over level-`w` buckets (Stage 1) and their
# MAGIC level-`s` children (Stage 2) from the statistics alone; `sample` picks the documents
# MAGIC (the MANIFEST table and mixture report, deterministic in the seed, as `hermes sample`
# MAGIC writes them); `export_training_data` writes the shards, per-bucket folders and the
# MAGIC Megatron blend exactly as `hermes export` does.

# COMMAND ----------

# On a cluster: install the hermes-spark wheel from a Volume, then restart Python so the
# next cells import it. A no-op off Databricks (no dbutils) or with an empty "wheel".
if "dbutils" in globals():
    import subprocess
    import sys

    dbutils.widgets.text("wheel", "/Volumes/main/hermes/wheels/hermes_spark-0.1.0-py3-none-any.whl")
    if dbutils.widgets.get("wheel"):
        pip = [sys.executable, "-m", "pip", "install", "--quiet", dbutils.widgets.get("wheel")]
        subprocess.check_call(pip)
        dbutils.library.restartPython()

# COMMAND ----------

from hermes_spark.notebook_widgets import display_fn, display_html_fn, widgets

w = widgets(globals())
w.text("table", "main.hermes.codes")  # a catalog name or a Delta table path
w.text("input", "/Volumes/main/corpora/web/snapshot")
w.dropdown("input_format", "parquet", ["parquet", "json", "delta"])
w.text("budget_tokens", "1e9")
w.text("weights", "unimax")  # proportional | uniform | temperature:TAU | unimax
w.text("stage2", "coverage")  # random | coverage | quality-top:P
w.text("max_epochs", "4")
w.text("seed", "0")
w.text("manifest", "main.hermes.manifest")  # the MANIFEST table hermes sample writes
w.text("shards", "8")
w.text("out", "/Volumes/main/hermes/train")
show = display_fn(globals())
show_html = display_html_fn(globals())

# COMMAND ----------

from hermes_spark import bucket_stats, build_report, plan_mixture
from hermes_spark.config import CorpusConfig
from hermes_spark.delta import get_store
from hermes_spark.export import export_training_data
from hermes_spark.session import get_spark
from hermes_spark.tasks.sample import run_sample

spark = get_spark()
table = w.get("table")
codes = get_store(spark).read(table)  # a catalog name or a path, whichever engine runs
stats, levels = bucket_stats(codes)

# COMMAND ----------

plan = plan_mixture(
    stats,
    budget_tokens=float(w.get("budget_tokens")),
    weights=w.get("weights"),
    stage2=w.get("stage2"),
    weights_level=1,
    stage2_level=2,
    max_epochs=float(w.get("max_epochs")),
)
plan

# COMMAND ----------

# The sample as hermes sample writes it: the MANIFEST table and its mixture report.
result = run_sample(spark, table, w.get("manifest"), plan.with_seed(int(w.get("seed"))))
manifest = get_store(spark).read(w.get("manifest"))
show(manifest.groupBy("stage1_bucket").sum("repeats").orderBy("stage1_bucket"))
show_html(build_report(stats, levels, mixture=result.report))

# COMMAND ----------

# Export as hermes export does: shuffled shards, one folder per Stage-1 bucket and the
# Megatron blend file, plus mixture.json and the weight files beside them.
corpus = CorpusConfig(input=w.get("input"), format=w.get("input_format"))
exported = export_training_data(
    spark,
    w.get("manifest"),
    corpus,
    w.get("out"),
    shards=int(w.get("shards")),
    seed=int(w.get("seed")),
    per_bucket=True,
    overwrite=True,
)
train_rows = exported.rows
exported.extra_files
