"""hermes-spark: HERMES multi-granularity semantic codes for pre-training corpora on Spark."""

__version__ = "0.1.0"
