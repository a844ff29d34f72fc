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
from hermes_spark.object_stores import storage_of
from hermes_spark.quantize.codebook import Codebook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` produced: the codebook, where it is, and its fit report."""

    codebook: Codebook
    path: str
    report: dict[str, Any]


def estimator_for(cfg: HermesConfig) -> HermesEstimator:
    """The estimator a config describes (:meth:`HermesEstimator.from_config`)."""
    return HermesEstimator.from_config(cfg)


def fit(spark: SparkSession, cfg: HermesConfig, out: str) -> FitResult:
    """Fit a codebook on a sample of ``cfg.corpus`` and save the artifact to ``out``."""
    files = list_input_files(cfg.corpus, spark)
    raw = read_corpus(spark, cfg.corpus, files.paths)
    require_rows(raw, cfg.corpus)
    model: HermesModel = estimator_for(cfg).fit(raw)
    model.save(out, storage=storage_of(spark))
    return FitResult(codebook=model.codebook, path=out, report=dict(model.fit_report or {}))
