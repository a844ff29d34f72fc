"""Tests of Stage-1 weight sources, bucket keys, candidate mixtures and mixture exports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_spark.errors import BudgetError, InvalidConfigError, InvalidInputError
from hermes_spark.sampling.exports import doremi_json, megatron_blend, regmix_csv
from hermes_spark.sampling.weights import (
    dirichlet_mixtures,
    format_bucket_key,
    parse_bucket_key,
    resolve_stage1_weights,
)

LEVELS = (64, 64, 32)
# Level-2 buckets 0.1, 0.5, 3.0 and 12.3 with their token counts.
STATS2 = pd.DataFrame(
    {
        "bucket": [0 * 64 + 1, 0 * 64 + 5, 3 * 64 + 0, 12 * 64 + 3],
        "tokens": [100, 400, 1600, 6400],
    }
)
TOKENS2 = STATS2.set_index("bucket")["tokens"].astype(float)


def test_packed_ids_follow_the_codes_table() -> None:
    assert parse_bucket_key("12", 1, LEVELS) == 12
    assert parse_bucket_key("12.3", 2, LEVELS) == 12 * 64 + 3
    assert parse_bucket_key("12.3.7", 3, LEVELS) == (12 * 64 + 3) * 32 + 7
    assert format_bucket_key((12 * 64 + 3) * 32 + 7, 3, LEVELS) == "12.3.7"
    assert format_bucket_key(0, 3, LEVELS) == "0.0.0"


levels_and_codes = st.lists(st.integers(1, 300), min_size=1, max_size=3).flatmap(
    lambda ks: st.tuples(
        st.just(tuple(ks)),
        st.tuples(*(st.integers(0, k - 1) for k in ks)),
    )
)


@given(levels_and_codes)
def test_bucket_keys_round_trip(case: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    levels, codes = case
    for level in range(1, len(levels) + 1):
        key = ".".join(str(c) for c in codes[:level])
        bucket = parse_bucket_key(key, level, levels)
        assert 0 <= bucket < int(np.prod(levels[:level]))
        assert format_bucket_key(bucket, level, levels) == key
        assert parse_bucket_key(format_bucket_key(bucket, level, levels), level, levels) == bucket


@pytest.mark.parametrize("key", ["12", "12.3.7", "64.0", "1.64", "a.b", "-1.2", "1..2", "", "1.٣"])
def test_parse_bucket_key_rejects(key: str) -> None:
    with pytest.raises(BudgetError):
        parse_bucket_key(key, 2, LEVELS)


def test_parse_bucket_key_strips_whitespace() -> None:
    assert parse_bucket_key(" 1.2 ", 2, LEVELS) == 66


def test_format_bucket_key_rejects_out_of_range() -> None:
    with pytest.raises(InvalidInputError):
        format_bucket_key(64 * 64, 2, LEVELS)
    with pytest.raises(InvalidConfigError):
        format_bucket_key(1, 4, LEVELS)


def _resolve(spec: str, max_epochs: float = 4.0) -> tuple[pd.Series, dict]:
    return resolve_stage1_weights(spec, STATS2, 2, LEVELS, max_epochs)


def test_rule_formulas() -> None:
    t = TOKENS2.to_numpy()
    weights, info = _resolve("proportional")
    np.testing.assert_allclose(weights.to_numpy(), t / t.sum())
    assert list(weights.index) == list(TOKENS2.index)
    assert info["unlisted_buckets"] == []
    weights, _ = _resolve("uniform")
    np.testing.assert_allclose(weights.to_numpy(), 0.25)
    for tau in (0.3, 1.0, 2.5):
        weights, _ = _resolve(f"temperature:{tau}")
        np.testing.assert_allclose(weights.to_numpy(), t**tau / (t**tau).sum())
    weights, info = _resolve("unimax", max_epochs=2.0)
    np.testing.assert_allclose(weights.to_numpy(), 0.25)
    assert info["max_epochs"] == 2.0


def test_temperature_survives_huge_exponents() -> None:
    weights, _ = _resolve("temperature:400")
    assert weights.iloc[-1] == pytest.approx(1.0)
    assert np.isfinite(weights).all()


@pytest.mark.parametrize(
    "spec", ["temperature", "temperature:0", "temperature:-1", "temperature:abc", "temperature:inf"]
)
def test_bad_temperature(spec: str) -> None:
    with pytest.raises(InvalidConfigError):
        _resolve(spec)


def test_unknown_rule_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidConfigError, match=r"proportional.*uniform.*temperature.*unimax"):
        _resolve("softmax")


def test_bad_max_epochs() -> None:
    with pytest.raises(InvalidConfigError):
        _resolve("uniform", max_epochs=0)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_json_file_normalises_and_reports_unlisted(tmp_path: Path) -> None:
    spec = _write(tmp_path, "w.json", json.dumps({"12.3": 3, "0.1": 1}))
    weights, info = _resolve(spec)
    assert weights.to_dict() == {1: 0.25, 5: 0.0, 192: 0.0, 771: 0.75}
    assert info["unlisted_buckets"] == ["0.5", "3.0"]
    assert info["source"] == spec


@pytest.mark.parametrize("key_col", ["key", "bucket"])
def test_csv_file(tmp_path: Path, key_col: str) -> None:
    spec = _write(tmp_path, "w.csv", f"{key_col},weight\n0.1,1\n0.5,1\n3.0,2\n12.3,0\n")
    weights, info = _resolve(spec)
    np.testing.assert_allclose(weights.to_numpy(), [0.25, 0.25, 0.5, 0.0])
    assert info["unlisted_buckets"] == []


def test_doremi_file_round_trips(tmp_path: Path) -> None:
    spec = _write(tmp_path, "doremi.json", doremi_json({"0.1": 0.2, "3.0": 0.8}))
    weights, _ = _resolve(spec)
    assert weights.to_dict() == {1: 0.2, 5: 0.0, 192: 0.8, 771: 0.0}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"0.1": 1, "9.9": 1, "63.63": 2}', "9.9.*63.63"),  # unknown (empty) buckets
        ('{"0.1": 1, "0.1.4": 1}', "0.1.4"),  # wrong depth
        ('{"0.1": 1, "0.5": -1}', "0.5"),
        ('{"0.1": 1, "0.5": NaN}', "0.5"),
        ('{"0.1": 1, "0.5": Infinity}', "0.5"),
        ('{"0.1": 1, "0.5": "lots"}', "0.5"),
        ('{"0.1": 1, "0.5": true}', "0.5"),
        ('{"0.1": 0, "0.5": 0}', "sum"),
        ('{"0.1": 1, "0.1": 2}', "twice"),
        ("{}", "no bucket"),
    ],
)
def test_invalid_weight_files(tmp_path: Path, text: str, match: str) -> None:
    spec = _write(tmp_path, "w.json", text)
    with pytest.raises(BudgetError, match=match):
        _resolve(spec)


@pytest.mark.parametrize(
    ("name", "text"),
    [("w.json", "{not json"), ("w.json", "[1, 2]"), ("w.csv", "a,b\n1,2\n")],
)
def test_malformed_weight_files(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(InvalidInputError):
        _resolve(_write(tmp_path, name, text))


def test_missing_weight_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        _resolve(str(tmp_path / "absent.json"))


def test_stats_are_validated() -> None:
    with pytest.raises(InvalidInputError):
        resolve_stage1_weights("uniform", STATS2.drop(columns="tokens"), 2, LEVELS, 1.0)
    with pytest.raises(BudgetError):
        resolve_stage1_weights("uniform", STATS2.iloc[:0], 2, LEVELS, 1.0)
    with pytest.raises(InvalidInputError):
        resolve_stage1_weights("uniform", STATS2.assign(bucket=64 * 64), 2, LEVELS, 1.0)
    with pytest.raises(BudgetError):
        resolve_stage1_weights("proportional", STATS2.assign(tokens=0), 2, LEVELS, 1.0)


def test_dirichlet_mixtures_are_deterministic_and_normalised(tmp_path: Path) -> None:
    first = dirichlet_mixtures(STATS2, 2, LEVELS, 8, seed=7)
    assert first == dirichlet_mixtures(STATS2, 2, LEVELS, 8, seed=7)
    assert first != dirichlet_mixtures(STATS2, 2, LEVELS, 8, seed=8)
    assert len(first) == 8
    for mix in first:
        assert list(mix) == ["0.1", "0.5", "3.0", "12.3"]
        assert sum(mix.values()) == pytest.approx(1.0)
        assert min(mix.values()) >= 0
    assert len({tuple(m.values()) for m in first}) == 8
    # Each mixture is a usable weights file.
    spec = _write(tmp_path, "mix.json", json.dumps(first[3]))
    weights, info = _resolve(spec)
    np.testing.assert_allclose(weights.to_numpy(), list(first[3].values()))
    assert info["unlisted_buckets"] == []


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_dirichlet_mean_approaches_the_prior(temperature: float) -> None:
    t = TOKENS2.to_numpy() ** temperature
    prior = t / t.sum()
    mixes = dirichlet_mixtures(
        STATS2, 2, LEVELS, 400, temperature=temperature, concentration=1e4, seed=1
    )
    mean = np.array([list(m.values()) for m in mixes]).mean(axis=0)
    np.testing.assert_allclose(mean, prior, atol=2e-3)
    loose = dirichlet_mixtures(STATS2, 2, LEVELS, 400, concentration=0.5, seed=1)
    spread = np.array([list(m.values()) for m in loose]).std(axis=0)
    assert (spread > 0.05).all()  # small concentration explores far from the prior


def test_dirichlet_rejects_bad_parameters() -> None:
    for kwargs in ({"temperature": 0.0}, {"concentration": -1.0}, {"concentration": np.inf}):
        with pytest.raises(InvalidConfigError):
            dirichlet_mixtures(STATS2, 2, LEVELS, 3, **kwargs)
    with pytest.raises(InvalidConfigError):
        dirichlet_mixtures(STATS2, 2, LEVELS, 0)


def test_doremi_json_format() -> None:
    doc = json.loads(doremi_json({"a": 0.25, "b": 0.75}, eval_weights={"a": 1.0}))
    assert doc == {
        "train_domain_weights": {"a": 0.25, "b": 0.75},
        "eval_domain_weights": {"a": 1.0},
    }
    with pytest.raises(BudgetError):
        doremi_json({"a": -0.1})


def test_regmix_csv_format() -> None:
    rows = list(csv.reader(io.StringIO(regmix_csv([{"0.1": 0.5, "3.0": 0.5}, {"12.3": 1.0}]))))
    assert rows[0] == ["index", "0.1", "3.0", "12.3"]
    assert rows[1] == ["0", "0.5", "0.5", "0.0"]
    assert rows[2] == ["1", "0.0", "0.0", "1.0"]
    single = list(csv.reader(io.StringIO(regmix_csv({"a,b": 1.0}))))
    assert single == [["index", "a,b"], ["0", "1.0"]]
    with pytest.raises(BudgetError):
        regmix_csv([])


def test_megatron_blend_format() -> None:
    line = megatron_blend({"0.1": 0.3, "3.0": 0.0, "12.3": 0.7}, {"0.1": "/d/a", "12.3": "/d/b"})
    assert line == "0.3 /d/a 0.7 /d/b\n"
    with pytest.raises(InvalidInputError):
        megatron_blend({"0.1": 1.0}, {})
    with pytest.raises(InvalidInputError):
        megatron_blend({"0.1": 1.0}, {"0.1": "/with space/x"})
    with pytest.raises(BudgetError):
        megatron_blend({"0.1": float("nan")}, {"0.1": "/d/a"})
