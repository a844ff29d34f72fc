#!/usr/bin/env python
"""Kill drill: SIGKILL a running ``hermes annotate``, re-run it, count what landed.

A manual drill of SPEC "Scheduled re-annotation" (a killed job re-run resumes: no
document is lost or duplicated). It

1. writes a corpus split into many files — synthetic vectors by default (``--embedding-col``,
   no model), or ``--real N`` documents of a shared corpus embedded by the real model — plus
   a file of rows that must be rejected (null text, blank text, a repeated id, ...),
2. fits a codebook with ``hermes fit``,
3. starts ``hermes annotate`` with a small ``--files-per-chunk`` in a new session and
   SIGKILLs its whole process tree (driver, Spark JVM, Python workers) at the chosen moment:

   * ``--kill-at chunks``: once ``--after`` chunks have committed,
   * ``--kill-at written``: Spark has finished writing a chunk's Parquet files under
     ``<table>/data/<run>/`` but the driver has not committed them yet,
   * ``--kill-at writing``: any staged file is not committed yet (Spark's ``_temporary``
     files of a write in progress included),

   the process tree is frozen (SIGSTOP) before the state is checked, so the state printed is
   the state at the moment of the kill,
4. re-runs the same command to the end and prints: input docs, valid docs, rows in the
   table, distinct doc_ids, rejects, orphan files visible to readers (must be 0), files on
   disk that the table does not reference, and the same after ``store.vacuum``.

Usage::

    .venv/bin/python scripts/kill_drill.py                         # synthetic, after 3 chunks
    .venv/bin/python scripts/kill_drill.py --kill-at written
    .venv/bin/python scripts/kill_drill.py --real 2000 --files-per-chunk 2

Exit status 0 when the outcome is exactly-once (every valid document once, nothing else, no
orphan visible), 1 otherwise. The helpers are also used by ``tests/drills/test_resilience.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_SOURCES = {"ag_news": "ag_news_test.parquet", "c4": "c4_en_1k.parquet"}
KILL_MODES = ("chunks", "written", "writing")
SYNTHETIC_DIM = 16


# ------------------------------------------------------------------------------ corpus


def write_synthetic_corpus(path: Path, docs: int, files: int, seed: int = 0) -> Path:
    """``docs`` clustered vectors over ``files`` Parquet files, then a file (last in path
    order, so its own chunk) with rows to reject, an id repeated inside the file and a
    second copy of the first file's first id (its first copy must win)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.helpers import write_embedded_corpus

    write_embedded_corpus(path, n=docs, dim=SYNTHETIC_DIM, seed=seed, files=files)
    bad = pa.table(
        {
            "id": ["bad-null", "bad-blank", "bad-len", "dup-x", "dup-x", "doc-00000"],
            "text": [
                None,
                " \t ",
                "wrong vector length",
                "first of a repeated id",
                "second",
                "a later copy of the first document's id",
            ],
            "emb": pa.array(
                [[0.1] * SYNTHETIC_DIM] * 2
                + [[0.1] * 3]
                + [[0.2] * SYNTHETIC_DIM, [-0.2] * SYNTHETIC_DIM, [0.3] * SYNTHETIC_DIM],
                type=pa.list_(pa.float32()),
            ),
            "tokens": pa.array([5] * 6, type=pa.int64()),
            "quality": [0.5] * 6,
            "source": ["bad"] * 6,
        }
    )
    pq.write_table(bad, path / "part-zzz-bad.parquet")
    return path


def write_real_corpus(path: Path, source: str, docs: int, files: int) -> Path:
    """The first ``docs`` rows of a shared corpus over ``files`` files, plus bad rows."""
    src = SHARED_DATA / REAL_SOURCES[source]
    if not src.exists():
        raise SystemExit(f"shared corpus {src} is absent")
    table = pq.read_table(src, columns=["id", "text"]).slice(0, docs)
    table = table.cast(pa.schema([("id", pa.string()), ("text", pa.string())]))
    path.mkdir(parents=True, exist_ok=True)
    per = -(-table.num_rows // files)
    for f in range(files):
        pq.write_table(table.slice(f * per, per), path / f"part-{f:03d}.parquet")
    first_id = table.column("id")[0].as_py()  # repeated across files: its first copy wins
    bad = pa.table(
        {
            "id": ["bad-null", "bad-blank", "dup-x", "dup-x", first_id],
            "text": [
                None,
                " \t ",
                "first of a repeated id",
                "second of a repeated id",
                "a later copy of the first document's id",
            ],
        },
        schema=table.schema,
    )
    pq.write_table(bad, path / "part-zzz-bad.parquet")
    return path


def expected_ids(corpus: Path, *, embedding_col: str | None, dim: int | None) -> tuple[int, set]:
    """(input rows, ids that must each be in the codes table once), computed with pyarrow.

    Valid: id and text present, text not blank and, with vectors, of length ``dim``.
    """
    table = pq.read_table(corpus)
    text = table.column("text")
    ok = pc.and_(pc.is_valid(table.column("id")), pc.is_valid(text))
    ok = pc.and_(ok, pc.invert(pc.match_substring_regex(pc.fill_null(text, ""), r"^\s*$")))
    if embedding_col is not None and dim is not None:
        ok = pc.and_(ok, pc.equal(pc.list_value_length(table.column(embedding_col)), dim))
    ids = table.filter(ok).column("id").to_pylist()
    return table.num_rows, set(map(str, ids))


# ------------------------------------------------------------------------- table state


def _abs(uri: str) -> str:
    return os.path.abspath(unquote(uri.removeprefix("file://")))


_LOG_CACHE: dict[str, tuple[str, frozenset[str]]] = {}


def _latest_commit(table: str) -> str:
    """Name of the newest commit file in the Delta log ("" when there is none)."""
    try:
        names = os.listdir(Path(table) / "_delta_log")
    except FileNotFoundError:
        return ""
    return max((n for n in names if n.endswith(".json") and n[:20].isdigit()), default="")


def log_files(table: str) -> set[str]:
    """Files the current snapshot of ``table`` references (what every reader reads).

    Cached per latest commit file name, so polling a table that did not change is cheap.
    """
    latest = _latest_commit(table)
    if not latest:
        return set()
    cached = _LOG_CACHE.get(table)
    if cached is not None and cached[0] == latest:
        return set(cached[1])
    if not DeltaTable.is_deltatable(table):
        return set()
    files = frozenset(_abs(u) for u in DeltaTable(table).file_uris())
    _LOG_CACHE[table] = (latest, files)
    return set(files)


def commits(table: str) -> int:
    """Number of commits of ``table`` (each annotate chunk is one): version + 1, or 0."""
    latest = _latest_commit(table)
    return int(latest.split(".")[0]) + 1 if latest else 0


def _log_actions(table: str) -> list[list[dict]]:
    """The actions of every JSON commit of ``table``'s log, in version order."""
    log_dir = Path(table) / "_delta_log"
    if not log_dir.is_dir():
        return []
    return [
        [json.loads(line) for line in path.read_text().splitlines() if line]
        for path in sorted(log_dir.glob("*.json"))
    ]


def chunk_commits(table: str) -> int:
    """Commits of ``table`` that carry an application transaction (each annotate chunk's
    codes commit does): the table's ``CREATE TABLE``, its metadata commits (table and
    column comments) and an ``OPTIMIZE`` are not chunk commits."""
    return sum(any("txn" in a for a in actions) for actions in _log_actions(table))


def data_commits(table: str) -> int:
    """Commits of ``table`` that add data files (metadata-only commits left out)."""
    return sum(any("add" in a for a in actions) for actions in _log_actions(table))


def disk_files(table: str) -> set[str]:
    """Every data file of ``table`` on disk, committed or not, whichever writer wrote it.

    Embedded: under ``<table>/data/<run>/`` (staged runs, Spark's ``_temporary``
    included); native Delta writes into the table directory itself (and partition
    directories). The log and hidden checksum files (``.*.crc``) are not data files.
    """
    found = set()
    top = Path(table)
    for root, dirs, names in os.walk(top):
        if Path(root) == top:
            dirs[:] = [d for d in dirs if d != "_delta_log"]
        found.update(os.path.abspath(os.path.join(root, n)) for n in names if not n.startswith("."))
    return found


def uncommitted_files(table: str, *, written_only: bool = False) -> set[str]:
    """Data files of ``table`` (:func:`disk_files`) the log does not reference.

    ``written_only`` keeps only complete output (not under a hidden or ``_temporary``
    directory, not a ``_SUCCESS`` marker): Spark has finished the write.
    """
    disk = disk_files(table)
    if not disk:
        return set()
    extra = disk - log_files(table)
    if written_only:
        base = Path(table).resolve()

        def complete(f: str) -> bool:
            parts = Path(f).relative_to(base).parts
            if parts[:1] == ("data",):  # embedded staging: data/<run-id>/...
                parts = parts[2:]
            return not any(part[:1] in "._" for part in parts)

        extra = {f for f in extra if complete(f)}
    return extra


def txn_app_ids(table: str) -> list[str]:
    """App transaction ids of every commit in the log, one entry per commit that has one."""
    ids = []
    for path in sorted((Path(table) / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                ids.append(action["txn"]["appId"])
    return ids


# ---------------------------------------------------------------------- process control


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of ``pid`` from /proc, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``pid`` (own process groups too)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry), info[2]))
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def alive(pid: int, start: int) -> bool:
    """True while the process ``pid`` started at ``start`` runs (zombies count as gone)."""
    info = _stat(pid)
    return info is not None and info[2] == start and info[1] != "Z"


def signal_tree(proc: subprocess.Popen, sig: int) -> list[tuple[int, int]]:
    """Send ``sig`` to the process group of ``proc`` and to every descendant of it.

    PySpark's Python worker daemon puts itself in its own process group, so the group
    alone would miss it. Returns the descendants signalled.
    """
    tree = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for pid, start in tree:
        if alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    return tree


def _threads_running(pid: int) -> bool:
    """True while some thread of ``pid`` is not yet stopped (each thread's own state)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if raw.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return True
    return False


def freeze_tree(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGSTOP ``proc``'s tree and wait until every thread of it has stopped.

    ``kill()`` returns before the signal is delivered, and a thread inside a syscall (a
    task's output rename) finishes it first, so state read right after the signal can be
    older than the state at the kill. A process forked meanwhile is stopped as well.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        tree = signal_tree(proc, signal.SIGSTOP)
        pids = [proc.pid, *(pid for pid, start in tree if alive(pid, start))]
        settled = set(descendants(proc.pid)) == set(tree)
        if settled and not any(_threads_running(pid) for pid in pids):
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def kill_tree(proc: subprocess.Popen, wait_s: float = 30.0) -> list[int]:
    """SIGKILL ``proc``'s tree, reap it; returns pids of the tree still alive after ``wait_s``."""
    tree = signal_tree(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait_s)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(p, s) for p, s in tree):
        time.sleep(0.1)
    return [p for p, s in tree if alive(p, s)]


@dataclass
class KillResult:
    """What the killed run had done when it was killed."""

    killed: bool  # False: the run ended on its own before the moment came
    exit_code: int | None
    commits_at_kill: int
    uncommitted_at_kill: list[str] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _moment(
    tables: Sequence[str], mode: str, after: int, ignore: set[str]
) -> tuple[int, set[str]] | None:
    done = commits(tables[0])
    if done < after:
        return None
    pending: set[str] = set()
    for table in tables:
        pending |= uncommitted_files(table, written_only=mode == "written")
    pending -= ignore
    if mode == "chunks" or pending:
        return done, pending
    return None


def run_and_kill(
    cmd: Sequence[str],
    tables: Sequence[str],
    *,
    mode: str = "chunks",
    after: int = 1,
    timeout: float = 600.0,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    poll: float = 0.02,
) -> KillResult:
    """Run ``cmd`` and SIGKILL its tree at the first moment ``mode`` sees in ``tables``.

    ``tables[0]`` is the codes table (its commits count the chunks); the others (its rejects
    table) are only watched for uncommitted files. Files left uncommitted by earlier killed
    runs are ignored. On a candidate moment the tree is frozen with SIGSTOP and the state is
    checked again, so a commit racing the kill cannot slip in.
    """
    if mode not in KILL_MODES:
        raise ValueError(f"mode must be one of {KILL_MODES}, got {mode!r}")
    ignore = set().union(*(uncommitted_files(t) for t in tables))
    t0 = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        while True:
            if proc.poll() is not None:
                return KillResult(
                    False, proc.returncode, commits(tables[0]), seconds=time.monotonic() - t0
                )
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(
                    f"{cmd[0]} did not reach the kill moment in {timeout:.0f}s (log: {log_path})"
                )
            if _moment(tables, mode, after, ignore) is not None:
                freeze_tree(proc)
                state = _moment(tables, mode, after, ignore)  # frozen: the state at the kill
                if state is not None:
                    survivors = kill_tree(proc)
                    return KillResult(
                        True,
                        proc.returncode,
                        state[0],
                        sorted(state[1]),
                        survivors,
                        time.monotonic() - t0,
                    )
                signal_tree(proc, signal.SIGCONT)  # the commit won the race: go on
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            kill_tree(proc)


def run_to_end(
    cmd: Sequence[str],
    *,
    timeout: float,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """Run ``cmd`` to the end (its tree killed on timeout); (exit code, combined output)."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise TimeoutError(f"{cmd[0]} did not finish in {timeout:.0f}s (log: {log_path})") from None
    return rc, log_path.read_text(errors="replace")


def drill_env() -> dict[str, str]:
    """The environment of the hermes subprocesses: offline model hub, quiet tokenizers."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def hermes_executable() -> str:
    """The project's ``hermes`` console script (the venv's, else the one on PATH)."""
    local = REPO / ".venv" / "bin" / "hermes"
    if local.exists():
        return str(local)
    found = shutil.which("hermes")
    if found is None:
        raise SystemExit("the hermes console script is not installed: pip install -e .")
    return found


# ----------------------------------------------------------------------------- outcome


def outcome(table: str, valid: set[str], orphans_at_kill: Sequence[str]) -> dict[str, int]:
    """Exactly-once counts of a codes table (read with delta-rs, a reader of its own)."""
    ids = [
        str(i)
        for i in DeltaTable(table).to_pyarrow_table(columns=["doc_id"]).column("doc_id").to_pylist()
    ]
    rejects = f"{table}_rejects"
    in_log = log_files(table) | log_files(rejects)
    visible = {f for f in in_log if f in set(orphans_at_kill) or not os.path.exists(f)}
    return {
        "valid_docs": len(valid),
        "table_rows": len(ids),
        "distinct_doc_ids": len(set(ids)),
        "missing_valid_docs": len(valid - set(ids)),
        "unexpected_doc_ids": len(set(ids) - valid),
        "rejects": DeltaTable(rejects).to_pyarrow_table(columns=["doc_id"]).num_rows
        if DeltaTable.is_deltatable(rejects)
        else 0,
        "codes_commits": commits(table),
        "chunk_txns_committed_twice": len(txn_app_ids(table)) - len(set(txn_app_ids(table))),
        "orphan_files_visible_to_readers": len(visible),
        "files_on_disk_not_in_table": len((disk_files(table) | disk_files(rejects)) - in_log),
    }


def vacuum_outcome(table: str) -> dict[str, int]:
    """``store.vacuum`` both tables (a local Spark session), then count again."""
    from hermes_spark.delta import get_store
    from hermes_spark.session import get_spark

    spark = get_spark("local[1]", {"spark.sql.shuffle.partitions": "2"})
    try:
        store = get_store(spark)
        rejects = f"{table}_rejects"
        removed = sum(
            len(store.vacuum(t, retention_hours=0)) for t in (table, rejects) if store.exists(t)
        )
        rows_spark = store.read(table).count()
    finally:
        spark.stop()
    left = (disk_files(table) | disk_files(rejects)) - (log_files(table) | log_files(rejects))
    return {
        "vacuum_removed_files": removed,
        "files_on_disk_not_in_table_after_vacuum": len(left),
        "table_rows_read_by_spark_after_vacuum": rows_spark,
    }


# --------------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", help="where corpus, codebook and tables go (default: a temp dir)")
    p.add_argument("--docs", type=int, default=2400, help="synthetic documents")
    p.add_argument("--real", type=int, metavar="N", help="N real documents and the real model")
    p.add_argument("--source", choices=sorted(REAL_SOURCES), default="ag_news")
    p.add_argument("--files", type=int, default=12, help="input files (before the bad-rows file)")
    p.add_argument("--files-per-chunk", type=int, default=1)
    p.add_argument("--kill-at", choices=KILL_MODES, default="chunks")
    p.add_argument("--after", type=int, default=3, help="chunks committed before the kill")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per hermes run")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON line too")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the drill; 0 when the outcome is exactly-once."""
    args = _parse(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hermes-kill-drill-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus, codebook, table = work / "corpus", work / "codebook", str(work / "codes")
    env, hermes = drill_env(), hermes_executable()
    common = ["--input", str(corpus), "--master", args.master]
    if args.real:
        write_real_corpus(corpus, args.source, args.real, args.files)
        data_flags: list[str] = []
        fit_flags = ["--levels", "8,4,4", "--sample-size", str(min(args.real, 1000))]
        embedding_col, dim = None, None
    else:
        write_synthetic_corpus(corpus, args.docs, args.files)
        data_flags = ["--embedding-col", "emb", "--tokens-col", "tokens"]
        fit_flags = ["--levels", "4,3,2", "--sample-size", "300"]
        embedding_col, dim = "emb", SYNTHETIC_DIM
    n_input, valid = expected_ids(corpus, embedding_col=embedding_col, dim=dim)
    print(f"workdir {work}: {n_input} input docs in {args.files + 1} files")

    rc, out = run_to_end(
        [hermes, "fit", *common, *data_flags, *fit_flags, "--seed", "0", "--out", str(codebook)],
        timeout=args.timeout,
        log_path=work / "fit.log",
        env=env,
        cwd=work,
    )
    if rc != 0:
        print(out[-3000:])
        raise SystemExit(f"hermes fit failed with exit code {rc}")
    annotate = [
        hermes,
        "annotate",
        *common,
        *data_flags,
        "--codebook",
        str(codebook),
        "--table",
        table,
        "--files-per-chunk",
        str(args.files_per_chunk),
    ]
    print("running:", " ".join(annotate))
    killed = run_and_kill(
        annotate,
        [table, f"{table}_rejects"],
        mode=args.kill_at,
        after=args.after,
        timeout=args.timeout,
        log_path=work / "annotate-killed.log",
        env=env,
        cwd=work,
    )
    if not killed.killed:
        print(f"the run ended (exit {killed.exit_code}) before the kill moment came")
    else:
        print(
            f"SIGKILL after {killed.seconds:.1f}s: {killed.commits_at_kill} chunk(s) "
            f"committed, {len(killed.uncommitted_at_kill)} staged file(s) not committed, "
            f"{len(killed.survivors)} process(es) of the tree survived"
        )
        for path in killed.uncommitted_at_kill[:5]:
            print(f"  uncommitted: {os.path.relpath(path, work)}")
    rc, out = run_to_end(
        annotate, timeout=args.timeout, log_path=work / "annotate-rerun.log", env=env, cwd=work
    )
    summary = [
        line.strip() for line in out.splitlines() if re.match(r"\s*(chunks|rows|rejected)", line)
    ]
    print(f"re-run exit code {rc}: " + "; ".join(summary))
    counts: dict[str, object] = {
        "input_docs": n_input,
        **outcome(table, valid, killed.uncommitted_at_kill),
    }
    # every input row is a row of the table or of the rejects, none of both, none lost
    counts["unaccounted_input_rows"] = n_input - counts["table_rows"] - counts["rejects"]
    counts.update(vacuum_outcome(table))
    counts["rerun_exit_code"] = rc
    counts["kill"] = {k: v for k, v in asdict(killed).items() if k != "uncommitted_at_kill"}
    counts["kill"]["uncommitted_at_kill"] = len(killed.uncommitted_at_kill)
    width = max(len(k) for k in counts)
    for key, value in counts.items():
        print(f"  {key:<{width}}  {value}")
    if args.json:
        print(json.dumps(counts))
    ok = (
        rc == 0
        and counts["table_rows"] == counts["distinct_doc_ids"] == len(valid)
        and counts["missing_valid_docs"] == counts["unexpected_doc_ids"] == 0
        and counts["unaccounted_input_rows"] == 0
        and counts["orphan_files_visible_to_readers"] == 0
        and counts["chunk_txns_committed_twice"] == 0
        and not killed.survivors
    )
    print("exactly-once: " + ("OK" if ok else "VIOLATED"))
    if not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
