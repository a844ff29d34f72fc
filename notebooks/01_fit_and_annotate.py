# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 1 · fit a codebook and annotate a corpus
# MAGIC Fits the codebook on a sample of the corpus (`HermesEstimator.fit`), saves it, looks
# MAGIC at the codes of a few documents (`HermesModel.transform`, lazy), then writes every
# MAGIC document's codes into the codes table with the resumable, exactly-once writer that
# MAGIC `hermes annotate` uses. Reads a Unity Catalog table (`input_table`) or files
# MAGIC (`input`); an artifact already at `codebook` is reused, not re-fitted. Attaches to
# MAGIC the notebook's SparkSession; off Databricks the widgets fall back to their defaults
# MAGIC (or `HERMES_<NAME>` environment variables).

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
w.text("config", "cluster-gpu")  # a shipped config name (or a path to a YAML file)
w.text("input_table", "main.corpora.web_snapshot")  # a Unity Catalog table (or empty)
w.text("input", "")  # files instead of a table: a folder of parquet/json, a Delta path
w.dropdown("input_format", "parquet", ["parquet", "json", "delta"])
w.text("embedding_col", "")  # precomputed vectors (empty: embed with the model)
w.text("tokens_col", "")
w.text("levels", "64,64,32")
w.text("sample_size", "200000")
w.text("codebook", "/Volumes/main/hermes/codebook")
w.text("table", "main.hermes.codes")
show = display_fn(globals())

# COMMAND ----------

from hermes_spark import HermesEstimator, HermesModel, io
from hermes_spark.config import load_config
from hermes_spark.session import get_spark
from hermes_spark.tasks.annotate import annotate

spark = get_spark()  # the notebook's session on Databricks; a local one elsewhere
source = {"table": w.get("input_table") or None, "input": w.get("input") or None}
corpus_keys = {
    **source,
    "format": w.get("input_format"),
    "embedding_col": w.get("embedding_col") or None,
    "tokens_col": w.get("tokens_col") or None,
}
levels = [int(k) for k in w.get("levels").split(",")]
sample_size = int(w.get("sample_size"))
cfg = load_config(w.get("config")).with_overrides(
    {"corpus": corpus_keys, "fit": {"levels": levels, "sample_size": sample_size}}
)
if cfg.corpus.table:  # a catalog table, read through its table reader
    corpus = spark.read.table(cfg.corpus.table)
else:
    corpus = spark.read.format(cfg.corpus.format).load(cfg.corpus.input)

# COMMAND ----------

# Fit once per corpus family: later snapshots reuse the artifact (same codebook_version),
# so an artifact already at the codebook path is loaded, not fitted again.
codebook = w.get("codebook")
fitted_now = not io.exists(codebook)
if fitted_now:
    estimator = HermesEstimator.from_config(cfg)
    estimator.fit(corpus).save(codebook)
model = HermesModel.load(codebook).with_config(cfg)
model.fit_report

# COMMAND ----------

# The codes of a few documents, computed lazily (nothing is written here).
# transform keeps the corpus columns: pass the ones it reads (hermes adds quality, codes...)
roles = [cfg.corpus.id_col, cfg.corpus.text_col, cfg.corpus.embedding_col, cfg.corpus.tokens_col]
preview = model.transform(corpus.select(*[c for c in roles if c]).limit(20)).select(
    "doc_id", "c1", "c2", "c3", "n_tokens", "codebook_version", "reason"
)
show(preview)

# COMMAND ----------

# Every document into the codes table: chunked, resumable, one Delta commit per chunk.
report = annotate(spark, cfg, codebook, w.get("table"))
report.as_dict()
