"""Parsing of ``--quality-cols`` (no Spark)."""

from __future__ import annotations

import pytest

from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.signals import parse_quality_cols


def test_weights_and_thresholds_parse_and_round_trip():
    sig = parse_quality_cols("edu:0.6, dclm:0.4, edu>=0.3")
    assert sig.weights == (("edu", 0.6), ("dclm", 0.4))
    assert sig.filters == (("edu", ">=", 0.3),)
    assert sig.columns == ["edu", "dclm"]
    assert not sig.plain
    assert parse_quality_cols(sig.spec()) == sig


def test_one_column_is_plain_and_a_weighted_threshold_counts_as_both():
    assert parse_quality_cols("edu").plain
    assert parse_quality_cols({"edu": 2.0}).weights == (("edu", 2.0),)
    sig = parse_quality_cols("edu>0.5:2")
    assert sig.weights == (("edu", 2.0),) and sig.filters == (("edu", ">", 0.5),)
    assert not sig.plain


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("edu:0", "must be > 0"),
        ("edu:-1", "must be > 0"),
        ("edu>=0.3", "at least one weighted"),
        ("edu:1,edu:2", "twice"),
        ("edu=>3", "is not NAME"),
        ("", "at least one weighted"),
    ],
)
def test_bad_specs_are_config_errors(spec, needle):
    with pytest.raises(InvalidConfigError, match=needle):
        parse_quality_cols(spec)
