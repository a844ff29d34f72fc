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

#: Spark settings of a session hermes builds itself (an attached session is left as is).
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


def configured_master() -> str | None:
    """The master spark-submit (or ``spark-defaults.conf``/``PYSPARK_SUBMIT_ARGS``) set, if any.

    Read from a fresh ``SparkConf`` (which loads the ``spark.*`` JVM properties that
    spark-submit passes), so a builder option never overrides the user's ``--master``.
    """
    from pyspark import SparkConf

    conf = SparkConf()
    return conf.get("spark.master") if conf.contains("spark.master") else None


def get_spark(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    app_name: str = "hermes-spark",
    *,
    remote: str | None = None,
) -> SparkSession:
    """The session to run on: Spark Connect, the active session, or a new local one.

    - ``remote`` (or ``SPARK_REMOTE``): a Spark Connect session (``sc://host:port``).
    - An active session (spark-submit, a Databricks notebook) is reused as is: none of
      its settings are changed (hermes sets what it needs per query).
    - Otherwise a session is built; ``master`` (default ``local[*]``) applies only when
      no master is configured already, so ``spark-submit --master ...`` always wins.
    """
    remote = remote or os.environ.get("SPARK_REMOTE")
    if remote:
        spark = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
        log.info("attached to Spark Connect %s (Spark %s)", remote, spark.version)
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    python = sys.executable
    os.environ.setdefault("PYSPARK_PYTHON", python)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", python)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    submitted = configured_master()
    builder = SparkSession.builder.appName(app_name)
    if submitted is None:
        builder = builder.master(master or "local[*]")
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
