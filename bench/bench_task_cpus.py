"""Embedding throughput of one executor's cores split two ways: tasks × 1 core, or
1 task × all cores (``--task-cpus``, a stage-level profile for the embedding stage only).

Usage::

    python bench/bench_task_cpus.py [--corpus ../shared/data/c4_en_1k.parquet] \
        [--docs 200] [--cores 2] [--files 4]

A Spark standalone master and one worker of ``--cores`` cores start on 127.0.0.1 (the
helpers of ``tests/servers.py``: ``spark-class`` of this venv's pyspark). A codebook of
the real model (``--backend onnx``, int8, the CPU default) is fitted in-process on a small
``local[2]`` sample of the corpus; then the same ``--docs`` C4 documents (``--files``
Parquet files) are annotated twice by ``spark-submit jobs/annotate.py``:

* A: ``--cores`` tasks of 1 core each (``spark.task.cpus=1``, no profile);
* B: 1 task of ``--cores`` cores (``--task-cpus CORES``: the embedding stage's task
  holds every core and ONNX Runtime runs that many intra-op threads).

Each application writes an uncompressed event log; the time of the embedding pass is that
of its ``MapInPandas`` stage (not the device probe, not the JVM start or the Delta commit).
Prints docs/s of that stage and of the whole ``spark-submit`` for A and B, and B/A.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.servers import spark_env, standalone_cluster  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "c4_en_1k.parquet"


def write_corpus(src: Path, out: Path, docs: int, files: int) -> Path:
    """``docs`` C4 texts (repeated if the file holds fewer) as ``files`` Parquet files."""
    texts = pq.read_table(src, columns=["text"])["text"].to_pylist()
    while len(texts) < docs:
        texts += texts
    texts = texts[:docs]
    out.mkdir(parents=True)
    per = -(-docs // files)
    for f in range(files):
        lo, hi = f * per, min(docs, (f + 1) * per)
        ids = [f"c4-{i:05d}" for i in range(lo, hi)]
        pq.write_table(pa.table({"id": ids, "text": texts[lo:hi]}), out / f"part-{f}.parquet")
    return out


def fit(corpus: Path, book: Path) -> None:
    """A small codebook of the real model, fitted in this process on ``local[2]``."""
    from hermes_spark.cli import execute

    args = ["fit", "--master", "local[2]", "--input", str(corpus), "--out", str(book),
            "--levels", "4,3,2", "--sample-size", "64", "--backend", "onnx",
            "--precision", "int8"]  # fmt: skip
    if execute(args) != 0:
        raise SystemExit("fit failed")


def embedding_seconds(events: Path) -> float:
    """Seconds of the annotate pass's ``MapInPandas`` stage(s) in the event log."""
    (log,) = [p for p in events.iterdir() if p.is_file()]
    total = 0.0
    for line in log.read_text().splitlines():
        e = json.loads(line)
        if not e["Event"].endswith("StageCompleted"):
            continue
        info = e["Stage Info"]
        scopes = json.dumps(info.get("RDD Info", []))
        if "MapInPandas" in scopes and "tasks/annotate.py" not in info["Stage Name"]:
            total += (info["Completion Time"] - info["Submission Time"]) / 1000
    return total


def annotate(cluster, corpus: Path, book: Path, work: Path, task_cpus: int | None) -> dict:
    """One ``spark-submit`` annotate; its wall and embedding-stage seconds."""
    events = work / "events"
    events.mkdir(parents=True)
    env = spark_env(cluster.home, PYTHONPATH=str(REPO))
    cmd = [
        str(cluster.home / "bin" / "spark-submit"), "--master", cluster.url,
        "--driver-memory", "1g", "--executor-memory", "2g",
        "--conf", f"spark.executorEnv.PYTHONPATH={REPO}",
        "--conf", "spark.sql.shuffle.partitions=4",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
        "--conf", "spark.eventLog.compress=false", "--conf", "spark.eventLog.rolling.enabled=false",
        str(REPO / "jobs" / "annotate.py"), "--input", str(corpus), "--codebook", str(book),
        "--table", str(work / "codes"),
    ]  # fmt: skip
    if task_cpus is not None:
        cmd += ["--task-cpus", str(task_cpus)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"annotate failed:\n{done.stderr[-5000:]}\n{cluster.log_tails()}")
    return {"wall": wall, "stage": embedding_seconds(events)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="C4 Parquet (text)")
    p.add_argument("--docs", type=int, default=200, help="documents annotated per layout")
    p.add_argument("--cores", type=int, default=2, help="cores of the one worker")
    p.add_argument("--files", type=int, default=4, help="Parquet files of the corpus")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-task-cpus-") as tmp:
        root = Path(tmp)
        corpus = write_corpus(a.corpus, root / "corpus", a.docs, a.files)
        fit(corpus, root / "codebook")
        with standalone_cluster(root, workers=1, memory="4g", cores=a.cores) as cluster:
            layouts = {
                f"A: {a.cores} tasks x 1 core": annotate(
                    cluster, corpus, root / "codebook", root / "a", None
                ),
                f"B: 1 task x {a.cores} cores": annotate(
                    cluster, corpus, root / "codebook", root / "b", a.cores
                ),
            }
    for name, r in layouts.items():
        print(
            f"{name}: embedding stage {r['stage']:.1f} s = {a.docs / r['stage']:.1f} docs/s; "
            f"whole spark-submit {r['wall']:.1f} s = {a.docs / r['wall']:.2f} docs/s"
        )
    first, second = layouts.values()
    print(f"B/A docs/s (embedding stage): {first['stage'] / second['stage']:.2f}")
    print(f"B/A docs/s (whole spark-submit): {first['wall'] / second['wall']:.2f}")


if __name__ == "__main__":
    main()
