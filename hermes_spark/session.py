"""SparkSession: attach to the active one (spark-submit, Databricks) or build a local one.

Runs on the driver only. The local conf mirrors what production needs from the Python
side (Arrow on, Python worker reuse on so a loaded model is reused by later tasks) so
tests exercise the real path.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Spark settings every hermes session needs, local or attached.
BASE_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "4096",
    "spark.python.worker.reuse": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
}

#: Extra settings for a session hermes builds itself (not applied to attached sessions).
LOCAL_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/derby",
}


def get_spark(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    app_name: str = "hermes-spark",
) -> SparkSession:
    """Return the active SparkSession, or build a local one with ``master`` (``local[*]``).

    An active session (spark-submit, Databricks notebook) is reused as is: only the
    runtime-modifiable SQL settings of ``BASE_CONF`` are applied to it.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in BASE_CONF.items():
            if key.startswith("spark.sql."):
                active.conf.set(key, value)
        return active
    python = sys.executable
    os.environ.setdefault("PYSPARK_PYTHON", python)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", python)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in {**LOCAL_CONF, **BASE_CONF, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("started Spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark


def native_delta_available(spark: SparkSession) -> bool:
    """True when the Delta Lake Spark extension is configured and its classes load."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "DeltaSparkSessionExtension" not in extensions:
        return False
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
    except Exception:
        return False
    return True
