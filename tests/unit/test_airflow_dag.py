"""The shipped Airflow DAG loads in real Airflow: a ``DagBag`` import in its own venv,
created once from ``requirements-airflow.lock`` (pinned, ``--no-deps``: no resolver run)
under ``build/venv-airflow`` and reused while the lock is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements-airflow.lock"
VENV = REPO / "build" / "venv-airflow"
DAG = REPO / "conf" / "scheduling" / "airflow_dag.py"

_LOAD = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d: {"tasks": sorted(t.task_id for t in dag.tasks),
                 "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
                 "schedule": str(getattr(dag, "schedule", None)),
                 "retries": dag.default_args.get("retries")}
             for d, dag in bag.dags.items()},
}))
"""


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """Python of a venv holding exactly the pinned Airflow (built once per lock)."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    stamp = VENV / ".lock-sha256"
    python = VENV / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == digest and python.exists()):
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", "--without-pip", str(VENV)],
            check=True,
            timeout=120,
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
             "--no-deps", "-r", str(LOCK)],
            check=True,
            timeout=900,
        )  # fmt: skip
        stamp.write_text(digest)
    return python


def test_the_shipped_dag_loads_in_real_airflow(airflow_python, tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "HERMES_HOME": "/opt/hermes-spark"}
    done = subprocess.run(
        [str(airflow_python), "-c", _LOAD, str(DAG)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    dag = bag["dags"]["hermes_nightly_annotate"]
    assert dag["tasks"] == ["annotate", "optimize", "stats"]
    assert dag["upstream"]["stats"] == ["annotate"]  # statistics only after annotation
    assert dag["upstream"]["optimize"] == ["annotate"]  # clustering the files annotate wrote
    assert dag["retries"] == 2
    assert "0 2 * * *" in dag["schedule"]


def test_the_airflow_lock_pins_airflow_and_the_spark_provider():
    pins = dict(line.split("==") for line in LOCK.read_text().splitlines() if "==" in line)
    assert pins["apache-airflow"].startswith("3.")
    assert "apache-airflow-providers-apache-spark" in pins
    assert "pyspark" not in pins  # the operator only runs spark-submit
