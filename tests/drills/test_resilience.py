"""Annotate survives retried tasks, SIGKILL at any moment and a concurrent twin job.

SPEC "Scheduled re-annotation": a killed or failed job re-run resumes, no document is lost
or duplicated; "Codes table": a table never mixes rows of one doc for one version. Every
scenario runs Spark in a separate process (one SparkContext per process; the test session's
is ``local[2]``) and is judged here with delta-rs, against a reference annotate run of the
same corpus and codebook made in the test session without any failure.

The kill machinery (process-tree SIGSTOP/SIGKILL, Delta log and staged-file polling) is the
one of ``scripts/kill_drill.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
from hermes_spark.delta import get_store
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
LEVELS = (4, 3, 2)
DOCS, FILES = 400, 4  # + the drill's bad-rows file = 5 input files
#: per hermes run; a saturated machine (or native Delta's slower commits) may need more
RUN_TIMEOUT = float(os.environ.get("HERMES_DRILL_TIMEOUT", "300"))


def _load_drill():
    spec = importlib.util.spec_from_file_location("kill_drill", REPO / "scripts" / "kill_drill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


drill = _load_drill()


@dataclass(frozen=True)
class Setup:
    root: Path
    corpus: Path
    codebook: Path
    version: str
    valid: frozenset[str]
    reference_codes: pd.DataFrame
    reference_rejects: pd.DataFrame
    chunks: int


def _config(corpus: Path, files_per_chunk: int = 1) -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus),
            embedding_col="emb",
            tokens_col="tokens",
            quality_col="quality",
            keep_cols=("source",),
        ),
        fit=FitConfig(levels=LEVELS, sample_size=300, seed=3, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=files_per_chunk),
    )


def _codes(table: str | Path) -> pd.DataFrame:
    """Every column but ``annotated_at``, one row per row of the table, sorted."""
    df = DeltaTable(str(table)).to_pandas().drop(columns=["annotated_at"])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _rejects(table: str | Path) -> pd.DataFrame:
    df = DeltaTable(f"{table}_rejects").to_pandas()[["doc_id", "reason", "codebook_version"]]
    return df.sort_values(["doc_id", "reason"]).reset_index(drop=True)


def _hermes_annotate(setup: Setup, table: Path, files_per_chunk: int = 1) -> list[str]:
    return [
        drill.hermes_executable(),
        "annotate",
        "--master",
        "local[2]",
        "--input",
        str(setup.corpus),
        "--codebook",
        str(setup.codebook),
        "--table",
        str(table),
        "--embedding-col",
        "emb",
        "--tokens-col",
        "tokens",
        "--quality-col",
        "quality",
        "--keep-cols",
        "source",
        "--files-per-chunk",
        str(files_per_chunk),
    ]


def _assert_exactly_once(setup: Setup, table: Path) -> None:
    """Every valid doc once, codes and rejects equal to the failure-free reference run."""
    codes = _codes(table)
    assert len(codes) == len(setup.valid)
    assert set(codes["doc_id"]) == setup.valid
    pd.testing.assert_frame_equal(codes, setup.reference_codes)
    pd.testing.assert_frame_equal(_rejects(table), setup.reference_rejects)


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory) -> Setup:
    """400 synthetic docs in 4 files + a file of bad rows (repeated id inside it), a
    codebook, and the reference codes of a plain in-process annotate run (one chunk)."""
    root = tmp_path_factory.mktemp("resilience")
    corpus = drill.write_synthetic_corpus(root / "corpus", DOCS, FILES)
    cfg = _config(corpus, files_per_chunk=64)
    book = fit(spark, cfg, str(root / "codebook"))
    reference = root / "reference"
    annotate(spark, cfg, str(root / "codebook"), str(reference))
    _, valid = drill.expected_ids(corpus, embedding_col="emb", dim=drill.SYNTHETIC_DIM)
    setup = Setup(
        root,
        corpus,
        root / "codebook",
        book.codebook.version,
        frozenset(valid),
        _codes(reference),
        _rejects(reference),
        chunks=FILES + 1,
    )
    # the reference itself is exactly-once, with the five bad rows rejected; the id that
    # the bad file repeats from the first file keeps its first copy (per-file chunks in the
    # scenarios below must agree: the copies are then in different chunks)
    assert len(setup.reference_codes) == len(valid) == DOCS + 1
    assert set(setup.reference_codes["doc_id"]) == valid
    first = setup.reference_codes.set_index("doc_id").loc["doc-00000"]
    assert first["source"] != "bad"
    assert dict(
        zip(setup.reference_rejects["doc_id"], setup.reference_rejects["reason"], strict=True)
    ) == {
        "bad-null": "null_text",
        "bad-blank": "empty_text",
        "bad-len": "wrong_embedding_length",
        "dup-x": "duplicate_doc_id",
        "doc-00000": "duplicate_doc_id",
    }
    return setup


# ----------------------------------------------------------------- retried task failures

_FAILING_RUN = textwrap.dedent("""
    import json, sys
    from hermes_spark.tasks.annotate import annotate
    from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
    from hermes_spark.tasks.fit import fit
    from hermes_spark.session import get_spark
    import hermes_spark.coding as coding

    FAIL_PROPERTY = "hermes.drill.fail"  # job-scoped: only the annotate jobs below fail

    class InjectedFailure(RuntimeError):
        pass

    # The test seam: the executor function, wrapped so that every task of a job with
    # FAIL_PROPERTY set raises on its first attempt after yielding its first output (a
    # failed attempt leaves partial work; Spark retries it). Production code has no branch.
    def failing_first_attempts(make_annotate_fn):
        def make(*args, **kwargs):
            inner = make_annotate_fn(*args, **kwargs)
            def run(batches):
                from pyspark import TaskContext
                ctx = TaskContext.get()
                for out in inner(batches):
                    yield out
                    if (ctx is not None and ctx.attemptNumber() == 0
                            and ctx.getLocalProperty(FAIL_PROPERTY) == "first-attempt"):
                        raise InjectedFailure(
                            f"injected failure in partition {ctx.partitionId()} attempt 0")
            return run
        return make

    coding.make_annotate_fn = failing_first_attempts(coding.make_annotate_fn)
    a = json.loads(sys.argv[1])
    spark = get_spark("local[2,2]", {"spark.sql.shuffle.partitions": "4"})
    sc = spark.sparkContext
    cfg = HermesConfig(
        corpus=CorpusConfig(input=a["corpus"], embedding_col="emb", tokens_col="tokens",
                            quality_col="quality", keep_cols=("source",)),
        fit=FitConfig(levels=tuple(a["levels"]), sample_size=300, seed=3, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=a["files_per_chunk"]),
    )
    book = fit(spark, cfg, a["codebook"])  # no failure injection here
    sc.setJobGroup("annotate-with-failures", "every annotate task fails once")
    sc.setLocalProperty(FAIL_PROPERTY, "first-attempt")
    report = annotate(spark, cfg, a["codebook"], a["table"])
    sc.setLocalProperty(FAIL_PROPERTY, None)
    tracker = sc.statusTracker()
    failed = tasks = 0
    for job in tracker.getJobIdsForGroup("annotate-with-failures"):
        for stage in tracker.getJobInfo(job).stageIds:
            info = tracker.getStageInfo(stage)
            if info is not None:
                failed += info.numFailedTasks
                tasks += info.numTasks
    print("RESULT " + json.dumps({"version": book.codebook.version, "failed_tasks": failed,
                                  "tasks": tasks, "chunks": report.chunks_total,
                                  "master": sc.master}))
    spark.stop()
""")


def test_retried_task_failures_leave_no_duplicate_output(setup, tmp_path):
    """local[2,2]: every annotate task raises after yielding its first batch, Spark retries
    it; the table still holds each valid doc once with the failure-free codes."""
    table = tmp_path / "codes"
    args = {
        "corpus": str(setup.corpus),
        "codebook": str(tmp_path / "codebook"),
        "table": str(table),
        "levels": list(LEVELS),
        "files_per_chunk": 64,
    }
    done = subprocess.run(
        [sys.executable, "-c", _FAILING_RUN, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=drill.drill_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["master"] == "local[2,2]"
    assert result["version"] == setup.version  # same fit in another process: same codebook
    assert result["chunks"] == 1
    # The failures really happened, in several annotate tasks: Spark's failed-task count
    # and the InjectedFailure tracebacks it logged for each of them.
    failed_partitions = set(
        re.findall(
            r"InjectedFailure: injected failure in partition (\d+) "
            r"attempt 0",
            done.stderr,
        )
    )
    assert len(failed_partitions) >= 2, done.stderr[-4000:]
    assert result["failed_tasks"] >= len(failed_partitions)
    _assert_exactly_once(setup, table)


# ----------------------------------------------------------------------------- SIGKILL


def test_sigkill_mid_run_then_rerun_is_exactly_once(spark, setup, tmp_path):
    """``hermes annotate`` (one file per chunk) is SIGKILLed between the last chunk's two
    commits — its rejects committed, its codes staged as Parquet but not committed — then
    re-run: committed chunks are skipped, the chunk is redone without losing the document
    whose repeated id was rejected, killed files are never read, vacuum clears them."""
    table = tmp_path / "codes"
    rejects = Path(f"{table}_rejects")
    cmd = _hermes_annotate(setup, table)
    env = drill.drill_env()

    # Only the last chunk (the bad-rows file) has rejects: kill once they are committed and
    # files are staged that the log does not hold (the process tree is frozen first).
    killed = drill.run_and_kill(
        cmd,
        [str(rejects), str(table)],
        mode="writing",
        after=1,
        timeout=RUN_TIMEOUT,
        log_path=tmp_path / "killed.log",
        env=env,
        cwd=tmp_path,
    )
    assert killed.killed, (tmp_path / "killed.log").read_text()[-3000:]
    assert killed.survivors == []  # driver, JVM and Python workers are all gone
    assert killed.uncommitted_at_kill
    assert drill.data_commits(str(rejects)) == 1
    assert drill.chunk_commits(str(table)) == setup.chunks - 1
    orphans = set(killed.uncommitted_at_kill)
    assert not (drill.log_files(str(table)) | drill.log_files(str(rejects))) & orphans
    assert DeltaTable(str(table)).to_pyarrow_table().num_rows == DOCS  # readers: no orphan

    rc, out = drill.run_to_end(
        cmd, timeout=RUN_TIMEOUT, log_path=tmp_path / "rerun.log", env=env, cwd=tmp_path
    )
    assert rc == 0, out[-3000:]
    _assert_exactly_once(setup, table)
    # one commit per chunk in each table: no chunk transaction twice
    assert drill.chunk_commits(str(table)) == setup.chunks
    assert len(set(drill.txn_app_ids(str(table)))) == setup.chunks
    assert drill.data_commits(str(rejects)) == 1

    in_log = drill.log_files(str(table)) | drill.log_files(str(rejects))
    assert not in_log & orphans
    assert all(Path(f).exists() for f in in_log)
    on_disk = drill.disk_files(str(table)) | drill.disk_files(str(rejects))
    assert orphans <= on_disk  # the killed run's files are still there ...
    store = get_store(spark)
    store.vacuum(str(table), retention_hours=0)
    store.vacuum(str(rejects), retention_hours=0)
    after = drill.disk_files(str(table)) | drill.disk_files(str(rejects))
    assert after == in_log  # ... until vacuum removes them, and only them
    assert store.read(str(table)).count() == len(setup.valid)


# ------------------------------------------------------------------ concurrent writers


def test_two_concurrent_annotate_jobs_never_duplicate(setup, tmp_path):
    """Two ``hermes annotate`` processes on the same corpus, codebook and table at once:
    each succeeds or fails with a conflict message; the table is exactly-once."""
    table = tmp_path / "codes"
    cmd = _hermes_annotate(setup, table, files_per_chunk=2)
    env = drill.drill_env()
    procs = []
    for name in ("a", "b"):
        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(
            (
                subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=tmp_path,
                    start_new_session=True,
                ),
                log,
            )
        )
    try:
        codes = [proc.wait(timeout=RUN_TIMEOUT) for proc, _ in procs]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                drill.kill_tree(proc)
            log.close()
    outputs = [(tmp_path / f"{name}.log").read_text() for name in ("a", "b")]
    for name, rc, out in zip("ab", codes, outputs, strict=True):  # shown with -rA / -s
        skipped = re.findall(r"chunks: \d+ \((\d+) already committed\)", out)
        raced = len(re.findall(r"committed meanwhile|conflicted", out))
        print(f"job {name}: exit {rc}, chunks already committed {skipped}, races {raced}")
    for rc, out in zip(codes, outputs, strict=True):
        assert rc == 0 or (rc == 1 and "conflict" in out.lower()), out[-3000:]
    assert 0 in codes
    _assert_exactly_once(setup, table)
    chunks = -(-setup.chunks // 2)
    assert drill.chunk_commits(str(table)) == chunks  # each chunk committed by one job only
    assert len(set(drill.txn_app_ids(str(table)))) == chunks
