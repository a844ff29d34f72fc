"""fit → annotate → stats on a real multi-process master: ``local-cluster[2,1,1024]``.

Two executor JVMs (launched by an in-driver standalone Worker) each with their own Python
workers, the library shipped the way ``spark-submit --py-files`` ships it: a zip of
``hermes_spark/`` and ``udfs/`` in ``spark.submit.pyFiles``. The run happens in a separate
process (one SparkContext per process) whose cwd is outside the checkout.

What the import isolation proves, and what it does not: the venv has the project installed
*editable* (a meta-path finder that maps ``hermes_spark``/``udfs`` to the checkout), so any
process of this venv could import the checkout. The driver and every Python worker here run
the venv interpreter through a wrapper whose ``sitecustomize`` removes that finder and any
``sys.path`` directory holding the packages (the checkout); the driver gets the zip on
``PYTHONPATH`` as ``--py-files`` does. A probe job then shows, inside the executors, that
``hermes_spark`` and ``udfs`` were imported from the zip and that no other importer could
find them. It does not prove other hosts would work: all processes share one filesystem and
one venv (numpy, torch, pyarrow, pyspark are not shipped, as on a real cluster where they
are installed on the nodes).

SPARK_HOME: with pip-installed pyspark, ``bin/spark-submit`` sets it to the pyspark package
directory when unset, and the standalone Worker launches executors from
``$SPARK_HOME/jars`` and puts their work directories (logs, fetched files) under
``$SPARK_HOME/work`` — i.e. inside the venv. The test points SPARK_HOME at a temp directory
of symlinks to the pyspark package, so executors start the same way and the work files land
in the temp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pyspark
import pytest
from deltalake import DeltaTable

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.stats import compute_stats
from tests.helpers import write_embedded_corpus

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
LEVELS = (4, 3, 2)
MASTER = "local-cluster[2,1,1024]"

_SITECUSTOMIZE = '''\
"""Executor/driver Python of the cluster test: the checkout's editable install is hidden."""
import os
import sys

sys.meta_path[:] = [f for f in sys.meta_path
                    if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path
               if not any(os.path.exists(os.path.join(p or ".", name, "__init__.py"))
                          for name in ("hermes_spark", "udfs"))]
'''

_WRAPPER = """#!/bin/sh
PYTHONPATH="{hide}${{PYTHONPATH:+:$PYTHONPATH}}" exec {python} "$@"
"""

_CLUSTER_RUN = textwrap.dedent("""
    import json, os, sys, time
    from importlib.machinery import PathFinder

    import hermes_spark
    from hermes_spark.tasks.annotate import annotate
    from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
    from hermes_spark.tasks.fit import fit
    from hermes_spark.session import get_spark
    from hermes_spark.tasks.stats import compute_stats

    a = json.loads(sys.argv[1])
    t = [time.monotonic()]
    spark = get_spark(a["master"], {
        "spark.driver.memory": "1g",
        "spark.executor.memory": "1024m",
        "spark.submit.pyFiles": a["zip"],
        "spark.sql.shuffle.partitions": "4",
    })
    sc = spark.sparkContext
    deadline = time.monotonic() + 120
    while sum(e.port > 0 for e in sc.statusTracker().getExecutorInfos()) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the two executors did not register in 120s")
        time.sleep(0.5)
    t.append(time.monotonic())

    def probe(_):
        import os, sys
        from importlib.machinery import PathFinder
        import hermes_spark, udfs.annotate_udf
        from pyspark import TaskContext
        ppid = os.getppid()  # the worker daemon; its parent is the executor JVM
        jvm = int(open(f"/proc/{ppid}/stat").read().rsplit(")", 1)[1].split()[1])
        cmdline = open(f"/proc/{jvm}/cmdline").read()
        others = [p for p in sys.path if not p.endswith(".zip")]
        yield {
            "hermes_spark": hermes_spark.__file__,
            "udfs": udfs.annotate_udf.__file__,
            "found_without_zip": [n for n in ("hermes_spark", "udfs")
                                  if PathFinder.find_spec(n, others) is not None],
            "editable_finders": sum("__editable__" in getattr(f, "__module__", "")
                                    for f in sys.meta_path),
            "executor_jvm": jvm,
            "is_executor": "CoarseGrainedExecutorBackend" in cmdline,
            "partition": TaskContext.get().partitionId(),
        }

    probes = sc.parallelize(range(8), 8).mapPartitions(probe).collect()
    t.append(time.monotonic())
    cfg = HermesConfig(
        corpus=CorpusConfig(input=a["corpus"], embedding_col="emb", tokens_col="tokens",
                            quality_col="quality", keep_cols=("source",)),
        fit=FitConfig(levels=tuple(a["levels"]), sample_size=300, seed=3, n_iter=10),
    )
    book = fit(spark, cfg, a["codebook"])
    t.append(time.monotonic())
    report = annotate(spark, cfg, a["codebook"], a["table"])
    t.append(time.monotonic())
    stats = compute_stats(spark, a["table"], a["stats"], None, list(a["levels"]))
    t.append(time.monotonic())
    print("RESULT " + json.dumps({
        "master": sc.master,
        "driver_hermes_spark": hermes_spark.__file__,
        "driver_found_without_zip": PathFinder.find_spec(
            "hermes_spark", [p for p in sys.path if not p.endswith(".zip")]) is not None,
        "probes": probes,
        "version": book.codebook.version,
        "table_rows": report.table_rows,
        "levels_table": stats.levels_table,
        "seconds": dict(zip(["start", "probe", "fit", "annotate", "stats"],
                            [round(b - a, 1) for a, b in zip(t, t[1:])])),
    }))
    spark.stop()
""")


def _ship_zip(dest: Path) -> Path:
    """``hermes_spark/`` and ``udfs/`` as one zip, like a ``--py-files`` artifact."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in ("hermes_spark", "udfs"):
            for path in sorted((REPO / package).rglob("*.py")):
                zf.write(path, path.relative_to(REPO).as_posix())
    return dest


def _isolated_python(tmp: Path) -> Path:
    """A ``python`` wrapper of this venv's interpreter that cannot see the checkout."""
    hide = tmp / "hide-checkout"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    wrapper = tmp / "python-isolated"
    wrapper.write_text(_WRAPPER.format(hide=hide, python=sys.executable))
    wrapper.chmod(0o755)
    return wrapper


def _spark_home(tmp: Path) -> Path:
    """A SPARK_HOME of symlinks to the pip pyspark package (its ``work/`` stays in tmp)."""
    home = tmp / "spark-home"
    home.mkdir()
    package = Path(pyspark.__file__).parent
    for entry in package.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    return home


def _sorted_codes(table: str | Path) -> pd.DataFrame:
    df = DeltaTable(str(table)).to_pandas().drop(columns=["annotated_at"])
    return df.sort_values("doc_id").reset_index(drop=True)


def test_local_cluster_gives_the_local_mode_codes(spark, tmp_path):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=600, dim=16, files=4)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    zip_path = _ship_zip(tmp_path / "hermes_pyfiles.zip")
    python = _isolated_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env.update(
        PYTHONPATH=str(zip_path),
        PYSPARK_PYTHON=str(python),
        PYSPARK_DRIVER_PYTHON=str(python),
        SPARK_HOME=str(_spark_home(tmp_path)),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    args = {
        "master": MASTER,
        "zip": str(zip_path),
        "corpus": str(corpus),
        "codebook": str(cluster / "codebook"),
        "table": str(cluster / "codes"),
        "stats": str(cluster / "stats"),
        "levels": list(LEVELS),
    }
    done = subprocess.run(
        [str(python), "-c", _CLUSTER_RUN, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=cluster,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["master"] == MASTER

    # The library came from the shipped zip, on the driver and in every Python worker, and
    # nothing else could have provided it; the work ran in two separate executor JVMs.
    assert result["driver_hermes_spark"].startswith(str(zip_path) + "/")
    assert result["driver_found_without_zip"] is False
    probes = result["probes"]
    assert len(probes) == 8
    for p in probes:
        assert f"{zip_path.name}/hermes_spark/" in p["hermes_spark"], p
        assert f"{zip_path.name}/udfs/" in p["udfs"], p
        assert p["found_without_zip"] == [] and p["editable_finders"] == 0, p
        assert p["is_executor"], p
    assert len({p["executor_jvm"] for p in probes}) == 2
    assert (tmp_path / "spark-home" / "work").is_dir()  # executors' work dirs: not the venv

    # Local mode (the test session's local[2]) with the same corpus: same codebook version,
    # and with the cluster's codebook the very same codes and statistics.
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus),
            embedding_col="emb",
            tokens_col="tokens",
            quality_col="quality",
            keep_cols=("source",),
        ),
        fit=FitConfig(levels=LEVELS, sample_size=300, seed=3, n_iter=10),
    )
    local_book = fit(spark, cfg, str(tmp_path / "local_codebook"))
    assert local_book.codebook.version == result["version"]
    local_report = annotate(spark, cfg, str(cluster / "codebook"), str(tmp_path / "codes"))
    assert result["table_rows"] == local_report.table_rows == 600
    cluster_codes = _sorted_codes(cluster / "codes")
    assert cluster_codes["doc_id"].is_unique and len(cluster_codes) == 600
    pd.testing.assert_frame_equal(cluster_codes, _sorted_codes(tmp_path / "codes"))

    local_stats = compute_stats(
        spark, str(tmp_path / "codes"), str(tmp_path / "stats"), None, list(LEVELS)
    )
    bucket_cols = [
        "level",
        "bucket",
        "c1",
        "c2",
        "c3",
        "docs",
        "tokens",
        "children",
        "share_docs",
        "share_tokens",
        "quality_mean",
        "qerr_mean",
    ]
    level_cols = [
        "level",
        "cells_total",
        "cells_nonempty",
        "entropy_bits",
        "perplexity",
        "max_share",
        "imbalance",
    ]
    for ours, theirs, cols in (
        (cluster / "stats", tmp_path / "stats", bucket_cols),
        (result["levels_table"], local_stats.levels_table, level_cols),
    ):
        a = DeltaTable(str(ours)).to_pandas()[cols].sort_values(cols[:2]).reset_index(drop=True)
        b = DeltaTable(str(theirs)).to_pandas()[cols].sort_values(cols[:2]).reset_index(drop=True)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)  # floats to rtol 1e-5: summation order may differ
