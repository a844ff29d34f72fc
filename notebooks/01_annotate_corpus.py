# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES: fit a codebook and annotate a corpus
# MAGIC Attaches to the notebook's SparkSession (native Delta on Databricks) and calls the
# MAGIC same library functions as `hermes fit` / `hermes annotate` / `hermes stats`.

# COMMAND ----------

dbutils.widgets.text("input", "/Volumes/main/corpora/web/snapshot")
dbutils.widgets.text("format", "parquet")
dbutils.widgets.text("codebook", "/Volumes/main/hermes/codebook")
dbutils.widgets.text("table", "main.hermes.codes")
dbutils.widgets.text("stats", "main.hermes.stats")
dbutils.widgets.dropdown("mode", "incremental", ["incremental", "full"])

# COMMAND ----------

import dataclasses

from hermes_spark.config import load_config
from hermes_spark.session import get_spark
from hermes_spark.stats import compute_stats
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit

w = dbutils.widgets.get
spark = get_spark()
cfg = load_config("conf/default.yaml")
cfg = dataclasses.replace(
    cfg,
    corpus=dataclasses.replace(cfg.corpus, input=w("input"), format=w("format")),
    annotate=dataclasses.replace(cfg.annotate, mode=w("mode")),
)

# COMMAND ----------

# Fit once per corpus family; later snapshots reuse the artifact (same codebook_version).
result = fit(spark, cfg, w("codebook"))
result.report

# COMMAND ----------

report = annotate(spark, cfg, w("codebook"), w("table"))
report.as_dict()

# COMMAND ----------

stats = compute_stats(
    spark, w("table"), w("stats"), result.codebook.version, list(result.codebook.levels)
)
display(spark.createDataFrame(stats.levels))
