"""jobs/ has one thin spark-submit entry point per CLI command, and each runs its command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_spark.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"


#: commands that start no Spark job: setting up a machine is not a spark-submit entry point
SETUP_ONLY = {"setup-jars"}


def _commands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(set(sub.choices) - SETUP_ONLY)


def test_every_command_has_a_job_and_every_job_a_command():
    jobs = sorted(p.stem for p in JOBS.glob("*.py") if p.stem != "__init__")
    assert jobs == _commands()


@pytest.mark.parametrize("command", _commands())
def test_job_is_one_call_of_the_cli_with_its_own_command(command):
    tree = ast.parse((JOBS / f"{command}.py").read_text())
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "main"
    ]
    assert len(calls) == 1
    (argv,) = calls[0].args
    assert isinstance(argv, ast.List) and ast.literal_eval(argv.elts[0]) == command
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defs == [], "a job stays thin: the logic lives in the library"


@pytest.mark.parametrize("command", ["mixtures", "rescore", "run"])
def test_a_job_runs_its_command_and_exits_with_its_code(command):
    done = subprocess.run(
        [sys.executable, str(JOBS / f"{command}.py"), "--help"], capture_output=True,
        text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and f"usage: hermes-spark {command}" in done.stdout, done.stderr
    done = subprocess.run(
        [sys.executable, str(JOBS / f"{command}.py"), "--no-such-flag"], capture_output=True,
        text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--no-such-flag" in done.stderr
