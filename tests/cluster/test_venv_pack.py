"""Executors that run only a ``venv-pack`` archive's Python, shipped as Spark documents it.

A small venv (stdlib plus one marker module, built at fixture time, nothing downloaded) is
packed with ``venv-pack`` and shipped by ``spark-submit --master local-cluster[2,1,1024]
--conf spark.archives=ENV.tar.gz#environment --conf spark.pyspark.python=
./environment/bin/python`` — the settings conf/scheduling/airflow_dag.py gives its tasks.
A probe job shows, in every executor, that ``sys.prefix`` is the unpacked archive inside
the executor's work folder, that the marker module comes from it, and that the project
venv's packages (numpy) are not importable there. The driver keeps this venv's Python
(``spark.pyspark.driver.python``), as a client-mode Airflow worker does.

Limit: the packed venv links to this machine's base interpreter (venv-pack's documented
requirement that nodes have the same base Python at the same path), and it holds no
hermes dependencies: packing the full runtime (torch, onnxruntime: GBs) is ``make
env-pack``'s job, not a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.servers import spark_env, spark_home

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

PROBE = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession

    def probe(_):
        import importlib.util, os, sys
        import hermes_env_marker
        yield {"prefix": sys.prefix, "cwd": os.getcwd(), "marker": hermes_env_marker.__file__,
               "numpy": importlib.util.find_spec("numpy") is not None}

    spark = SparkSession.builder.getOrCreate()
    rows = spark.sparkContext.parallelize(range(4), 4).mapPartitions(probe).collect()
    print("RESULT " + json.dumps({"rows": rows, "driver": sys.prefix}))
    spark.stop()
    """
)


@pytest.fixture(scope="module")
def packed_env(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("venv-pack")
    venv = tmp / "exec-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "hermes_env_marker.py").write_text('"""Only in the packed executor venv."""\n')
    out = tmp / "hermes_env.tar.gz"
    venv_pack = Path(sys.executable).parent / "venv-pack"
    subprocess.run([str(venv_pack), "-p", str(venv), "-o", str(out), "-q"], check=True)
    return out


def test_executors_run_only_the_packed_python(tmp_path, packed_env):
    driver = tmp_path / "probe.py"
    driver.write_text(PROBE)
    env = spark_env(spark_home(tmp_path))
    env.pop("PYSPARK_PYTHON")
    env.pop("PYSPARK_DRIVER_PYTHON")
    submit = Path(sys.executable).parent / "spark-submit"
    done = subprocess.run(
        [str(submit), "--master", "local-cluster[2,1,1024]",
         "--conf", f"spark.archives={packed_env}#environment",
         "--conf", "spark.pyspark.python=./environment/bin/python",
         "--conf", f"spark.pyspark.driver.python={sys.executable}",
         "--conf", "spark.ui.enabled=false", str(driver)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert "RESULT " in done.stdout, done.stderr[-6000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["driver"] == sys.prefix
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        prefix = Path(row["prefix"])
        assert prefix == Path(row["cwd"]) / "environment", row
        assert Path(row["marker"]).is_relative_to(prefix), row
        assert not row["numpy"], "executor saw the project venv's packages"
    assert os.path.isfile(packed_env)
