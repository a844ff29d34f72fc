"""The house's import rule, checked by reading every import (module level and inside
functions) of ``hermes_spark/`` and ``udfs/``: a unit imports only units on lower floors
(docs/ARCHITECTURE.md), and the DataFrame wing (``api``, ``stats``, ``sampling``) never
reaches into tables (``delta``), executor functions (``udfs``) or a private name of
``quantize``. Known debt is listed and may only shrink: a listed import that is gone
fails too, so the list is kept honest."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Lowest first. A unit is a top-level module or subpackage of hermes_spark (or udfs/), or
#: one of the ``SUBUNITS``; the package root only holds the version and resolves its
#: public names lazily.
FLOORS: tuple[frozenset[str], ...] = tuple(
    frozenset(f.split())
    for f in (
        "errors __init__",
        "paths jars",
        "session runtime hashing packaged_conf catalog notebook_widgets",
        "io",
        "delta quantize embedding object_stores report",
        "schema config artifacts outputs udfs",
        "corpus stats tracking",
        "coding evaluate cards",
        "api sampling.rules",
        "sampling",
        "tasks weight_files sampled_rows",
        "export rescore versions demo",
        "phase_export",
        "cli",
    )
)
#: Subpackages that are units of their own (on a lower floor than their parent).
SUBUNITS = ("sampling.rules",)
#: The DataFrame wing and what it must not import.
DATAFRAME_WING = ("api", "stats", "sampling", "sampling.rules")
FORBIDDEN = ("delta", "udfs")
#: What the sampling wing must not import either: it takes a loaded codebook and coded
#: frames, and never loads an artifact by path or codes a corpus itself (``tasks/`` does).
SAMPLING_FORBIDDEN = ("api", "artifacts")
#: Corpus readers by path: the sampling wing gets the corpus as a frame.
CORPUS_READERS = ("read_corpus", "list_input_files")
#: (importing unit, imported unit) pairs the house still has to move (docs/ARCHITECTURE.md).
KNOWN_DEBT: set[tuple[str, str]] = set()


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "udfs":
        return "udfs"
    if parts[0] != "hermes_spark":
        return None
    for sub in SUBUNITS:
        if parts[1 : 1 + len(sub.split("."))] == sub.split("."):
            return sub
    return parts[1] if len(parts) > 1 else "__init__"


def _is_unit(name: str) -> bool:
    return (REPO / "hermes_spark" / f"{name}.py").exists() or (
        REPO / "hermes_spark" / name
    ).is_dir()


def _sources() -> Iterator[tuple[str, Path]]:
    for path in sorted([*REPO.glob("hermes_spark/**/*.py"), *REPO.glob("udfs/**/*.py")]):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        name = ".".join(parts)
        yield _unit(name) or name, path


@functools.cache
def _imports(path: Path) -> tuple[tuple[str, str, int], ...]:
    """(imported module, imported name or "", line) for every absolute import."""
    return tuple(_walk(path))


def _walk(path: Path) -> Iterator[tuple[str, str, int]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if node.module == "hermes_spark" and _is_unit(alias.name):
                    yield f"hermes_spark.{alias.name}", "", node.lineno  # import io
                else:
                    yield node.module, alias.name, node.lineno


def _floor(unit: str) -> int:
    found = [i for i, units in enumerate(FLOORS) if unit in units]
    assert found, f"{unit} is on no floor: add it to FLOORS and docs/ARCHITECTURE.md"
    return found[0]


@functools.cache
def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for unit, path in _sources():
        for module, _name, line in _imports(path):
            target = _unit(module)
            if target is None or target == unit:
                continue
            where = f"{path.relative_to(REPO)}:{line} imports {module}"
            edges.setdefault((unit, target), []).append(where)
    return edges


def test_every_import_goes_down_a_floor() -> None:
    upward = [
        f"{where} ({unit} is on floor {_floor(unit) + 1}, {target} on {_floor(target) + 1})"
        for (unit, target), wheres in sorted(_edges().items())
        for where in wheres
        if _floor(target) >= _floor(unit)
    ]
    assert not upward, "imports that do not go down a floor:\n" + "\n".join(upward)


def test_the_dataframe_wing_never_reaches_into_tables_or_executors() -> None:
    edges = _edges()
    found = {
        (unit, target) for unit, target in edges if unit in DATAFRAME_WING and target in FORBIDDEN
    }
    new = sorted(found - KNOWN_DEBT)
    assert not new, "\n".join(w for pair in new for w in edges[pair])
    paid = sorted(KNOWN_DEBT - found)
    assert not paid, f"{paid} no longer happen: take them off KNOWN_DEBT and the docs"


def test_the_sampling_wing_never_loads_an_artifact_or_codes_a_corpus() -> None:
    edges = _edges()
    found = [
        where
        for (unit, target), wheres in sorted(edges.items())
        if unit in ("sampling", "sampling.rules") and target in SAMPLING_FORBIDDEN
        for where in wheres
    ]
    found += [
        f"{path.relative_to(REPO)}:{line} imports {name} from {module}"
        for unit, path in _sources()
        if unit in ("sampling", "sampling.rules")
        for module, name, line in _imports(path)
        if module == "hermes_spark.corpus" and name in CORPUS_READERS
    ]
    assert not found, "\n".join(found)


def test_no_private_name_crosses_a_unit() -> None:
    private = [
        f"{path.relative_to(REPO)}:{line} imports {name} from {module}"
        for unit, path in _sources()
        for module, name, line in _imports(path)
        if name.startswith("_") and not name.startswith("__") and _unit(module) not in (None, unit)
    ]
    assert not private, "\n".join(private)
