# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 2 · explore the bucket statistics
# MAGIC `bucket_stats` turns the codes of one codebook version into one row per non-empty
# MAGIC bucket per level (`STATS`) and one row per level (`STATS_levels`): cells used,
# MAGIC entropy, perplexity, imbalance. Lazy DataFrames: filter, plot, or write them.

# COMMAND ----------

from hermes_spark.notebook_widgets import display_fn, widgets

w = widgets(globals())
w.text("table", "main.hermes.codes")  # a catalog name or a Delta table path
w.text("top", "20")
show = display_fn(globals())

# COMMAND ----------

from pyspark.sql import functions as F

from hermes_spark import bucket_stats
from hermes_spark.session import get_spark

spark = get_spark()
table = w.get("table")
is_path = "/" in table or ":" in table
codes = spark.read.format("delta").load(table) if is_path else spark.read.table(table)
stats, levels = bucket_stats(codes)

# COMMAND ----------

# One row per level: how evenly the corpus fills the cells of each granularity.
show(levels.orderBy("level"))
levels_pdf = levels.orderBy("level").toPandas()
levels_pdf

# COMMAND ----------

# The largest level-1 buckets and how their documents spread over their children.
largest = stats.where(F.col("level") == 1).orderBy(F.desc("tokens")).limit(int(w.get("top")))
show(largest.select("bucket", "docs", "tokens", "share_tokens", "children", "child_entropy_bits"))
largest_pdf = largest.toPandas()
largest_pdf
