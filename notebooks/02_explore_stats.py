# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 2 · explore the bucket statistics
# MAGIC `bucket_stats` turns the codes of one codebook version into one row per non-empty
# MAGIC bucket per level (`STATS`) and one row per level (`STATS_levels`): cells used,
# MAGIC entropy, perplexity, imbalance. Lazy DataFrames: filter, plot, or write them.

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
w.text("top", "20")
w.text("input", "")  # the corpus (files or a Delta path): the explorer's texts; empty: none
w.text("explorer", "/Volumes/main/hermes/explorer")  # where the explorer page goes
show = display_fn(globals())
show_html = display_html_fn(globals())

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

# COMMAND ----------

# The report page of these statistics (rank-size, children, quality), inline.
from hermes_spark import build_report

page = build_report(stats, levels)
show_html(page)

# COMMAND ----------

# What is inside each bucket: cards (size, quality, top terms, example documents) in the
# CODES_cards table and a static explorer page, shown inline. Needs the corpus texts.
if w.get("input"):
    from hermes_spark import explore
    from hermes_spark.config import CorpusConfig

    cards = explore(spark, CorpusConfig(input=w.get("input")), table, w.get("explorer"))
    show_html(cards.html())
    cards
