"""Stage-2 rules as objects: specs round-trip, bad specs name ``stage2``, each rule's
attributes, and the registry knows exactly the rules docs/sampling.md's table lists."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.allocate import parse_stage2_rule
from hermes_spark.sampling.rules.base import Allocation, Pools, Score, Stage2Rule
from hermes_spark.sampling.rules.coverage import CoverageRule
from hermes_spark.sampling.rules.quadmix import QuadmixRule
from hermes_spark.sampling.rules.quality_top import QualityTopRule
from hermes_spark.sampling.rules.random import RandomRule
from hermes_spark.sampling.rules.registry import RULE_TYPES, RULES, USAGE, parse_rule
from hermes_spark.sampling.rules.target_top import TargetTopRule

REPO = Path(__file__).resolve().parents[2]
SHARES = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, allow_nan=False)


def _docs_rules() -> list[str]:
    """Rule names from the first column of the "Stage-2 rules" table of docs/sampling.md."""
    text = (REPO / "docs" / "sampling.md").read_text()
    section = text.split("\n## Stage-2 rules\n", 1)[1].split("\n#", 1)[0]
    cells = re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)
    return [re.split(r"[:\[]", cell, maxsplit=1)[0] for cell in cells]


def test_the_registry_knows_exactly_the_rules_of_the_docs_table() -> None:
    listed = _docs_rules()
    assert len(listed) == len(set(listed)) == 5
    assert sorted(listed) == sorted(RULES)
    assert len(USAGE) == len(RULE_TYPES) == len(RULES)


@given(SHARES, st.sampled_from(["quality-top", "target-top"]))
@settings(max_examples=200, deadline=None)
def test_top_share_specs_round_trip(p: float, name: str) -> None:
    rule = parse_rule(f"{name}:{p!r}")
    assert (rule.name, rule.p) == (name, p)
    assert parse_rule(rule.spec) == rule
    assert parse_stage2_rule(rule.spec) == (name, p)


@given(SHARES)
@settings(max_examples=50, deadline=None)
def test_a_share_parses_whatever_its_spelling(p: float) -> None:
    for spelling in (f"{p:.17g}", f" {p!r} ", f"{p:.17e}".upper()):
        assert parse_rule(f"Quality-Top:{spelling}").p == p


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("random", RandomRule()),
        (" Coverage ", CoverageRule()),
        ("quality-top:0.3", QualityTopRule(0.3)),
        ("target-top:1", TargetTopRule(1.0)),
        ("quadmix", QuadmixRule()),
        ("QUADMIX:", QuadmixRule()),
        ("quadmix:/Some/Params.json", QuadmixRule("/Some/Params.json")),
    ],
)
def test_specs_parse_to_rules_and_back(spec: str, expected: Stage2Rule) -> None:
    rule = parse_rule(spec, check_files=False)
    assert rule == expected
    assert parse_rule(rule.spec, check_files=False) == rule
    assert parse_stage2_rule(spec) == (rule.name, rule.p)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("best", "unknown Stage-2 rule 'best'"),
        ("top", "unknown Stage-2 rule"),
        ("random:1", "random takes no parameter"),
        ("coverage:", "coverage takes no parameter"),
        ("quality-top", "0 < p <= 1"),
        ("quality-top:0", "0 < p <= 1"),
        ("quality-top:1.5", "0 < p <= 1"),
        ("quality-top:x", "0 < p <= 1, got 'x'"),
        ("target-top:nan", "0 < p <= 1"),
        ("target-top:-0.2", "0 < p <= 1"),
        ("target-top:inf", "0 < p <= 1"),
    ],
)
def test_bad_specs_name_the_stage2_key(spec: str, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=re.escape(message)) as info:
        parse_rule(spec)
    assert info.value.key == "sample.stage2"
    assert str(info.value).startswith("stage2 (config sample.stage2): ")
    assert "--" not in info.value.template  # no CLI flags in a library message


def test_unknown_rules_list_the_valid_ones() -> None:
    with pytest.raises(InvalidConfigError) as info:
        parse_rule("zipf")
    for usage in USAGE:
        assert usage in str(info.value)


def test_a_missing_quadmix_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidConfigError, match="do not exist") as info:
        parse_rule(f"quadmix:{missing}")
    assert info.value.key == "sample.stage2"
    # a saved plan is read without its file, and so is the legacy tuple parser
    assert parse_rule(f"quadmix:{missing}", check_files=False) == QuadmixRule(str(missing))
    assert parse_stage2_rule(f"quadmix:{missing}") == ("quadmix", None)
    there = tmp_path / "p.json"
    there.write_text("{}")
    rule = parse_rule(f"quadmix:{there}")
    assert isinstance(rule, QuadmixRule)
    assert rule.params_path == str(there)
    assert QuadmixRule().params_path is None


@pytest.mark.parametrize(
    ("spec", "pools", "score", "allocation", "needs"),
    [
        ("random", Pools.ALL, Score.NONE, Allocation.TOKENS, (False, False, False)),
        ("coverage", Pools.ALL, Score.NONE, Allocation.EQUAL, (False, False, False)),
        ("quality-top:0.3", Pools.TOP_SHARE, Score.QUALITY, Allocation.TOKENS, (True, True, False)),
        ("target-top:0.3", Pools.TOP_SHARE, Score.TARGET, Allocation.TOKENS, (True, False, True)),
        ("quadmix", Pools.EXPECTED_REPEATS, Score.QUALITY, Allocation.TOKENS, (True, True, False)),
    ],
)
def test_each_rules_attributes(
    spec: str, pools: Pools, score: Score, allocation: Allocation, needs: tuple[bool, ...]
) -> None:
    rule = parse_rule(spec)
    assert (rule.pools, rule.score, rule.allocation) == (pools, score, allocation)
    assert (rule.needs_codes, rule.needs_quality, rule.needs_target) == needs
    assert rule.p == (0.3 if pools is Pools.TOP_SHARE else None)
    tokens = np.array([3.0, 0.0, 5.0])
    expected = np.ones(3) if allocation is Allocation.EQUAL else tokens
    np.testing.assert_array_equal(rule.child_weights(tokens), expected)


def test_rules_are_values() -> None:
    assert parse_rule("quality-top:0.3") != parse_rule("target-top:0.3")
    assert parse_rule("quality-top:0.3") == parse_rule("quality-top:.3")
    assert len({parse_rule(s) for s in ("random", "RANDOM", "coverage")}) == 2


def test_the_stage2_flag_help_names_every_rule() -> None:
    from hermes_spark.cli.flags import SAMPLE_PLAN

    (stage2,) = [f for f in SAMPLE_PLAN if f.key == "sample.stage2"]
    listed = [part.strip().split()[0] for part in stage2.help.split(" | ")]
    assert [re.split(r"[:\[]", part, maxsplit=1)[0] for part in listed] == list(RULES)
