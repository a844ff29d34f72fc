"""``hermes evaluate``: clustering quality of each code level vs KMeans-family baselines.

Driver orchestration. A deterministic sample (``u = hash(doc_id, seed)``) of the
annotated documents is joined back to the corpus, embedded on executors and brought to
the driver (bounded by ``sample_size``); there each level's prefix code is compared with
flat k-means and bisecting k-means with the same number of cells on the same LST space:
relative MSE and, when a label column is given, NMI / ARI against the labels.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark.annotate import select_version
from hermes_spark.config import HermesConfig
from hermes_spark.corpus import check_columns, doc_id_column, list_input_files, read_corpus
from hermes_spark.delta import get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.hashing import uniform
from hermes_spark.quantize.codebook import Codebook
from udfs.annotate_udf import ModelSettings, embed_schema, make_embed_fn

log = logging.getLogger(__name__)


def relative_mse(x: np.ndarray, labels: np.ndarray) -> float:
    """Within-cell squared error / total squared error around the mean."""
    total = float(((x - x.mean(axis=0)) ** 2).sum())
    sse = 0.0
    for cell in np.unique(labels):
        part = x[labels == cell]
        sse += float(((part - part.mean(axis=0)) ** 2).sum())
    return sse / total if total > 0 else 0.0


def evaluate(
    spark: SparkSession,
    cfg: HermesConfig,
    table: str,
    codebook_path: str,
    label_col: str | None = None,
    sample_size: int = 2000,
    seed: int = 0,
    version: str | None = None,
) -> dict[str, Any]:
    """Per-level metrics of the codes in ``table`` against KMeans-family baselines."""
    from sklearn.cluster import BisectingKMeans, KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    codebook = Codebook.load(codebook_path)
    store = get_store(spark)
    codes, chosen = select_version(store, table, version)
    if chosen != codebook.version:
        raise InvalidInputError(
            f"codebook {codebook_path} is version {codebook.version} but the table's rows "
            f"are version {chosen}: pass the matching artifact or --codebook-version"
        )
    corpus = cfg.corpus
    raw = read_corpus(spark, corpus, list_input_files(corpus).paths)
    check_columns(raw.schema, corpus, embedding_dim=codebook.dim)
    if label_col and label_col not in raw.columns:
        raise InvalidInputError(f"label column {label_col!r} is not in the corpus")
    docs = raw.select(
        doc_id_column(raw.schema, corpus).alias("doc_id"),
        F.col(corpus.text_col).alias("text"),
        *([F.col(corpus.embedding_col).alias("embedding")] if corpus.embedding_col else []),
        *([F.col(label_col).cast("string").alias("label")] if label_col else []),
    )
    picked = (
        codes.select("doc_id")
        .withColumn("_u", uniform("doc_id", seed))
        .orderBy("_u", "doc_id")
        .limit(sample_size)
        .drop("_u")
        .join(docs.dropDuplicates(["doc_id"]), "doc_id")
    )
    if corpus.embedding_col:
        vectors = picked.select("doc_id", "embedding", *(["label"] if label_col else []))
    else:
        settings = ModelSettings(
            codebook.model["name"],
            int(codebook.model["max_seq_length"]),
            int(codebook.model.get("batch_size", 64)),
            cfg.model.device,
            cfg.model.sort_window,
        )
        embedded = (
            picked.select("doc_id", "text")
            .repartition(spark.sparkContext.defaultParallelism, "doc_id")
            .mapInPandas(make_embed_fn(settings), embed_schema())
        )
        vectors = embedded.join(
            picked.select("doc_id", *(["label"] if label_col else [])), "doc_id"
        )
    pdf = vectors.orderBy("doc_id").toPandas()  # bounded by sample_size
    if len(pdf) < 2 * max(codebook.levels):
        raise InvalidInputError(f"only {len(pdf)} documents could be sampled for evaluation")
    x = np.asarray(np.stack(pdf["embedding"].to_numpy()), dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    z = codebook.lst.transform(x)
    ours, _ = codebook.assign(x)
    truth = pdf["label"].to_numpy() if label_col else None
    levels: list[dict[str, Any]] = []
    for level in range(1, len(codebook.levels) + 1):
        sizes = codebook.levels[:level]
        prefix = np.zeros(len(z), dtype=np.int64)
        for k, size in enumerate(sizes):
            prefix = prefix * size + ours[:, k]
        cells = math.prod(sizes)
        k_base = int(min(cells, len(z) // 4))
        assignments = {"hermes": prefix}
        assignments["kmeans"] = KMeans(n_clusters=k_base, n_init=1, random_state=seed).fit_predict(
            z
        )
        assignments["bisecting_kmeans"] = BisectingKMeans(
            n_clusters=k_base, random_state=seed
        ).fit_predict(z)
        row: dict[str, Any] = {"level": level, "cells": cells, "baseline_k": k_base}
        for name, assigned in assignments.items():
            row[name] = {
                "relative_mse": relative_mse(z, assigned),
                "cells_used": len(np.unique(assigned)),
            }
            if truth is not None:
                row[name]["nmi"] = float(normalized_mutual_info_score(truth, assigned))
                row[name]["ari"] = float(adjusted_rand_score(truth, assigned))
        levels.append(row)
    return {
        "codebook_version": chosen,
        "sample_size": len(z),
        "label_col": label_col,
        "levels": levels,
    }
