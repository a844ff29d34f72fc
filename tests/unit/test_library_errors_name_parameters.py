"""The library names arguments; the CLI names flags: no message raised outside
``hermes_spark/cli/`` spells a CLI flag (``--budget-tokens``). A library error names
the setting as ``{section.key}`` or ``{argument}`` (or ``key=``/``param=`` on the error),
and the CLI turns those into its flags through the one flag table (``cli/flags.py``).

Read with ``ast``: every string literal and f-string part inside a ``raise`` statement,
a call of an ``...Error`` class, or a call of a helper that builds an error's message
(:data:`MESSAGE_HELPERS`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermes_spark.cli import flag_for
from hermes_spark.config import SampleConfig
from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.signals import parse_quality_cols

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("hermes_spark", "udfs")
#: Modules whose messages the CLI owns (they name its flags on purpose).
CLI = "hermes_spark/cli/"
FLAG = re.compile(r"(?<![\w-])--[a-z]")
#: Functions whose string arguments end up in an error message.
MESSAGE_HELPERS = frozenset({"_fail", "_refuse", "guard_output"})


def _raised_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every string constant (f-string parts included) in a raise, in
    a call of an ``...Error`` class (an error built to be returned, then raised) or of a
    message helper."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            parts = [node.exc, node.cause]
        elif isinstance(node, ast.Call) and (
            _name(node.func).endswith("Error") or _name(node.func) in MESSAGE_HELPERS
        ):
            parts = [node]
        else:
            continue
        for part in parts:
            for sub in ast.walk(part) if part is not None else ():
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _modules() -> Iterator[tuple[str, Path]]:
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(CLI):
                yield rel, path


def flagged(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """The raised strings of ``source`` that spell a CLI flag."""
    tree = ast.parse(source, filename=filename)
    found = {(line, text) for line, text in _raised_strings(tree) if FLAG.search(text)}
    return sorted(found)


def test_the_check_finds_flags_in_plain_and_f_string_messages() -> None:
    source = (
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError('give --budget-tokens')\n"
        "    raise E(f'{x} and --weights FILE', key='sample.weights')\n"
        "def g():\n"
        "    raise E('budget_tokens (config sample.budget_tokens) and {allow_shortfall}')\n"
        "    raise E('a -- b, x--y, ---')\n"
        "    return BudgetError('drop --plan')\n"
        "    log.info('--plan is fine in a log line')\n"
        "    _fail('sample', 'weights', 'give --weights FILE')\n"
        "    guard_output(out, 'stats --out', marker=M)\n"
    )
    assert [line for line, _ in flagged(source)] == [3, 4, 8, 10, 11]


def test_no_library_message_names_a_cli_flag() -> None:
    found = [
        f"{rel}:{line}: {text!r}"
        for rel, path in _modules()
        for line, text in flagged(path.read_text(encoding="utf-8"), rel)
    ]
    assert not found, "library errors that name CLI flags (name the argument or key):\n" + (
        "\n".join(found)
    )


def test_the_cli_names_its_flags_in_the_same_messages() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        parse_quality_cols("edu:0")
    assert str(caught.value).startswith("quality_cols (config sample.quality_cols): weight")
    cli = caught.value.naming(flag_for)
    assert cli.startswith("--quality-cols (config sample.quality_cols): weight")
    with pytest.raises(InvalidConfigError) as caught:
        SampleConfig(budget_tokens=1000, budget_share=0.5)
    assert "give budget_tokens or budget_share, not both" in str(caught.value)
    assert "give --budget-tokens or --budget-share, not both" in caught.value.naming(flag_for)


def test_a_library_argument_named_differently_from_its_flag_maps_to_that_flag() -> None:
    from hermes_spark.cli import _command
    from hermes_spark.errors import VersionMismatchError

    err = VersionMismatchError("codes has no rows of codebook version v9", param="version")
    assert str(err).startswith("version: codes has no rows")
    assert err.naming(lambda s: flag_for(s, _command("sample"))).startswith("--codebook-version:")
    assert err.naming(lambda s: flag_for(s, _command("versions"))).startswith("--drop:")
    assert flag_for("from_version", _command("crosswalk")) == "--from"
