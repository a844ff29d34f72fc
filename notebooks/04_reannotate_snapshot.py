# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 4 · re-annotate a new corpus snapshot
# MAGIC A new snapshot (new files appended to the corpus) needs codes only for the documents
# MAGIC that have no row for the current codebook version: `mode incremental` embeds just
# MAGIC those and commits chunk by chunk, so a failed run re-run resumes. `mode full`
# MAGIC re-annotates everything (e.g. after fitting a new codebook).

# COMMAND ----------

from hermes_spark.notebook_widgets import display_fn, widgets

w = widgets(globals())
w.text("config", "cluster-gpu")
w.text("input", "/Volumes/main/corpora/web")
w.dropdown("input_format", "parquet", ["parquet", "json", "delta"])
w.text("embedding_col", "")
w.text("tokens_col", "")
w.text("codebook", "/Volumes/main/hermes/codebook")
w.text("table", "main.hermes.codes")
w.dropdown("mode", "incremental", ["incremental", "full"])
show = display_fn(globals())

# COMMAND ----------

import dataclasses

from hermes_spark.config import load_config
from hermes_spark.session import get_spark
from hermes_spark.tasks.annotate import annotate
from hermes_spark.versions import list_versions

spark = get_spark()
cfg = load_config(w.get("config"))
cfg = dataclasses.replace(
    cfg,
    corpus=dataclasses.replace(
        cfg.corpus,
        input=w.get("input"),
        format=w.get("input_format"),
        embedding_col=w.get("embedding_col") or None,
        tokens_col=w.get("tokens_col") or None,
    ),
    annotate=dataclasses.replace(cfg.annotate, mode=w.get("mode")),
)

# COMMAND ----------

report = annotate(spark, cfg, w.get("codebook"), w.get("table"))
print(
    f"{report.rows_written} new rows; {report.chunks_skipped} of {report.chunks_total} "
    f"chunks were already committed; {report.table_rows} rows of {report.codebook_version}"
)

# COMMAND ----------

# Every codebook version of the table, with its row counts (old versions stay queryable).
versions = list_versions(spark, w.get("table"))
versions
