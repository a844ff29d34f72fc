"""The kill drill reads a job's state only once its whole process tree has stopped."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# a parent with a busy thread, and a child in its own process group with a busy thread
_PROGRAM = textwrap.dedent(
    """
    import os, subprocess, sys, threading, time

    def spin():
        while True:
            sum(range(1000))

    threading.Thread(target=spin, daemon=True).start()
    if len(sys.argv) == 1:
        subprocess.Popen([sys.executable, __file__, "child"], start_new_session=True)
    print("ready", flush=True)
    while True:
        time.sleep(0.001)
    """
)


def _drill():
    spec = importlib.util.spec_from_file_location("kill_drill", ROOT / "scripts/kill_drill.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_drill"] = module
    spec.loader.exec_module(module)
    return module


def _states(pid: int) -> set[str]:
    states = set()
    for tid in Path(f"/proc/{pid}/task").iterdir():
        states.add((tid / "stat").read_text().rsplit(")", 1)[1].split()[0])
    return states


def test_every_thread_of_the_tree_is_stopped_before_the_state_is_read(tmp_path):
    drill = _drill()
    script = tmp_path / "busy.py"
    script.write_text(_PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 30
        while not drill.descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has started
        tree = [proc.pid, *(pid for pid, _ in drill.descendants(proc.pid))]
        assert len(tree) == 2  # the child in its own session is part of the tree
        drill.freeze_tree(proc)
        for pid in tree:
            assert _states(pid) <= {"T", "t"}, (pid, _states(pid))
    finally:
        assert drill.kill_tree(proc) == []
