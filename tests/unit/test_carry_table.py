"""Carried Stage-1 weights on collected crosswalk cells (driver math, no Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hermes_spark.errors import InvalidInputError
from hermes_spark.sampling.carry import carry_table


def _cells(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["from_bucket", "to_bucket", "tokens"]).assign(docs=1)


def test_a_refinement_realizes_the_weights_exactly():
    # each old bucket splits into two new ones: finer cells are pure, TV is zero
    cells = _cells([(0, 0, 30), (0, 1, 70), (1, 2, 50), (1, 3, 50), (2, 4, 10), (2, 5, 90)])
    weights, residual, tv, plain_tv, coverage = carry_table(cells, {0: 0.5, 1: 0.3, 2: 0.2})
    assert tv == pytest.approx(0.0, abs=1e-9) and plain_tv == pytest.approx(0.0, abs=1e-9)
    assert residual == pytest.approx(0.0, abs=1e-9) and coverage == 1.0
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[0] + weights[1] == pytest.approx(0.5)


def test_cutting_cells_favour_nnls_over_the_plain_mapping():
    # new bucket 1 straddles old buckets 0 and 1; the plain mapping leaks weight into it
    cells = _cells([(0, 0, 60), (0, 1, 40), (1, 1, 40), (1, 2, 60)])
    weights, _, tv, plain_tv, _ = carry_table(cells, {0: 0.9, 1: 0.1})
    assert tv < plain_tv
    assert tv <= 0.05
    assert set(weights) <= {0, 1, 2}


def test_coverage_counts_weight_on_buckets_without_shared_documents():
    cells = _cells([(0, 0, 10), (1, 1, 10)])
    weights, *_, coverage = carry_table(cells, {0: 0.5, 1: 0.25, 7: 0.25})
    assert coverage == pytest.approx(0.75)
    np.testing.assert_allclose(sorted(weights.values()), [1 / 3, 2 / 3])


def test_no_shared_weighted_bucket_is_refused():
    with pytest.raises(InvalidInputError, match="no weighted from-bucket"):
        carry_table(_cells([(0, 0, 10)]), {5: 1.0})
