"""hermes-spark: HERMES multi-granularity semantic codes for pre-training corpora on Spark.

The public API (DataFrames in, DataFrames out)::

    from hermes_spark import HermesEstimator, HermesModel, bucket_stats, plan_mixture
    from hermes_spark import sample, materialize

Names are resolved on first use, so executors importing ``hermes_spark.embedding`` or
``hermes_spark.quantize`` never load the driver-side API (or Spark SQL) with it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "HermesEstimator": "hermes_spark.api",
    "HermesModel": "hermes_spark.api",
    "RunOptions": "hermes_spark.embedding.settings",
    "QuantizerOptions": "hermes_spark.quantize.options",
    "bucket_stats": "hermes_spark.stats",
    "plan_mixture": "hermes_spark.sampling.planner",
    "sample": "hermes_spark.sampling.select",
    "materialize": "hermes_spark.sampling.materialize",
    "target_weights": "hermes_spark.sampling.target",
    "target_centroids": "hermes_spark.sampling.similarity",
    "with_target_similarity": "hermes_spark.sampling.similarity",
    "VectorSource": "hermes_spark.sampling.similarity",
    "crosswalk": "hermes_spark.sampling.crosswalk",
    "crosswalk_summary": "hermes_spark.sampling.crosswalk",
    "build_report": "hermes_spark.tasks.report",
    "explore": "hermes_spark.tasks.explore",
    "bucket_cards": "hermes_spark.cards",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hermes_spark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
