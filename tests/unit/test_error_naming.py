"""The library names arguments and config keys; the CLI names its flags, through the one
flag table (``cli/flags.py``'s ``key=``)."""

from __future__ import annotations

import pytest

from hermes_spark.cli import flag_for
from hermes_spark.cli.flags import COMMANDS
from hermes_spark.config import SampleConfig
from hermes_spark.errors import BudgetError, InvalidConfigError
from hermes_spark.sampling.levels import check_levels
from tests.helpers import assert_clean_error, run_cli


def test_a_library_error_names_the_argument_and_key_not_the_flag() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        SampleConfig(budget_tokens=-5)
    text = str(caught.value)
    assert text.startswith("budget_tokens (config sample.budget_tokens): ")
    assert "--" not in text
    with pytest.raises(InvalidConfigError) as caught:
        check_levels(3, None, 3)
    assert str(caught.value).startswith("weights_level (config sample.weights_level): ")
    assert "--" not in str(caught.value)


def test_the_cli_names_the_flag_of_the_same_error(capsys) -> None:
    code, _, err = run_cli(
        capsys, "sample", "--table", "out/codes", "--out", "out/m", "--budget-tokens", "-5"
    )
    line = assert_clean_error(code, err, "--budget-tokens (config sample.budget_tokens): ")
    assert "budget_tokens (config" not in line.replace("--budget-tokens (config", "")


def test_settings_a_message_mentions_are_named_per_caller() -> None:
    exc = BudgetError("lower {sample.budget_tokens} or pass {allow_shortfall}")
    assert str(exc) == "lower budget_tokens or pass allow_shortfall"
    assert exc.naming(flag_for) == "lower --budget-tokens or pass --allow-shortfall"


def test_every_config_key_of_the_flag_table_maps_back_to_its_flag() -> None:
    for command in COMMANDS:
        for flag in command.flags:
            if flag.key:
                assert flag_for(flag.key, command) == flag.names[0], (command.name, flag)
