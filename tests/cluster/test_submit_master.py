"""``spark-submit --master local-cluster[2,1,1024] jobs/fit.py``: the master is the one given.

Run exactly as a user runs a job: ``$SPARK_HOME/bin/spark-submit`` with ``SPARK_HOME`` the
pip pyspark package (a tree of symlinks to it, so the executors' ``work/`` lands in the temp
directory, not the venv), ``PYSPARK_PYTHON`` the venv's interpreter and ``PYTHONPATH`` the
checkout. Spark's own event log then tells which master the application ran on and which
executors ran its tasks — a job that silently fell back to ``local[*]`` runs every task on
the ``driver``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from tests.helpers import write_embedded_corpus

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
MASTER = "local-cluster[2,1,1024]"


def _spark_home(tmp: Path) -> Path:
    home = tmp / "spark-home"
    home.mkdir()
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    return home


def _events(log_dir: Path) -> list[dict]:
    files = [p for p in log_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 1, files  # one application, one plain event log
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def test_spark_submit_master_is_used(tmp_path: Path) -> None:
    corpus = write_embedded_corpus(tmp_path / "corpus", n=400, dim=16, files=4)
    events = tmp_path / "events"
    events.mkdir()
    home = _spark_home(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.update(
        SPARK_HOME=str(home),
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    command = [
        str(home / "bin" / "spark-submit"),
        "--master",
        MASTER,
        "--conf",
        "spark.eventLog.enabled=true",
        "--conf",
        f"spark.eventLog.dir=file://{events}",
        "--conf",
        "spark.eventLog.compress=false",  # plain JSON lines, one file
        "--conf",
        "spark.eventLog.rolling.enabled=false",
        # Start tasks only once both executors registered, as a cluster user would ask.
        "--conf",
        "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf",
        "spark.scheduler.maxRegisteredResourcesWaitingTime=180s",
        str(REPO / "jobs" / "fit.py"),
        "--input",
        str(corpus),
        "--embedding-col",
        "emb",
        "--tokens-col",
        "tokens",
        "--levels",
        "4,3",
        "--sample-size",
        "300",
        "--out",
        str(tmp_path / "codebook"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert (tmp_path / "codebook" / "metadata.json").is_file()

    log = _events(events)
    props = next(e for e in log if e["Event"] == "SparkListenerEnvironmentUpdate")
    spark_props = dict(props["Spark Properties"])
    assert spark_props["spark.master"] == MASTER
    executors = {e["Task Info"]["Executor ID"] for e in log if e["Event"] == "SparkListenerTaskEnd"}
    assert "driver" not in executors
    assert len(executors) == 2, executors
    added = {e["Executor ID"] for e in log if e["Event"] == "SparkListenerExecutorAdded"}
    assert executors <= added
