"""Reading Spark physical plans in plan-shape tests (cached and adaptive plans opened)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def seq(java_seq: Any) -> list[Any]:
    """A Scala Seq as a Python list."""
    return [java_seq.apply(i) for i in range(java_seq.size())]


def nodes(node: Any, crossed: bool = False) -> Iterator[tuple[Any, bool]]:
    """Every physical node under ``node``, each with whether a shuffle or broadcast lies
    between it and ``node``; cached relations and adaptive stages are opened."""
    name = node.nodeName()
    yield node, crossed
    inner = []
    if name == "InMemoryTableScan":
        inner.append(node.relation().cachedPlan())
    if name == "AdaptiveSparkPlan":
        inner.append(node.executedPlan())
    if name.endswith("QueryStage"):  # adaptive stages are leaves that wrap their plan
        inner.append(node.plan())
    inner += seq(node.children())
    for child in inner:
        yield from nodes(child, crossed or "Exchange" in name)


def plan_of(df: Any) -> Any:
    """The executed physical plan of a DataFrame (planned now if it was not yet run)."""
    return df._jdf.queryExecution().executedPlan()


def shuffles(plan: Any) -> list[Any]:
    """The shuffle exchanges of ``plan`` (not broadcasts)."""
    return [n for n, _ in nodes(plan) if n.nodeName() == "Exchange"]


def output_names(node: Any) -> list[str]:
    return [a.name() for a in seq(node.output())]


def output_types(node: Any) -> list[str]:
    return [a.dataType().typeName() for a in seq(node.output())]


def scans_of(plan: Any, column: str) -> list[Any]:
    """Scans of ``plan`` that read ``column`` (e.g. a corpus's text column)."""
    return [
        n for n, _ in nodes(plan) if n.nodeName().startswith("Scan") and column in output_names(n)
    ]
