# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 3 · design a training mixture: plan → sample → export
# MAGIC `plan_mixture` allocates a token budget over level-`w` buckets (Stage 1) and their
# MAGIC level-`s` children (Stage 2) from the statistics alone; `sample` picks the documents
# MAGIC (the MANIFEST, deterministic in the seed); `materialize` joins them back to the
# MAGIC corpus with repeats expanded. Everything stays a DataFrame until you write it.

# COMMAND ----------

from hermes_spark.notebook_widgets import display_fn, widgets

w = widgets(globals())
w.text("table", "main.hermes.codes")  # a catalog name or a Delta table path
w.text("input", "/Volumes/main/corpora/web/snapshot")
w.dropdown("input_format", "parquet", ["parquet", "json", "delta"])
w.text("budget_tokens", "1e9")
w.text("weights", "unimax")  # proportional | uniform | temperature:TAU | unimax
w.text("stage2", "coverage")  # random | coverage | quality-top:P
w.text("max_epochs", "4")
w.text("seed", "0")
w.text("out", "/Volumes/main/hermes/train")
show = display_fn(globals())

# COMMAND ----------

from hermes_spark import bucket_stats, materialize, plan_mixture, sample
from hermes_spark.session import get_spark

spark = get_spark()
table = w.get("table")
is_path = "/" in table or ":" in table
codes = spark.read.format("delta").load(table) if is_path else spark.read.table(table)
corpus = spark.read.format(w.get("input_format")).load(w.get("input"))
stats, _levels = bucket_stats(codes)

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

manifest = sample(codes, plan, seed=int(w.get("seed")))
show(manifest.groupBy("stage1_bucket").sum("repeats").orderBy("stage1_bucket"))

# COMMAND ----------

train = materialize(manifest, corpus)
train.write.mode("overwrite").parquet(w.get("out"))
train_rows = spark.read.parquet(w.get("out")).count()
train_rows
