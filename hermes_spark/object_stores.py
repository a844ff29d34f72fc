"""Give the driver's small-file I/O the object-store settings of the Spark session.

Driver only. Spark reads and writes ``s3a://`` through hadoop-aws with the session's
``spark.hadoop.fs.s3a.*`` settings; hermes' own small files (codebook artifact, reports,
plans) go through :mod:`hermes_spark.io` (pyarrow). This copies those settings from the
session (classic or Spark Connect: ``spark.conf`` only) so one set serves both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

from hermes_spark import io

log = logging.getLogger(__name__)

#: The Spark settings :func:`hermes_spark.io.configure_from_spark` understands.
S3A_KEYS = (
    "spark.hadoop.fs.s3a.endpoint",
    "spark.hadoop.fs.s3a.endpoint.region",
    "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.secret.key",
    "spark.hadoop.fs.s3a.session.token",
    "spark.hadoop.fs.s3a.path.style.access",
    "spark.hadoop.fs.s3a.connection.ssl.enabled",
)


def session_settings(spark: SparkSession, keys: Sequence[str] = S3A_KEYS) -> dict[str, str]:

    """The subset of ``keys`` the session has set (unreadable or unset keys are skipped)."""
    found: dict[str, str] = {}
    for key in keys:
        with contextlib.suppress(Exception):
            value = spark.conf.get(key, None)
            if value:
                found[key] = value
    return found


def configure_from_session(spark: SparkSession) -> None:
    """Mirror the session's ``fs.s3a.*`` settings into :mod:`hermes_spark.io`."""
    settings = session_settings(spark)
    if settings:
        log.info("object store settings from the Spark session: %s", ", ".join(sorted(settings)))
        io.configure_from_spark(settings)
