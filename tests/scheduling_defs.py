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


def crontab_submits() -> list[list[str]]:
    """The argv of every ``spark-submit`` in crontab.example (continuations joined)."""
    lines = [
        line
        for line in (SCHEDULING / "crontab.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    submits = []
    for entry in text.splitlines():
        tokens = shlex.split(entry)
        starts = [i for i, t in enumerate(tokens) if t == "spark-submit"]
        for i in starts:
            end = next(
                (j for j in range(i + 1, len(tokens)) if tokens[j] in ("&&", "||", ">>", ";")),
                len(tokens),
            )
            submits.append(tokens[i:end])
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
