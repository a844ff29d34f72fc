"""Airflow DAG: nightly incremental HERMES annotation, then statistics.

Retries are safe: ``hermes annotate`` resumes from the last committed chunk.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

COMMON = ["--config", "conf/default.yaml"]

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
        application="jobs/annotate.py",
        py_files="dist/hermes_spark.zip",
        application_args=[
            *COMMON,
            "--input",
            "s3a://corpora/web/",
            "--codebook",
            "s3a://hermes/codebook",
            "--table",
            "s3a://hermes/codes",
            "--mode",
            "incremental",
        ],
    )
    stats = SparkSubmitOperator(
        task_id="stats",
        application="jobs/stats.py",
        application_args=[*COMMON, "--table", "s3a://hermes/codes", "--out", "s3a://hermes/stats"],
    )
    annotate >> stats
