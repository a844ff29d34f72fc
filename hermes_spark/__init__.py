"""hermes-spark: HERMES multi-granularity semantic codes for pre-training corpora on Spark.

The public API (DataFrames in, DataFrames out)::

    from hermes_spark import HermesEstimator, HermesModel, bucket_stats, plan_mixture
    from hermes_spark import sample, materialize
"""

from hermes_spark.api import HermesEstimator, HermesModel

__version__ = "0.1.0"

__all__ = ["HermesEstimator", "HermesModel", "__version__"]
