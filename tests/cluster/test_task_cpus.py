"""``--task-cpus 2`` on a real standalone cluster: only the embedding stage takes both cores.

One worker of two cores. The codebook is fitted in-process (given vectors); the annotate
is a ``spark-submit --master spark://…`` of ``jobs/annotate.py`` with the vectors given but
not the token counts, so the embedding stage still runs the model's tokenizer and takes
its stage-level profile. The application's event log (what the status REST API serves)
must show the ``MapInPandas`` stages (the device probe and the embedding pass) under one
profile of 2 task cores and every other stage (reading, listing, the Delta commit) under
the default profile 0.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli, write_embedded_corpus
from tests.servers import spark_env, standalone_cluster

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]


def _events(log_dir: Path) -> list[dict]:
    (log,) = [p for p in log_dir.iterdir() if p.is_file()]
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _profiles(events: list[dict]) -> dict[int, dict]:
    return {
        e["Resource Profile Id"]: e.get("Task Resource Requests", {})
        for e in events
        if e["Event"].endswith("ResourceProfileAdded")
    }


def _stages(events: list[dict]) -> list[tuple[int, bool]]:
    """(resource profile id, runs the MapInPandas operator) of every submitted stage."""
    out = []
    for e in events:
        if e["Event"].endswith("StageSubmitted"):
            info = e["Stage Info"]
            scopes = " ".join(str(r.get("Scope", "")) for r in info.get("RDD Info", []))
            out.append((info["Resource Profile Id"], "MapInPandas" in scopes))
    return out


def test_only_the_embedding_stage_runs_with_two_task_cores(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=120, dim=16, files=2)
    book, codes, events = tmp_path / "codebook", tmp_path / "codes", tmp_path / "events"
    events.mkdir()
    code, _, err = run_cli(
        capsys, "fit", "--input", str(corpus), "--embedding-col", "emb", "--tokens-col",
        "tokens", "--out", str(book), "--levels", "4,3,2", "--sample-size", "100",
    )  # fmt: skip
    assert code == 0, err
    with standalone_cluster(tmp_path, workers=1, cores=2) as cluster:
        env = spark_env(cluster.home, PYTHONPATH=str(REPO))
        submit = [
            str(cluster.home / "bin" / "spark-submit"),
            "--master", cluster.url,
            "--driver-memory", "1g",
            "--executor-memory", "768m",
            "--conf", f"spark.executorEnv.PYTHONPATH={REPO}",
            "--conf", "spark.sql.shuffle.partitions=2",
            "--conf", "spark.eventLog.enabled=true",
            "--conf", f"spark.eventLog.dir={events}",
            "--conf", "spark.eventLog.compress=false",
            "--conf", "spark.eventLog.rolling.enabled=false",
            str(REPO / "jobs" / "annotate.py"),
            "--input", str(corpus), "--embedding-col", "emb", "--codebook", str(book),
            "--table", str(codes), "--task-cpus", "2",
        ]  # fmt: skip
        done = subprocess.run(
            submit, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path
        )
        assert done.returncode == 0, f"{done.stderr[-6000:]}\n{cluster.log_tails()}"
    log = _events(events)
    profiles, stages = _profiles(log), _stages(log)
    embedding = {rp for rp, mapped in stages if mapped}
    assert len(embedding) == 1 and 0 not in embedding, stages
    (rp,) = embedding
    assert profiles[rp]["cpus"]["Amount"] == 2, profiles
    assert "gpu" not in profiles[rp], profiles
    others = {rp for rp, mapped in stages if not mapped}
    assert others == {0}, stages
