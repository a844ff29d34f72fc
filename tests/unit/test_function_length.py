"""No function over ~80 lines in ``hermes_spark/``, ``udfs/`` or ``jobs/``: each function's
span (``def`` to its last line, docstring included) is read with
``ast``. The functions still being split are listed in ``ALLOWED``; an entry that is no
longer over the limit (or no longer exists) fails too, so the list only shrinks."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("hermes_spark", "udfs", "jobs")
MAX_LINES = 80

#: ``path::qualified.name`` of the functions over the limit that are being split now.
ALLOWED = frozenset(
    {
        "hermes_spark/export.py::export_training_data",
        "hermes_spark/sampling/planner.py::plan_mixture",
        "hermes_spark/tasks/plan.py::compute_plan_and_codes",
        "hermes_spark/sampling/report.py::build_report",
        "hermes_spark/sampling/select.py::select_manifest",
    }
)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """``(qualified name, line count)`` of every function, nested ones and methods too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _lengths(repo: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for name, n in _functions(tree):
                out[f"{rel}::{name}"] = max(n, out.get(f"{rel}::{name}", 0))
    return out


def _long(repo: Path) -> dict[str, int]:
    return {k: n for k, n in _lengths(repo).items() if n > MAX_LINES}


def test_no_function_over_the_limit() -> None:
    extra = {k: n for k, n in _long(REPO).items() if k not in ALLOWED}
    assert not extra, f"functions over {MAX_LINES} lines (split them): {extra}"


def test_allowed_list_only_shrinks() -> None:
    paid = sorted(ALLOWED - set(_long(REPO)))
    assert not paid, f"no longer over {MAX_LINES} lines, remove from ALLOWED: {paid}"


def test_the_walk_sees_methods_nested_functions_and_decorated_ones(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    src = (
        "import functools\n"
        "class C:\n"
        "    @functools.cache\n"
        f"    def method(self):\n{body.replace('    ', '        ')}\n"
        f"def outer():\n    def inner():\n{body.replace('    ', '        ')}\n"
        f"def short():\n    return 1\n"
    )
    (tmp_path / "hermes_spark").mkdir()
    (tmp_path / "hermes_spark" / "m.py").write_text(src, encoding="utf-8")
    long = _long(tmp_path)
    assert set(long) == {
        "hermes_spark/m.py::C.method",
        "hermes_spark/m.py::outer",
        "hermes_spark/m.py::outer.inner",
    }
    assert long["hermes_spark/m.py::C.method"] == MAX_LINES + 1
