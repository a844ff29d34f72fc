"""The whole pipeline with every path on ``s3a://``, against a real S3 server on loopback.

moto's standalone S3 server (tests/servers.py) plays the object store; Spark reaches it
through hadoop-aws (``s3a://``) and writes the tables with native Delta (both from the jars
``make setup`` fetches into build/jars), hermes' small files (artifact, reports) go through
pyarrow with the same settings, copied from the session. One driver process
builds the session the way spark-submit would hand it over (the ``fs.s3a.*`` settings in
the session conf), then runs the ``hermes`` commands in it: fit, then **exactly** the
arguments of the Airflow DAG's annotate and stats tasks (the crontab runs the same), then
sample and export; then the three commands that read the artifact by a user path besides
annotate: evaluate, ``--weights target:`` and ``--stage2 target-top`` (target texts on S3
too). Nothing of the pipeline touches a local path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.helpers import skip_or_fail_in_ci, write_embedded_corpus
from tests.scheduling_defs import airflow_tasks, crontab_submits, job_of
from tests.servers import s3_server

pytestmark = [
    pytest.mark.spark,
    pytest.mark.model,
]

REPO = Path(__file__).resolve().parents[2]
N_DOCS = 60
CORPUS = "s3a://corpora/web/"
CODEBOOK = "s3a://hermes/codebook"
TARGET = "s3a://corpora/target/"
N_TARGET = 12

_DRIVER = textwrap.dedent("""
    import contextlib, io, json, sys
    from hermes_spark.cli import execute as main
    from hermes_spark.session import get_spark

    a = json.loads(sys.argv[1])
    spark = get_spark("local[2]", a["conf"])
    results = []
    for argv in a["commands"]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        results.append({"argv": argv, "code": code, "stderr": err.getvalue()[-4000:]})
        print(f"{argv[0]} -> {code}", file=sys.stderr, flush=True)
        if code != 0 and not a.get("keep_going"):
            break
    print("RESULT " + json.dumps(results))
    spark.stop()
""")


def _jars() -> list[str]:
    """hadoop-aws + AWS SDK bundle (s3a://) and the Delta Lake jars, from build/jars."""
    jars_dir = Path(os.environ.get("HERMES_JARS_DIR") or REPO / "build" / "jars")
    jars = sorted(str(p) for p in jars_dir.glob("*.jar"))
    for needed in ("hadoop-aws-", "bundle-", "delta-spark_", "delta-storage-"):
        if not any(Path(j).name.startswith(needed) for j in jars):
            skip_or_fail_in_ci(f"{needed}*.jar is not in {jars_dir} (make setup fetches it)")
    return jars


def _session_conf(s3, jars: list[str]) -> dict[str, str]:
    """What spark-submit would be given: s3a settings, the jars, native Delta."""
    return {
        **s3.spark_conf(),
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "2g",
    }


def _run_driver(tmp: Path, conf: dict[str, str], commands: list[list[str]], **kw) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SPARK_REMOTE"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["HERMES_DELTA_ENGINE"] = "native"  # what a user's session gets with the jars
    args = {"conf": conf, "commands": commands, **kw}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(args)],
        capture_output=True, text=True, timeout=1200, env=env, cwd=tmp,
    )  # fmt: skip
    assert "RESULT " in done.stdout, done.stderr[-6000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def _scheduled_args() -> dict[str, list[str]]:
    """The hermes arguments of the DAG's tasks, checked to equal the crontab's."""
    dag = {t["task_id"]: t["application_args"] for t in airflow_tasks()}
    cron = {job_of(argv)[0]: job_of(argv)[1] for argv in crontab_submits()}
    assert dag == cron, (dag, cron)
    return dag


def test_pipeline_with_every_path_on_s3a(tmp_path):
    jars = _jars()
    scheduled = _scheduled_args()
    local = write_embedded_corpus(tmp_path / "corpus", n=N_DOCS, dim=16, files=2)
    with s3_server(tmp_path, buckets=("corpora", "hermes")) as s3:
        client = s3.client()
        for part in sorted(local.glob("*.parquet")):
            client.upload_file(str(part), "corpora", f"web/{part.name}")
        target = pq.read_table(sorted(local.glob("*.parquet"))[0]).slice(0, N_TARGET)
        target = target.set_column(0, "id", [[f"t-{i}" for i in range(N_TARGET)]])
        pq.write_table(target.select(["id", "text"]), tmp_path / "target.parquet")
        client.upload_file(str(tmp_path / "target.parquet"), "corpora", "target/part-0.parquet")
        conf = _session_conf(s3, jars)
        commands = [
            ["fit", "--config", "default", "--input", CORPUS, "--tokens-col", "tokens",
             "--out", CODEBOOK, "--levels", "4,3,2", "--sample-size", str(N_DOCS),
             "--lst-dim", "16", "--seed", "3"],
            ["annotate", *scheduled["annotate"]],
            ["stats", *scheduled["stats"]],
            ["sample", "--config", "default", "--table", "s3a://hermes/codes",
             "--out", "s3a://hermes/manifest", "--budget-tokens", "200", "--weights",
             "uniform", "--stage2", "random", "--seed", "5", "--codebook", CODEBOOK],
            ["export", "--config", "default", "--manifest", "s3a://hermes/manifest",
             "--input", CORPUS, "--out", "s3a://hermes/train", "--shards", "2"],
            ["evaluate", "--config", "default", "--input", CORPUS, "--table",
             "s3a://hermes/codes", "--codebook", CODEBOOK, "--in-sample", "--sample", "40",
             "--baselines", "kmeans", "--label-cols", "cluster", "--out", "s3a://hermes/eval"],
            ["sample", "--config", "default", "--table", "s3a://hermes/codes",
             "--out", "s3a://hermes/target_w", "--budget-tokens", "200", "--weights",
             f"target:{TARGET}", "--stage2", "random", "--seed", "5", "--codebook", CODEBOOK],
            ["sample", "--config", "default", "--table", "s3a://hermes/codes",
             "--out", "s3a://hermes/target_top", "--budget-tokens", "200", "--weights",
             "uniform", "--stage2", "target-top:0.5", "--seed", "5", "--codebook", CODEBOOK,
             "--target", TARGET, "--input", CORPUS],
        ]  # fmt: skip
        results = _run_driver(tmp_path, conf, commands)
        for r in results:
            assert r["code"] == 0, (r["argv"][0], r["stderr"])
        assert [r["argv"][0] for r in results] == [c[0] for c in commands]

        keys = {
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="hermes")
            for o in page.get("Contents", [])
        }
        meta = json.loads(
            client.get_object(Bucket="hermes", Key="codebook/metadata.json")["Body"].read()
        )
        opts = s3.storage_options()
        codes = DeltaTable("s3://hermes/codes", storage_options=opts).to_pandas()
        stats = DeltaTable("s3://hermes/stats", storage_options=opts).to_pandas()
        manifest = DeltaTable("s3://hermes/manifest", storage_options=opts).to_pandas()
        target_w = DeltaTable("s3://hermes/target_w", storage_options=opts).to_pandas()
        target_top = DeltaTable("s3://hermes/target_top", storage_options=opts).to_pandas()
        evaluation = json.loads(
            client.get_object(Bucket="hermes", Key="eval/evaluation.json")["Body"].read()
        )
        reports = {
            name: json.loads(
                client.get_object(Bucket="hermes", Key=f"{name}_report.json")["Body"].read()
            )
            for name in ("target_w", "target_top")
        }
        fs = pafs.S3FileSystem(
            access_key=s3.access_key, secret_key=s3.secret_key, region=s3.region,
            endpoint_override=s3.endpoint.split("://", 1)[1], scheme="http",
        )  # fmt: skip
        shards = sorted(k for k in keys if k.startswith("train/") and k.endswith(".parquet"))
        exported = sum(pq.read_metadata(f"hermes/{k}", filesystem=fs).num_rows for k in shards)

    # Every document got its codes from the artifact on S3; stats and sample used them.
    assert len(codes) == N_DOCS and codes["doc_id"].is_unique
    assert set(codes["codebook_version"]) == {meta["codebook_version"]}
    assert codes[["c1", "c2", "c3"]].notna().all().all()
    assert set(stats["level"]) == {1, 2, 3}
    assert stats.loc[stats["level"] == 1, "docs"].sum() == N_DOCS
    realized = (manifest["repeats"] * manifest["tokens"]).sum()
    # texts are tokenized by the model (the DAG gives no --tokens-col): ~6 tokens a document
    assert abs(realized - 200) <= 4 * manifest["tokens"].max()  # per Stage-1 bucket
    assert len(shards) == 2 and exported == manifest["repeats"].sum()
    assert any(k.startswith("manifest") and k.endswith("report.json") for k in keys), sorted(keys)
    assert any(k.startswith("codes/_delta_log/") for k in keys)
    # The artifact on S3 also served evaluate, target: weights and target-top.
    assert evaluation["codebook_version"] == meta["codebook_version"], evaluation.keys()
    assert reports["target_w"]["settings"]["weights"] == f"target:{TARGET}"
    assert reports["target_top"]["settings"]["target_top"]["codebook"] == CODEBOOK
    assert len(target_w) > 0 and len(target_top) > 0
    assert set(target_top["doc_id"]) <= set(codes["doc_id"])


def _assert_one_paragraph(result: dict, needles: tuple[str, ...]) -> None:
    err = result["stderr"]
    assert result["code"] == 2, (result["argv"], err)
    lines = [line for line in err.splitlines() if line.startswith("hermes: error:")]
    assert len(lines) == 1 and "Traceback" not in err, (result["argv"], err)
    for needle in needles:
        assert needle in lines[0], (result["argv"], needle, lines[0])


def test_unusable_object_store_paths_are_clean_errors(tmp_path):
    jars = _jars()
    cases = [  # (argv, what the one-line message must name)
        (["stats", "--table", "s3a://hermes/codes", "--out", "s3a://hermes/stats"],
         ("s3a://hermes/codes",)),
        (["stats", "--table", "s3a://no-such-bucket/codes", "--out", "s3a://hermes/stats"],
         ("s3a://no-such-bucket/codes",)),
        # No connector for the scheme on this classpath (hadoop-azure is not shipped).
        (["stats", "--table", "abfss://c@acct.dfs.core.windows.net/codes",
          "--out", "s3a://hermes/stats"],
         ("abfss://c@acct.dfs.core.windows.net/codes",)),
    ]  # fmt: skip
    with s3_server(tmp_path, buckets=("hermes",)) as s3:
        conf = _session_conf(s3, jars)
        results = _run_driver(tmp_path, conf, [argv for argv, _ in cases], keep_going=True)
        # Missing credentials: the keys the provider reads are not set.
        bare = {k: v for k, v in conf.items() if not k.endswith((".access.key", ".secret.key"))}
        no_creds = _run_driver(
            tmp_path, bare, [["stats", "--table", "s3a://hermes/codes", "--out", "/tmp/x"]]
        )
    assert len(results) == len(cases)
    for (_, needles), result in zip(cases, results, strict=True):
        _assert_one_paragraph(result, needles)
    _assert_one_paragraph(no_creds[0], ("s3a://hermes/codes", "credentials"))
