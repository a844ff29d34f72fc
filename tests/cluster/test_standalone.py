"""``spark-submit --master spark://…`` on a real standalone cluster: fit → annotate → stats.

A Spark standalone master and two one-core workers run from the project's own pyspark
(``spark-class …deploy.master.Master`` / ``…deploy.worker.Worker``, SPARK_HOME = a symlink
copy of the pyspark package) on 127.0.0.1. The project is shipped as a user ships it:
``scripts/build_dist.py`` (``make dist``) builds the wheel and ``dist/hermes_spark.zip``,
and every job is ``spark-submit --master spark://127.0.0.1:PORT --py-files
hermes_spark.zip jobs/<cmd>.py …`` exactly as docs/deploy.md shows. The driver and the
executors' Python run this venv's interpreter with the checkout's editable install hidden,
so hermes_spark can only come from the shipped zip. The codes must equal a local run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from tests.helpers import run_cli, write_embedded_corpus
from tests.servers import spark_env, standalone_cluster

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
CORPUS_FLAGS = ["--embedding-col", "emb", "--tokens-col", "tokens", "--quality-col", "quality"]

_SITECUSTOMIZE = '''\
"""Driver/executor Python of the standalone test: the checkout's editable install is hidden."""
import os
import sys

sys.meta_path[:] = [f for f in sys.meta_path
                    if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path
               if not any(os.path.exists(os.path.join(p or ".", name, "__init__.py"))
                          for name in ("hermes_spark", "udfs"))]
'''


def _isolated_python(tmp: Path) -> Path:
    hide = tmp / "hide-checkout"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    wrapper = tmp / "python-isolated"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{hide}${{PYTHONPATH:+:$PYTHONPATH}}" exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def _codes(table: Path) -> pd.DataFrame:
    df = DeltaTable(str(table)).to_pandas()[["doc_id", "c1", "c2", "c3", "codebook_version"]]
    return df.sort_values("doc_id").reset_index(drop=True)


def test_spark_submit_on_standalone_cluster_gives_the_local_codes(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=600, dim=16, files=4)
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_dist.py"), str(dist)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    pyfiles = dist / "hermes_spark.zip"
    assert pyfiles.is_file()
    python = _isolated_python(tmp_path)
    out = tmp_path / "cluster"
    book, codes, stats = out / "codebook", out / "codes", out / "stats"
    out.mkdir()

    jobs = {
        "fit": ["--input", str(corpus), *CORPUS_FLAGS, "--out", str(book), "--levels", "4,3,2",
                "--sample-size", "300", "--seed", "3"],
        "annotate": ["--input", str(corpus), *CORPUS_FLAGS, "--codebook", str(book),
                     "--table", str(codes)],
        "stats": ["--table", str(codes), "--out", str(stats), "--codebook", str(book)],
    }  # fmt: skip
    with standalone_cluster(tmp_path) as cluster:
        env = spark_env(cluster.home, PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
        submit = [
            str(cluster.home / "bin" / "spark-submit"),
            "--master", cluster.url,
            "--py-files", str(pyfiles),
            "--driver-memory", "1g",
            "--executor-memory", "768m",
            "--total-executor-cores", "2",
            "--conf", "spark.sql.shuffle.partitions=4",
        ]  # fmt: skip
        for name, args in jobs.items():
            done = subprocess.run(
                [*submit, str(REPO / "jobs" / f"{name}.py"), *args],
                capture_output=True, text=True, timeout=600, env=env, cwd=out,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"{name}: {done.stderr[-6000:]}\n{done.stdout[-2000:]}\n{cluster.log_tails()}"
            )
            # The session the job built is the cluster's, not a local one in the driver
            # (hermes logs the master of the session it gets; stdout or stderr by handler).
            logged = done.stdout + done.stderr
            assert f"master={cluster.url}" in logged, (name, logged[-3000:])
        state = cluster.state()
    apps = state["completedapps"]
    assert len(apps) == len(jobs), apps
    for app in apps:  # each job had an executor on each of the two workers
        ran = [w for w in cluster.work_dirs if (w / app["id"]).is_dir()]
        assert len(ran) == 2, (app["id"], [sorted(os.listdir(w)) for w in cluster.work_dirs])

    # The same commands in local mode (the test session, local[2]): same codebook, same codes.
    local = tmp_path / "local"
    for name, args in jobs.items():
        args = [str(local / Path(a).name) if a.startswith(str(out)) else a for a in args]
        code, _, err = run_cli(capsys, name, *args)
        assert code == 0, err
    cluster_codes, local_codes = _codes(codes), _codes(local / "codes")
    assert len(cluster_codes) == 600 and cluster_codes["doc_id"].is_unique
    assert cluster_codes["codebook_version"].nunique() == 1
    pd.testing.assert_frame_equal(cluster_codes, local_codes)
    assert cluster_codes[["c1", "c2", "c3"]].drop_duplicates().shape[0] > 4  # not degenerate
