"""The user docs name only modules, files and flags that exist.

README.md, CONTRIBUTING.md and docs/*.md are read as a user reads them: every repository
path they name (``hermes_spark/...``, ``tests/...``, ``conf/...``) must exist, and every
``--flag`` must be a flag of some ``hermes`` command or of the other tools the docs show
(spark-submit, pip, make, the Databricks CLI ...). A renamed flag or a moved module then
fails here instead of misleading a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hermes_spark.cli.flags import COMMANDS, COMMON

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])

#: Flags of the other programs the docs show commands of (not hermes flags).
OTHER_TOOLS = {
    # spark-submit / spark-class / pyspark
    "--master",
    "--deploy-mode",
    "--py-files",
    "--jars",
    "--packages",
    "--conf",
    "--archives",
    "--executor-memory",
    "--driver-memory",
    "--executor-cores",
    "--total-executor-cores",
    "--num-executors",
    "--files",
    "--name",
    "--class",
    "--host",
    "--port",
    "--webui-port",
    "--cores",
    "--memory",
    "--properties-file",
    "--repositories",
    "--driver-class-path",
    "--remote",
    # pip / python / venv / make / git / go / mvn / pytest / ruff / shell tools
    "--no-deps",
    "--no-build-isolation",
    "--upgrade",
    "--quiet",
    "--index-url",
    "--user",
    "--system-site-packages",
    "--check",
    "--version",
    "--help",
    "--fix",
    "--durations",
    "--output",
    "--force",
    "--rm",
    "--headless",
    "--screenshot",
    "--window-size",
    "--real",
    "--files-per-chunk",
    "--kill-at",
    "--scale",
    "--skip-annotate",
    "--skip-tables",
    "--target",
    "--vectors",
    "--change",
    "--json",
    # the Databricks CLI
    "--profile",
    # named in docs/sampling.md as not built yet (carried weights)
    "--var",
}

#: Paths that exist only after a build step, and units that look like paths ("docs/s").
GENERATED = {"hermes_spark/conf", "docs/s"}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PATH = re.compile(
    r"(?<![\w/.-])((?:hermes_spark|udfs|tests|bench|scripts|jobs|notebooks|conf|docs)"
    r"/[A-Za-z0-9_./-]*[A-Za-z0-9_/])"
)


_ARGPARSE_FLAG = re.compile(r"add_argument\(\s*[\"'](--[a-z][a-z0-9-]*)[\"']")


def _hermes_flags() -> set[str]:
    names = {n for f in COMMON for n in f.names}
    for command in COMMANDS:
        names.update(n for f in command.flags for n in f.names)
    return names


def _script_flags() -> set[str]:
    """Flags the benchmark and helper scripts declare with their own argparse."""
    found: set[str] = set()
    for script in [*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        found.update(_ARGPARSE_FLAG.findall(script.read_text(encoding="utf-8")))
    return found


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.relative_to(ROOT).as_posix(), match.group(0)))
    return found


def test_the_docs_exist_and_name_something():
    assert (ROOT / "README.md").exists() and len(DOCS) > 3
    assert _mentions(_FLAG) and _mentions(_PATH)


def test_every_flag_the_docs_name_exists():
    known = _hermes_flags() | _script_flags() | OTHER_TOOLS
    unknown = sorted({(doc, flag) for doc, flag in _mentions(_FLAG) if flag not in known})
    assert not unknown, f"flags named in the docs that no command has: {unknown}"


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for doc, raw in _mentions(_PATH):
        path = raw.split("::", 1)[0].split("#", 1)[0].rstrip("/.")
        if any(ch in path for ch in "*<>{}X") or "..." in raw or path in GENERATED:
            continue
        if not (ROOT / path).exists():
            missing.append((doc, raw))
    assert not sorted(set(missing)), f"paths named in the docs that do not exist: {missing}"


@pytest.mark.parametrize("text, flags", [("run `hermes x --budget-tokens N`", ["--budget-tokens"])])
def test_the_flag_pattern_reads_flags_as_a_user_types_them(text, flags):
    assert _FLAG.findall(text) == flags
