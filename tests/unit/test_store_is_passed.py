"""Tasks receive their Delta store from the entry point instead of building their own.

Read with ``ast``: outside the CLI (``hermes_spark/cli/``, which builds the store once per
command) and the Delta package that defines it, ``get_store(...)`` appears only as the
default of a ``store`` parameter, ``store or get_store(...)``. And every call in
``cli/commands.py`` to a function that takes ``store`` passes it, so a command's tasks
share the one store the command built.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hermes_spark"
#: where building a store is the point: the entry points and the Delta package
EXEMPT = (PACKAGE / "cli", PACKAGE / "delta")
COMMANDS = PACKAGE / "cli" / "commands.py"

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_get_store(call: ast.Call) -> bool:
    f = call.func
    return (isinstance(f, ast.Name) and f.id == "get_store") or (
        isinstance(f, ast.Attribute) and f.attr == "get_store"
    )


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    a = fn.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
    return {p.arg for p in every}


def _allowed(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    """``store or get_store(...)`` inside a function with a ``store`` parameter."""
    op = parents.get(call)
    if not (
        isinstance(op, ast.BoolOp)
        and isinstance(op.op, ast.Or)
        and len(op.values) == 2
        and isinstance(op.values[0], ast.Name)
        and op.values[0].id == "store"
        and op.values[1] is call
    ):
        return False
    node: ast.AST | None = op
    while node is not None and not isinstance(node, _FUNCTIONS):
        node = parents.get(node)
    return node is not None and "store" in _params(node)  # type: ignore[arg-type]


def stray_get_store_calls(root: Path = PACKAGE) -> list[str]:
    """``path:line`` of every ``get_store(...)`` call that is not a ``store`` default."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(path.is_relative_to(d) for d in EXEMPT):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = _parents(tree)
        lines = sorted(
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _is_get_store(node) and not _allowed(node, parents)
        )
        found += [f"{path.relative_to(REPO)}:{line}" for line in lines]
    return found


def test_tasks_take_their_store_instead_of_calling_get_store() -> None:
    stray = stray_get_store_calls()
    assert not stray, (
        "get_store(...) called outside `store = store or get_store(spark)` (take a `store` "
        "parameter and pass the caller's store down):\n  " + "\n  ".join(stray)
    )


def test_the_check_sees_a_stray_call(tmp_path: Path) -> None:
    """The check itself: a bare call and a default without a ``store`` parameter fail."""
    src = (
        "def ok(spark, *, store=None):\n    store = store or get_store(spark)\n"
        "def bare(spark):\n    return get_store(spark).read('t')\n"
        "def no_param(spark):\n    store = None\n    return store or get_store(spark)\n"
    )
    tree = ast.parse(src)
    parents = _parents(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_get_store(n)]
    assert [_allowed(c, parents) for c in sorted(calls, key=lambda c: c.lineno)] == [
        True,
        False,
        False,
    ]


def _imports(scope: ast.AST) -> dict[str, tuple[str, str]]:
    """``local name -> (module, attribute)`` of the ``from X import a`` directly in
    ``scope`` (its own body, nested blocks included, not nested functions)."""
    names: dict[str, tuple[str, str]] = {}
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
        todo.extend(ast.iter_child_nodes(node))
    return names


def _resolve(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except Exception:  # an optional extra missing here: skip that name
        return None


def _store_index(fn: Any) -> tuple[int | None, bool]:
    """(position of ``store`` when it can be given positionally, whether it exists)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None, False
    for i, p in enumerate(params):
        if p.name == "store":
            positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            return (i if positional else None), True
    return None, False


def _calls_in(scope: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(scope):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node


def calls_without_store(path: Path = COMMANDS) -> list[str]:
    """``path:line name`` of the calls in ``path`` to a function with a ``store``
    parameter that do not pass it (names that cannot be resolved are skipped)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = "hermes_spark.cli.commands"
    top = {
        n.name: (module, n.name)
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    top.update(_imports(tree))
    missing = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        names = {**top, **_imports(fn)}
        for call in _calls_in(fn):
            assert isinstance(call.func, ast.Name)
            origin = names.get(call.func.id)
            target = _resolve(*origin) if origin else None
            if target is None or not callable(target):
                continue
            index, takes_store = _store_index(target)
            if not takes_store:
                continue
            given = any(k.arg == "store" for k in call.keywords) or (
                index is not None and len(call.args) > index
            )
            if not given:
                missing.append((call.lineno, call.func.id))
    return [f"{path.relative_to(REPO)}:{line} {name}" for line, name in sorted(set(missing))]


def test_commands_pass_their_store_to_every_task() -> None:
    missing = calls_without_store()
    assert not missing, (
        "these calls in the CLI do not pass the command's store (store=_store(cfg) once "
        "per command):\n  " + "\n  ".join(missing)
    )
