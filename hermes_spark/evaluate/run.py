"""``hermes evaluate``: codes of one version vs KMeans-family baselines on held-out documents.

Driver orchestration. Spark draws two bounded id samples from the codes table
(:mod:`hermes_spark.evaluate.sample`), joins only those ids to the corpus, and gets their
vectors (an embeddings table, the corpus' ``--embedding-col``, or the artifact's model on
executors). Everything after that is numpy on the driver
(:func:`hermes_spark.quantize.scoring.score_codebook`): at most ``sample_size +
baseline_sample`` vectors ever reach it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.artifacts import load_codebook
from hermes_spark.config import HermesConfig
from hermes_spark.corpus import check_columns, doc_id_column, read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.evaluate.report import goals, to_markdown
from hermes_spark.evaluate.sample import SampleSplit, dedupe_joined, split_samples
from hermes_spark.object_stores import storage_of
from hermes_spark.quantize.codebook import Codebook, fit_codebook
from hermes_spark.quantize.options import QuantizerOptions
from hermes_spark.quantize.scoring import BASELINES, score_codebook
from hermes_spark.report.tables import EvaluationReport
from hermes_spark.schema import select_version

__all__ = ["REPORT_JSON", "REPORT_MD", "evaluate", "write_report"]

log = logging.getLogger(__name__)

REPORT_JSON = "evaluation.json"
REPORT_MD = "evaluation.md"
#: Documents per partition when the model embeds the samples on executors.
_DOCS_PER_PARTITION = 256


def _decode_f16(blob: bytes | bytearray | memoryview) -> np.ndarray:
    """``embedding_f16``: little-endian float16 bytes of the unit model-space vector."""
    return np.frombuffer(bytes(blob), dtype="<f2").astype(np.float32)


def _vectors(
    spark: SparkSession,
    store: DeltaStore,
    cfg: HermesConfig,
    codebook: Codebook,
    joined: DataFrame,
    n: int,
    embeddings_table: str | None,
) -> tuple[pd.DataFrame, str]:
    """``doc_id, embedding, label columns`` of the joined sample rows, on the driver."""
    labels = [c for c in joined.columns if c.startswith("label__")]
    if embeddings_table:
        if not store.exists(embeddings_table):
            raise InvalidInputError(f"embeddings table {embeddings_table} does not exist")
        emb = store.read(embeddings_table)
        missing = {"doc_id", "codebook_version", "embedding_f16"} - set(emb.columns)
        if missing:
            raise InvalidInputError(
                f"embeddings table {embeddings_table} lacks column(s) {', '.join(sorted(missing))}"
            )
        emb = emb.where(F.col("codebook_version") == codebook.version).select(
            "doc_id", "embedding_f16"
        )
        ids = joined.select("doc_id", *labels)
        pdf: pd.DataFrame = emb.join(F.broadcast(ids), "doc_id").orderBy("doc_id").toPandas()
        pdf["embedding"] = [_decode_f16(b) for b in pdf.pop("embedding_f16")]
        return pdf, f"embeddings table {embeddings_table} (float16)"
    if cfg.corpus.embedding_col:
        pdf = joined.select("doc_id", "embedding", *labels).orderBy("doc_id").toPandas()
        return pdf, f"corpus column {cfg.corpus.embedding_col}"
    from hermes_spark.embedding.settings import settings_for_annotate
    from udfs.annotate_udf import embed_schema, make_embed_fn

    settings = settings_for_annotate(codebook.model, cfg.model)  # the artifact's backend
    parts = max(1, min(200, n // _DOCS_PER_PARTITION + 1))
    embedded = (
        joined.select("doc_id", "text")
        .repartition(parts, "doc_id")
        .mapInPandas(make_embed_fn(settings), embed_schema())
    )
    pdf = embedded.join(joined.select("doc_id", *labels), "doc_id").orderBy("doc_id").toPandas()
    return pdf, f"re-embedded with {codebook.model['name']} (the artifact's model)"


def _matrix(pdf: pd.DataFrame, dim: int, what: str) -> np.ndarray:
    if pdf.empty:
        raise InvalidInputError(f"the {what} sample is empty: no vectors could be found")
    x = np.asarray(np.stack(pdf["embedding"].to_numpy()), dtype=np.float32)
    if x.shape[1] != dim:
        raise InvalidInputError(f"{what} vectors have dimension {x.shape[1]}, expected {dim}")
    ok = np.isfinite(x).all(axis=1)
    if not ok.all():
        log.warning("dropping %d %s vectors with NaN/inf", int((~ok).sum()), what)
    x = x[ok]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _docs(
    spark: SparkSession,
    store: DeltaStore,
    cfg: HermesConfig,
    codebook: Codebook,
    label_cols: Sequence[str],
) -> DataFrame:
    corpus = cfg.corpus
    raw = read_corpus(spark, corpus, store=store)
    check_columns(raw.schema, corpus, embedding_dim=codebook.dim)
    missing = [c for c in label_cols if c not in raw.columns]
    if missing:
        raise InvalidInputError(f"label column(s) {', '.join(missing)} not in the corpus")
    return raw.select(
        doc_id_column(raw.schema, corpus).alias("doc_id"),
        F.col(corpus.text_col).alias("text"),
        *([F.col(corpus.embedding_col).alias("embedding")] if corpus.embedding_col else []),
        *[
            F.coalesce(F.col(c).cast("string"), F.lit("<null>")).alias(f"label__{c}")
            for c in label_cols
        ],
    )


def _timing_refit(codebook: Codebook, fit_x: np.ndarray) -> float | None:
    """Seconds to fit this codebook's LST + RVQ (same options) on the fitting-side sample."""
    if fit_x.shape[0] < max(codebook.levels):
        return None
    opts = QuantizerOptions.from_params(codebook.quantizer or {})
    t0 = time.perf_counter()
    fit_codebook(
        fit_x,
        codebook.levels,
        seed=int(codebook.fit.get("seed", 0)),
        lst_dim=codebook.lst.out_dim if codebook.lst.kind != "none" else None,
        model=codebook.model,
        n_iter=int(codebook.fit.get("n_iter", 20)),
        options=opts,
    )
    return time.perf_counter() - t0


def _sample_vectors(
    spark: SparkSession,
    store: DeltaStore,
    cfg: HermesConfig,
    codebook: Codebook,
    docs: DataFrame,
    split: SampleSplit,
    sizes: tuple[int, int],
    embeddings_table: str | None,
    with_fitting: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Held-out and fitting-side vectors (driver pandas; the fitting side empty without
    baselines) and where they came from. ``sizes``: the two samples' requested sizes."""
    held_pdf, source = _vectors(
        spark, store, cfg, codebook, dedupe_joined(docs, split.held_out), sizes[0], embeddings_table
    )
    if not with_fitting:
        return held_pdf, pd.DataFrame({"embedding": []}), source
    fit_pdf, _ = _vectors(
        spark, store, cfg, codebook, dedupe_joined(docs, split.fitting), sizes[1], embeddings_table
    )
    return held_pdf, fit_pdf, source


def _split(
    codes: DataFrame, codebook: Codebook, seed: int, sizes: tuple[int, int], in_sample: bool
) -> SampleSplit:
    """The held-out and fitting-side id samples (``sizes``), away from the fit sample."""
    return split_samples(
        codes,
        fit_seed=int(codebook.fit.get("seed", 0)),
        fit_size=int(codebook.fit.get("sample_size") or 0),
        seed=seed,
        n=sizes[0],
        n_fit=sizes[1],
        recorded_threshold=codebook.fit.get("sample_u_max"),
        in_sample=in_sample,
    )


def evaluate(
    spark: SparkSession,
    cfg: HermesConfig,
    table: str,
    codebook_path: str,
    label_cols: Sequence[str] = (),
    sample_size: int = 2000,
    seed: int = 0,
    version: str | None = None,
    *,
    embeddings_table: str | None = None,
    baseline_sample: int | None = None,
    baselines: Sequence[str] = BASELINES,
    in_sample: bool = False,
    store: DeltaStore | None = None,
) -> dict[str, Any]:
    """Per-level metrics of the table's codes and of the baselines, on held-out documents.

    ``label_cols`` (corpus columns) add NMI/ARI/homogeneity/completeness. The held-out
    sample (``sample_size``) is disjoint from the fit sample unless ``in_sample``; the
    baselines are fitted on ``baseline_sample`` (default ``sample_size``) fitting-side
    documents. Returns the JSON-able report (see docs/quality.md for every field).
    ``store`` defaults to the session's store.
    """
    store = store or get_store(spark)
    if isinstance(label_cols, str):
        label_cols = [c.strip() for c in label_cols.split(",") if c.strip()]
    if sample_size < 2:
        raise InvalidInputError(f"must be at least 2, got {sample_size}", param="sample_size")
    n_fit = int(baseline_sample or sample_size)
    codebook = load_codebook(codebook_path, storage=storage_of(spark))
    codes, chosen = select_version(store, table, version)
    if chosen != codebook.version:
        raise InvalidInputError(
            f"codebook {codebook_path} is version {codebook.version} but the table's rows "
            f"are version {chosen}: pass the matching artifact, or pick the version to evaluate"
        )
    split = _split(codes, codebook, seed, (sample_size, n_fit), in_sample)
    docs = _docs(spark, store, cfg, codebook, label_cols)
    held_pdf, fit_pdf, source = _sample_vectors(
        spark,
        store,
        cfg,
        codebook,
        docs,
        split,
        (sample_size, n_fit),
        embeddings_table,
        bool(baselines),
    )
    eval_x = _matrix(held_pdf, codebook.dim, "held-out")
    if eval_x.shape[0] < 2:
        raise InvalidInputError(f"only {eval_x.shape[0]} held-out documents could be sampled")
    fit_x = _matrix(fit_pdf, codebook.dim, "fitting-side") if baselines else None
    keep = np.isfinite(np.stack(held_pdf["embedding"].to_numpy())).all(axis=1)
    labels = {c: held_pdf[f"label__{c}"].to_numpy()[keep] for c in label_cols}
    scored = score_codebook(codebook, fit_x, eval_x, labels, seed=seed, baselines=baselines)
    methods = scored["methods"]
    refit = _timing_refit(codebook, fit_x) if fit_x is not None else None
    for row in methods:
        if row["method"] == "hermes" and refit is not None:
            row["fit_seconds"] = refit  # same rows as the baselines: a fair time ratio
    report = {
        "codebook_version": chosen,
        "table": table,
        "levels": list(codebook.levels),
        "quantizer": codebook.quantizer,
        "lst": codebook.lst.params(),
        "label_cols": list(label_cols),
        "sampling": split.info,
        "vectors": source,
        "eval_rows": scored["eval_rows"],
        "baseline_fit_rows": scored["baseline_fit_rows"],
        "methods": methods,
        "goals": goals(methods, list(label_cols)),
        # kept for readers of the first report format: sample_size = held-out rows
        "sample_size": scored["eval_rows"],
    }
    return EvaluationReport(report)


def write_report(
    report: dict[str, Any], out_dir: str, *, storage: io.Storage | None = None
) -> tuple[str, str]:
    """Write ``evaluation.json`` and ``evaluation.md`` into ``out_dir``; return both paths."""
    js, md = io.join(out_dir, REPORT_JSON), io.join(out_dir, REPORT_MD)
    io.write_text(js, json.dumps(report, indent=2, default=float) + "\n", storage=storage)
    io.write_text(md, to_markdown(report), storage=storage)
    return js, md
