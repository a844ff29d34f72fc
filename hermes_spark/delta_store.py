"""Compatibility alias of :mod:`hermes_spark.delta` (import from there in new code)."""

from hermes_spark.delta import *  # noqa: F403
from hermes_spark.delta import __all__  # noqa: F401
from hermes_spark.delta.embedded import EmbeddedDeltaStore  # noqa: F401
from hermes_spark.delta.native import NativeDeltaStore  # noqa: F401
