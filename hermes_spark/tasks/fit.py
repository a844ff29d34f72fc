"""``hermes fit``: read the corpus, fit a :class:`HermesEstimator`, save the artifact.

Driver orchestration over :meth:`HermesEstimator.fit`; only the fitting sample's vectors
reach the driver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from hermes_spark.api import HermesEstimator, HermesModel
from hermes_spark.config import HermesConfig
from hermes_spark.corpus import list_input_files, read_corpus, require_rows
from hermes_spark.quantize.codebook import Codebook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` produced: the codebook, where it is, and its fit report."""

    codebook: Codebook
    path: str
    report: dict[str, Any]


def estimator_for(cfg: HermesConfig) -> HermesEstimator:
    """The estimator a config describes (``corpus``, ``model`` and ``fit`` sections)."""
    c, m, f = cfg.corpus, cfg.model, cfg.fit
    return HermesEstimator(
        levels=f.levels,
        model=m.name,
        max_seq_length=m.max_seq_length,
        lst_dim=f.lst_dim,
        sample_size=f.sample_size,
        seed=f.seed,
        id_col=c.id_col,
        text_col=c.text_col,
        embedding_col=c.embedding_col,
        quality_col=c.quality_col,
        tokens_col=c.tokens_col,
        batch_size=m.batch_size,
        n_iter=f.n_iter,
        device=m.device,
        sort_window=m.sort_window,
        backend=m.backend,
        precision=m.precision,
        batch_tokens=m.batch_tokens,
        tokenizer=m.tokenizer,
        quantizer=f.quantizer_options(),
        init_from=f.init_from,
    )


def fit(spark: SparkSession, cfg: HermesConfig, out: str) -> FitResult:
    """Fit a codebook on a sample of ``cfg.corpus`` and save the artifact to ``out``."""
    files = list_input_files(cfg.corpus, spark)
    raw = read_corpus(spark, cfg.corpus, files.paths)
    require_rows(raw, cfg.corpus)
    model: HermesModel = estimator_for(cfg).fit(raw)
    model.save(out)
    return FitResult(codebook=model.codebook, path=out, report=dict(model.fit_report or {}))
