# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 4 · re-annotate a new corpus snapshot
# MAGIC A new snapshot (new files appended to the corpus) needs codes only for the documents
# MAGIC that have no row for the current codebook version: `mode incremental` embeds just
# MAGIC those and commits chunk by chunk, so a failed run re-run resumes. `mode full`
# MAGIC re-annotates everything (e.g. after fitting a new codebook).

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

from hermes_spark.config import load_config
from hermes_spark.session import get_spark
from hermes_spark.tasks.annotate import annotate
from hermes_spark.versions import list_versions

spark = get_spark()
corpus_keys = {
    "input": w.get("input"),
    "format": w.get("input_format"),
    "embedding_col": w.get("embedding_col") or None,
    "tokens_col": w.get("tokens_col") or None,
}
cfg = load_config(w.get("config")).with_overrides(
    {"corpus": corpus_keys, "annotate": {"mode": w.get("mode")}}
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
