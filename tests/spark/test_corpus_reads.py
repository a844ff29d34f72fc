"""How often the jobs read the corpus: a JSON corpus's schema is inferred once per run."""

from __future__ import annotations

import json

import pytest

from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import list_input_files, read_corpus
from tests.helpers import labelled_vectors

pytestmark = pytest.mark.spark


def _json_corpus(root, files: int = 2, per: int = 30):
    root.mkdir(parents=True)
    x, _ = labelled_vectors(files * per, 8, seed=3)
    for f in range(files):
        with open(root / f"part-{f}.jsonl", "w") as out:
            for i in range(f * per, (f + 1) * per):
                row = {"id": f"j{i}", "text": f"json doc {i}", "emb": x[i].tolist(), "tokens": 9}
                out.write(json.dumps(row) + "\n")
    return root


def _inference_jobs(spark, run) -> int:
    """Spark jobs whose stage is a JSON schema inference (``json at ...``) during ``run``
    (counted in a job group of their own, whatever group earlier code left set)."""
    sc = spark.sparkContext
    group = "test-json-inference"
    previous = sc.getLocalProperty("spark.jobGroup.id")
    sc.setJobGroup(group, "count the JSON schema inferences")
    try:
        run()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", previous)
    tracker = sc.statusTracker()
    stages = [
        tracker.getStageInfo(s)
        for j in tracker.getJobIdsForGroup(group)
        for s in (tracker.getJobInfo(j).stageIds if tracker.getJobInfo(j) else ())
    ]
    return sum(1 for s in stages if s is not None and s.name.startswith("json at"))


def test_a_json_corpus_schema_is_inferred_once_per_run(spark, tmp_path):
    """annotate reads a run's files for the probe, the id look-up and each chunk: one
    inference (a pass over the JSON text) serves them all; a new run's listing re-infers."""
    corpus = _json_corpus(tmp_path / "c")
    cfg = CorpusConfig(input=str(corpus), format="json", embedding_col="emb")
    files = list_input_files(cfg, spark).paths
    frames = []

    def reads() -> None:  # as annotate does: the pending files, then chunk by chunk
        frames.append(read_corpus(spark, cfg, files))
        frames.extend(read_corpus(spark, cfg, [f]) for f in files)

    assert _inference_jobs(spark, reads) == 1
    assert sum(f.count() for f in frames[1:]) == frames[0].count() == 60
    assert "_corrupt_record" in frames[1].columns  # a later file's bad line stays traceable

    def new_run() -> None:  # a new run lists the corpus again: its schema is inferred again
        list_input_files(cfg, spark)
        read_corpus(spark, cfg)

    assert _inference_jobs(spark, new_run) >= 1
