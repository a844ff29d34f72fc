# Databricks notebook source
# MAGIC %md
# MAGIC # HERMES 1 · fit a codebook and annotate a corpus
# MAGIC Fits the codebook on a sample of the corpus (`HermesEstimator.fit`), saves it, looks
# MAGIC at the codes of a few documents (`HermesModel.transform`, lazy), then writes every
# MAGIC document's codes into the codes table with the resumable, exactly-once writer that
# MAGIC `hermes annotate` uses. Attaches to the notebook's SparkSession; off Databricks the
# MAGIC widgets fall back to their defaults (or `HERMES_<NAME>` environment variables).

# COMMAND ----------

from hermes_spark.notebook_widgets import display_fn, widgets

w = widgets(globals())
w.text("config", "cluster-gpu")  # a shipped config name (or a path to a YAML file)
w.text("input", "/Volumes/main/corpora/web/snapshot")
w.dropdown("input_format", "parquet", ["parquet", "json", "delta"])
w.text("embedding_col", "")  # precomputed vectors (empty: embed with the model)
w.text("tokens_col", "")
w.text("levels", "64,64,32")
w.text("sample_size", "200000")
w.text("codebook", "/Volumes/main/hermes/codebook")
w.text("table", "main.hermes.codes")
show = display_fn(globals())

# COMMAND ----------

import dataclasses

from hermes_spark import HermesEstimator, HermesModel
from hermes_spark.config import load_config
from hermes_spark.session import get_spark
from hermes_spark.tasks.annotate import annotate

spark = get_spark()  # the notebook's session on Databricks; a local one elsewhere
cfg = load_config(w.get("config"))  # a shipped name resolves through the installed package
corpus_cfg = dataclasses.replace(
    cfg.corpus,
    input=w.get("input"),
    format=w.get("input_format"),
    embedding_col=w.get("embedding_col") or None,
    tokens_col=w.get("tokens_col") or None,
)
fit_cfg = dataclasses.replace(
    cfg.fit,
    levels=tuple(int(k) for k in w.get("levels").split(",")),
    sample_size=int(w.get("sample_size")),
)
cfg = dataclasses.replace(cfg, corpus=corpus_cfg, fit=fit_cfg)
corpus = spark.read.format(w.get("input_format")).load(w.get("input"))

# COMMAND ----------

# Fit once per corpus family: later snapshots reuse the artifact (same codebook_version).
# The config converts once: its corpus roles, model run options (a GPU config's batch
# size included) and fit settings.
estimator = HermesEstimator.from_config(cfg)
model = estimator.fit(corpus)
model.save(w.get("codebook"))
model.fit_report

# COMMAND ----------

# The codes of a few documents, computed lazily (nothing is written here).
model = HermesModel.load(w.get("codebook")).with_config(cfg)
# transform keeps the corpus columns: pass the ones it reads (hermes adds quality, codes...)
roles = [corpus_cfg.id_col, corpus_cfg.text_col, corpus_cfg.embedding_col, corpus_cfg.tokens_col]
preview = model.transform(corpus.select(*[c for c in roles if c]).limit(20)).select(
    "doc_id", "c1", "c2", "c3", "n_tokens", "codebook_version", "reason"
)
show(preview)

# COMMAND ----------

# Every document into the codes table: chunked, resumable, one Delta commit per chunk.
report = annotate(spark, cfg, w.get("codebook"), w.get("table"))
report.as_dict()
