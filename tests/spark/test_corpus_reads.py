"""How often the jobs read the corpus: a JSON corpus's schema is inferred once per run."""

from __future__ import annotations

import json

import pytest

from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
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
    """Spark jobs whose stage is a JSON schema inference (``json at ...``) during ``run``."""
    tracker = spark.sparkContext.statusTracker()
    before = max([-1, *_all_jobs(tracker)])
    run()
    stages = [
        tracker.getStageInfo(s)
        for j in _all_jobs(tracker)
        if j > before
        for s in (tracker.getJobInfo(j).stageIds if tracker.getJobInfo(j) else ())
    ]
    return sum(1 for s in stages if s is not None and s.name.startswith("json at"))


def _all_jobs(tracker) -> list[int]:
    ids = list(tracker.getJobIdsForGroup(None))
    for group in ("hermes",):
        ids += list(tracker.getJobIdsForGroup(group))
    return ids


def test_a_json_corpus_schema_is_inferred_once_per_annotate_run(spark, tmp_path):
    corpus = _json_corpus(tmp_path / "c")
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus), format="json", embedding_col="emb", tokens_col="tokens"
        ),
        fit=FitConfig(levels=(3, 2), sample_size=60, n_iter=5),
        annotate=AnnotateConfig(files_per_chunk=1),  # two chunks: five reads of the corpus
    )
    fit(spark, cfg, str(tmp_path / "cb"))
    report = {}

    def run() -> None:
        report["r"] = annotate(spark, cfg, str(tmp_path / "cb"), str(tmp_path / "codes"))

    assert _inference_jobs(spark, run) == 1
    assert report["r"].chunks_total == 2
    assert report["r"].table_rows == 60
