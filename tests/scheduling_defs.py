"""Read the shipped scheduling examples (Airflow DAG, crontab, Databricks bundle) as data.

Shared by tests/unit/test_scheduling.py (every argument parses with the CLI) and
tests/spark/test_s3.py (the same arguments run against an S3 server). Airflow is not a
dependency: the DAG file is executed against a stub of the two names it imports, which
records each ``SparkSubmitOperator``'s keyword arguments.
"""

from __future__ import annotations

import re
import shlex
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEDULING = REPO / "conf" / "scheduling"


@contextmanager
def _airflow_stub(operators: list[dict[str, Any]]):
    class DAG:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def __enter__(self) -> DAG:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    class SparkSubmitOperator:
        def __init__(self, **kwargs: Any) -> None:
            operators.append(kwargs)
            self.downstream: list[SparkSubmitOperator] = []

        def __rshift__(self, other: SparkSubmitOperator) -> SparkSubmitOperator:
            self.downstream.append(other)
            return other

    names = [
        "airflow",
        "airflow.providers",
        "airflow.providers.apache",
        "airflow.providers.apache.spark",
        "airflow.providers.apache.spark.operators",
        "airflow.providers.apache.spark.operators.spark_submit",
    ]
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules["airflow"].DAG = DAG
    sys.modules[names[-1]].SparkSubmitOperator = SparkSubmitOperator
    try:
        yield
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


def airflow_tasks(hermes_home: Path = REPO) -> list[dict[str, Any]]:
    """Keyword arguments of every SparkSubmitOperator of the DAG, HERMES_HOME=hermes_home."""
    import os

    operators: list[dict[str, Any]] = []
    source = (SCHEDULING / "airflow_dag.py").read_text()
    old = os.environ.get("HERMES_HOME")
    os.environ["HERMES_HOME"] = str(hermes_home)
    try:
        with _airflow_stub(operators):
            exec(compile(source, "airflow_dag.py", "exec"), {"__name__": "airflow_dag"})
    finally:
        if old is None:
            os.environ.pop("HERMES_HOME")
        else:
            os.environ["HERMES_HOME"] = old
    return operators


CRON_HOME = "/opt/hermes-spark"  # where crontab.example expects the repository


def crontab_entries() -> list[str]:
    """The command of every crontab.example entry, read line by line as cron reads it."""
    commands = []
    for line in (SCHEDULING / "crontab.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        commands.append(fields[-1])
    return commands


def crontab_submits(hermes_home: Path = REPO) -> list[list[str]]:
    """The ``spark-submit`` argv each crontab entry's script would run (``--dry-run``).

    Each script call is run as cron runs it (``/bin/sh``, an empty environment but HOME
    and ``PATH=/usr/bin:/bin``), with CRON_HOME mapped to ``hermes_home``.
    """
    import os
    import subprocess

    submits = []
    for entry in crontab_entries():
        tokens = shlex.split(entry)
        for i, token in enumerate(tokens):
            if not token.endswith("scripts/cron_submit.sh"):
                continue
            end = next(
                (j for j in range(i + 1, len(tokens)) if tokens[j] in ("&&", "||", ">>", ";")),
                len(tokens),
            )
            script = hermes_home / Path(token).relative_to(CRON_HOME)
            env = {"HOME": os.environ.get("HOME", "/"), "PATH": "/usr/bin:/bin"}
            env["HERMES_HOME"] = str(hermes_home)
            done = subprocess.run(
                ["/bin/sh", str(script), "--dry-run", *tokens[i + 1 : end]],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, (tokens[i:end], done.stderr)
            submits.append(shlex.split(done.stdout))
    return submits


def job_of(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """``(command, hermes args, spark-submit options)`` of a spark-submit argv."""
    (i,) = [k for k, t in enumerate(argv) if t.endswith(".py") and "jobs/" in t]
    return Path(argv[i]).stem, argv[i + 1 :], argv[1:i]


def bundle() -> dict[str, Any]:
    """The Databricks bundle, parsed."""
    return yaml.safe_load((SCHEDULING / "databricks.yml").read_text())


def substitute(value: str, variables: dict[str, Any]) -> str:
    """``${var.NAME}`` replaced by the variable's default."""
    return re.sub(
        r"\$\{var\.([A-Za-z0-9_]+)\}", lambda m: str(variables[m.group(1)]["default"]), value
    )
