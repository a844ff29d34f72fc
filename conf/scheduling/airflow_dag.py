"""Airflow DAG: nightly incremental HERMES annotation, then statistics, with spark-submit.

Retries are safe: ``hermes annotate`` resumes from the last committed chunk. HERMES_HOME is
where the repository (``jobs/``) and ``make dist``'s ``dist/hermes_spark.zip`` are on the
Airflow worker; the Spark connection (``spark_default``) names the cluster's master.
tests/unit/test_scheduling.py parses every task's arguments with the CLI, and
tests/spark/test_s3.py runs exactly these arguments against an S3 server.
"""

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

HERMES_HOME = os.environ.get("HERMES_HOME", "/opt/hermes-spark")
PY_FILES = f"{HERMES_HOME}/dist/hermes_spark.zip"
COMMON = ["--config", "default"]
CORPUS = "s3a://corpora/web/"
CODEBOOK = "s3a://hermes/codebook"
CODES = "s3a://hermes/codes"
STATS = "s3a://hermes/stats"

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
        py_files=PY_FILES,
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
        py_files=PY_FILES,
        application_args=[*COMMON, "--table", CODES, "--out", STATS, "--codebook", CODEBOOK],
    )
    annotate >> stats
