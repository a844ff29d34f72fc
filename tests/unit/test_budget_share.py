"""``--budget-share``: a budget as a share of the version's tokens, checked before Spark."""

from __future__ import annotations

import pytest

from hermes_spark.cli import commands
from hermes_spark.config import SampleConfig
from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.planner import resolve_budget
from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run


@pytest.mark.parametrize("share", [0.0, -0.3, float("nan"), float("inf")])
def test_a_share_must_be_positive_and_finite(share):
    with pytest.raises(InvalidConfigError, match="budget_share"):
        SampleConfig(budget_share=share)


def test_tokens_and_share_exclude_each_other():
    with pytest.raises(InvalidConfigError, match="not both"):
        SampleConfig(budget_tokens=1000, budget_share=0.3)


@pytest.mark.parametrize("share", [0.3, 1.0, 2.5])
def test_the_share_scales_the_version_tokens(share):
    assert resolve_budget(SampleConfig(budget_share=share), 12_345.0) == pytest.approx(
        share * 12_345.0
    )
    assert resolve_budget(SampleConfig(budget_tokens=77.0), 12_345.0) == 77.0


@pytest.fixture
def no_spark(monkeypatch):
    def refuse(cfg):
        raise AssertionError("Spark started before the budget flags were checked")

    monkeypatch.setattr(commands, "_spark", refuse)


@pytest.mark.parametrize("command", ["plan", "sample"])
@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--budget-tokens", "1000", "--budget-share", "0.3"], ["budget_share", "not both"]),
        (["--budget-share", "0"], ["budget_share", "positive"]),
        (["--budget-share", "-1"], ["budget_share", "positive"]),
        (["--budget-share", "some"], ["--budget-share"]),
    ],
)
def test_bad_budget_flags_exit_2_before_spark(no_spark, capsys, tmp_path, command, flags, needles):
    args = [command, "--table", str(tmp_path / "codes"), *flags]
    if command == "sample":
        args += ["--out", str(tmp_path / "m")]
    code, _, err = run(capsys, *args)
    assert_clean_error(code, err, *needles)
