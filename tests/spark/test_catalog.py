"""Table names that separate ``hermes`` processes share, through ``catalog.warehouse``.

Process 1 fits a codebook and writes ``hermes annotate --table default.hermes_codes``;
process 2 — a fresh JVM, so only the persistent metastore can know the name — runs
``hermes stats --table default.hermes_codes --out default.hermes_stats`` and reads both
tables by name. Both processes build their own session from the config (Hive catalog,
Derby metastore and managed tables under the warehouse folder), as a scheduler's
separate commands do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hermes_spark.catalog import hive_jars_present, local_catalog_conf
from hermes_spark.errors import InvalidConfigError
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
N_DOCS = 120
CORPUS = ["--embedding-col", "emb", "--tokens-col", "tokens"]

_DRIVER = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession
    from hermes_spark.cli import main

    a = json.loads(sys.argv[1])
    codes = [main(argv) for argv in a["commands"]]
    spark = SparkSession.getActiveSession()
    counts = {name: spark.table(name).count() for name in a["read"]}
    conf = spark.conf.get("spark.sql.catalogImplementation")
    print("RESULT " + json.dumps({"codes": codes, "counts": counts, "catalog": conf}))
    spark.stop()
""")


def _process(tmp: Path, commands: list[list[str]], read: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_SUBMIT_ARGS")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HERMES_DELTA_ENGINE="native")
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps({"commands": commands, "read": read})],
        capture_output=True, text=True, timeout=1200, env=env, cwd=tmp,
    )  # fmt: skip
    assert "RESULT " in done.stdout, done.stderr[-6000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def test_a_table_written_by_name_is_read_by_name_in_the_next_process(tmp_path):
    assert hive_jars_present()
    corpus = write_embedded_corpus(tmp_path / "corpus", n=N_DOCS, dim=16, files=2)
    warehouse = tmp_path / "warehouse"
    cfg = tmp_path / "catalog.yaml"
    cfg.write_text(f"catalog:\n  warehouse: {warehouse}\nspark:\n  master: local[2]\n")
    codebook = str(tmp_path / "codebook")
    first = _process(tmp_path, [
        ["fit", "--config", str(cfg), "--input", str(corpus), *CORPUS, "--out", codebook,
         "--levels", "4,3,2", "--sample-size", str(N_DOCS), "--lst-dim", "16"],
        ["annotate", "--config", str(cfg), "--input", str(corpus), *CORPUS,
         "--codebook", codebook, "--table", "default.hermes_codes"],
    ], read=["default.hermes_codes"])  # fmt: skip
    assert first["codes"] == [0, 0] and first["catalog"] == "hive"
    assert first["counts"] == {"default.hermes_codes": N_DOCS}
    assert (warehouse / "metastore_db").is_dir()
    second = _process(tmp_path, [
        ["stats", "--config", str(cfg), "--table", "default.hermes_codes",
         "--out", "default.hermes_stats", "--codebook", codebook],
    ], read=["default.hermes_codes", "default.hermes_stats"])  # fmt: skip
    assert second["codes"] == [0]
    assert second["counts"]["default.hermes_codes"] == N_DOCS
    assert second["counts"]["default.hermes_stats"] > 0
    assert {p.name for p in warehouse.iterdir()} >= {"metastore_db", "hermes_codes"}


def test_the_local_metastore_refuses_a_remote_warehouse():
    with pytest.raises(InvalidConfigError, match="local folder"):
        local_catalog_conf("s3a://bucket/warehouse")


def test_local_catalog_conf_points_derby_and_tables_under_the_warehouse(tmp_path):
    conf = local_catalog_conf(str(tmp_path / "wh"))
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf["spark.sql.warehouse.dir"] == str(tmp_path / "wh")
    url = conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert url == f"jdbc:derby:;databaseName={tmp_path / 'wh' / 'metastore_db'};create=true"
