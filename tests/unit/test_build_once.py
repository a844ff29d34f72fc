"""The exported-model cache under concurrent Python workers (the CI failure of stop 14:
every Spark worker of a fresh node exported and quantized the same graph at once, and
ONNX Runtime's quantizer deleted another worker's scratch file)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from hermes_spark.embedding.backends import build_once


def _slow_write(tmp: Path) -> None:
    """A writer that notices overlap: it drops a side file next to its input, like the
    quantizer does, and fails if another writer's side file is there."""
    side = tmp.parent.parent / "side-file"
    fd = os.open(side, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError on overlap
    os.close(fd)
    with open(tmp.parent.parent / "calls", "a") as calls:
        calls.write(f"{os.getpid()}\n")
    time.sleep(0.3)
    tmp.write_text(f"built by {os.getpid()}")
    os.unlink(side)


def _worker(target: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    build_once(Path(target), _slow_write)
    assert Path(target).read_text().startswith("built by ")


def test_concurrent_workers_build_once_and_leave_no_scratch(tmp_path):
    ctx = multiprocessing.get_context("fork")
    target = tmp_path / "cache" / "fp" / "model-int8.onnx"
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_worker, args=(str(target), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    calls = (target.parent / "calls").read_text().split()
    assert len(calls) == 1  # one worker wrote, three waited and reused it
    assert target.read_text() == f"built by {calls[0]}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["calls", "model-int8.onnx"]


def test_a_failed_write_leaves_nothing_and_the_next_call_builds(tmp_path):
    target = tmp_path / "fp" / "graph.onnx"

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        build_once(target, broken)
    assert not target.exists() and list(target.parent.iterdir()) == []
    build_once(target, lambda tmp: tmp.write_text("whole"))
    assert target.read_text() == "whole"


def test_the_cache_falls_back_to_tmp_without_a_writable_home(tmp_path, monkeypatch):
    from hermes_spark.embedding.backends import cache_dir

    monkeypatch.delenv("HERMES_CACHE_DIR", raising=False)
    (tmp_path / "home-is-a-file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "home-is-a-file"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert cache_dir() == tmp_path / "tmp" / f"hermes-spark-{os.getuid()}"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "hermes-spark"
    monkeypatch.setenv("HERMES_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
