"""Tests of the built-in quality scorer (pandas batches, no Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import InvalidInputError
from tests.helpers import shared_corpus
from udfs.quality import N_CHECKS, quality_scores

PROSE = (
    "The river town grew slowly over the nineteenth century. Farmers brought their grain to "
    "the mill on the eastern bank, and the ferry that crossed the water twice a day carried "
    "news as well as passengers.\n"
    "When the railway arrived in 1871, the ferry lost most of its trade. The mill owners "
    "built a siding to the station and began to ship flour to the cities of the coast, "
    "which changed the character of the town within a single generation.\n"
    "Today the old mill is a museum. Visitors can walk through the rooms where the stones "
    "once turned, and a small exhibition explains how the families who worked there lived, "
    "what they ate, and how their children were taught to read and write."
)

SPAM = "\n".join(
    ["BEST PRICE!!! cheap watches cheap watches buy now #deal #sale #cheap ..."] * 6
    + ["click here >>> $$$ 100% free $$$ ..."] * 4
)

BOILERPLATE = "\n".join(
    [
        "Home",
        "About us",
        "Contact",
        "Login | Register",
        "This site uses cookies. Please enable JavaScript to continue.",
        "Privacy Policy",
        "Terms of Use",
        "Home",
        "About us",
        "Contact",
        "© 2024 All rights reserved",
    ]
)

CODE = "function f(x) {\n  return x * 2;\n}\nvar y = f(3);\nconsole.log(y);\n" * 5
LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12
NUMBERS = "\n".join(" ".join(str(i * j) for j in range(12)) for i in range(10))


def test_clean_prose_beats_boilerplate_and_spam() -> None:
    texts = pd.Series([PROSE, SPAM, BOILERPLATE, CODE, LOREM, NUMBERS])
    scores = quality_scores(texts)
    assert scores.iloc[0] > 0.95
    for i in range(1, len(texts)):
        assert scores.iloc[0] > scores.iloc[i] + 0.1, f"text {i} scored {scores.iloc[i]}"


def test_null_texts_score_nan_and_the_index_is_kept() -> None:
    texts = pd.Series([PROSE, None, "", np.nan], index=[10, 20, 30, 40])
    scores = quality_scores(texts)
    assert list(scores.index) == [10, 20, 30, 40]
    assert scores.dtype == np.float64
    assert scores.name == "quality"
    assert np.isnan(scores[20]) and np.isnan(scores[40])
    assert 0 <= scores[30] < 0.5  # empty text fails the word and line checks
    assert scores[10] > scores[30]


def test_empty_batch_and_non_string_input() -> None:
    assert quality_scores(pd.Series([], dtype=object)).empty
    with pytest.raises(InvalidInputError):
        quality_scores(pd.Series([PROSE, 3]))


def test_each_binary_check_costs_one_share() -> None:
    base = quality_scores(pd.Series([PROSE])).iloc[0]
    for extra in (" lorem ipsum", " {", "\nPlease enable javascript in your browser."):
        worse = quality_scores(pd.Series([PROSE + extra])).iloc[0]
        assert base - worse == pytest.approx(1 / N_CHECKS, abs=0.02), extra


def test_repeated_lines_lower_the_score() -> None:
    line = "The committee met on Tuesday and agreed to publish the report next month."
    varied = "\n".join(f"{line[:-1]} number {i}." for i in range(20))
    repeated = "\n".join([line] * 20)
    scores = quality_scores(pd.Series([varied, repeated]))
    assert scores.iloc[0] - scores.iloc[1] > 1.5 / N_CHECKS


def test_scores_do_not_depend_on_the_batch() -> None:
    corpus = pd.Series([PROSE, SPAM, BOILERPLATE, CODE, None, LOREM, NUMBERS, ""])
    together = quality_scores(corpus)
    alone = pd.concat([quality_scores(corpus.iloc[[i]]) for i in range(len(corpus))])
    pd.testing.assert_series_equal(together, alone)
    shuffled = quality_scores(corpus.iloc[::-1])
    pd.testing.assert_series_equal(together, shuffled.sort_index())
    arrow = quality_scores(corpus.astype(pd.ArrowDtype(pa.large_string())))
    np.testing.assert_array_equal(together.to_numpy(), arrow.to_numpy())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), max_size=20))
def test_scores_lie_in_unit_interval(texts: list[str | None]) -> None:
    scores = quality_scores(pd.Series(texts, dtype=object))
    assert len(scores) == len(texts)
    null = np.array([t is None for t in texts], dtype=bool)
    assert np.isnan(scores.to_numpy()[null]).all()
    valid = scores.to_numpy()[~null]
    assert ((valid >= 0) & (valid <= 1)).all()


def test_real_web_text_tracks_the_fineweb_edu_classifier() -> None:
    frame = pd.read_parquet(shared_corpus("fineweb_1k_eduscored.parquet"))
    scores = quality_scores(frame["text"])
    assert scores.between(0, 1).all()
    assert scores.notna().all()
    assert scores.corr(frame["edu_score"], method="spearman") > 0.15
    # The score ranks finely enough to cut a top-30% pool without ties swallowing it.
    assert (scores >= scores.quantile(0.7)).mean() < 0.35


def test_trailing_whitespace_does_not_change_the_score_whatever_memory_holds() -> None:
    # pyarrow's whitespace split can emit a spurious trailing "" token depending on
    # the recycled memory it writes into; churn the allocator so a regression shows.
    texts = pd.Series([CODE.rstrip(), CODE, CODE + " \t\n"])
    for i in range(60):
        churn = [pa.array(np.random.default_rng(i).bytes(997 + 37 * i).split(b"\x00"))]
        scores = quality_scores(texts)
        assert scores.nunique() == 1, (i, scores.tolist(), len(churn))
