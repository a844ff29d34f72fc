"""Airflow DAG: nightly incremental HERMES annotation, then statistics and clustering
(``hermes optimize``), with spark-submit.

Retries are safe: ``hermes annotate`` resumes from the last committed chunk. HERMES_HOME is
where the repository (``jobs/``) and ``make dist``'s ``dist/hermes_spark.zip`` are on the
Airflow worker; the Spark connection (``spark_default``) names the cluster's master.
Every task ships what the executors need: the Delta and S3A jars ``make setup`` fetched
and checksummed into ``build/jars`` (conf/jars.lock; nothing resolves at run time), the
Delta session settings, and the executors' Python as a ``venv-pack`` archive
(``make env-pack`` writes ``dist/hermes_env.tar.gz``) unpacked by ``spark.archives`` and
used through ``spark.pyspark.python``, as Spark's Python package management page shows.
S3A credentials come from the nodes' instance profile or the connection's extras.
tests/unit/test_scheduling.py parses every task's arguments with the CLI, and
tests/spark/test_s3.py runs exactly these arguments against an S3 server.
"""

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

HERMES_HOME = os.environ.get("HERMES_HOME", "/opt/hermes-spark")
PY_FILES = f"{HERMES_HOME}/dist/hermes_spark.zip"
COMMON = ["--config", "web-scale"]
CORPUS = "s3a://corpora/web/"
CODEBOOK = "s3a://hermes/codebook"
CODES = "s3a://hermes/codes"
STATS = "s3a://hermes/stats"
JARS = ",".join(
    f"{HERMES_HOME}/build/jars/{jar}"
    for jar in (
        "delta-spark_4.2_2.13-4.4.0.jar",
        "delta-storage-4.4.0.jar",
        "hadoop-aws-3.5.0.jar",
        "bundle-2.35.4.jar",
        "analyticsaccelerator-s3-1.3.1.jar",
        "wildfly-openssl-2.2.5.Final.jar",
    )
)
CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    "spark.archives": f"{HERMES_HOME}/dist/hermes_env.tar.gz#environment",
    "spark.pyspark.python": "./environment/bin/python",
    "spark.pyspark.driver.python": f"{HERMES_HOME}/.venv/bin/python",  # client mode
    "spark.executorEnv.HF_HUB_OFFLINE": "1",
    "spark.executorEnv.TOKENIZERS_PARALLELISM": "false",
}
SUBMIT = {"py_files": PY_FILES, "jars": JARS, "conf": CONF}

with DAG(
    dag_id="hermes_nightly_annotate",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    annotate = SparkSubmitOperator(
        task_id="annotate",
        application=f"{HERMES_HOME}/jobs/annotate.py",
        **SUBMIT,
        application_args=[
            *COMMON,
            "--input",
            CORPUS,
            "--codebook",
            CODEBOOK,
            "--table",
            CODES,
            "--mode",
            "incremental",
        ],
    )
    stats = SparkSubmitOperator(
        task_id="stats",
        application=f"{HERMES_HOME}/jobs/stats.py",
        **SUBMIT,
        application_args=[*COMMON, "--table", CODES, "--out", STATS, "--codebook", CODEBOOK],
    )
    optimize = SparkSubmitOperator(
        task_id="optimize",
        application=f"{HERMES_HOME}/jobs/optimize.py",
        **SUBMIT,
        application_args=[*COMMON, "--table", CODES],
    )
    annotate >> [stats, optimize]
