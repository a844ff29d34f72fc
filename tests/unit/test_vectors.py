"""float16 bytes of embeddings, normalising and finiteness checks (plain numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hermes_spark.embedding.vectors import decode_f16, encode_f16, finite_rows, unit_normalize
from hermes_spark.errors import InvalidInputError

unit_rows = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 20), st.integers(1, 40)),
    elements=st.floats(-1, 1, width=32),
)


@given(unit_rows)
def test_f16_round_trip_is_within_half_precision(x):
    blobs = encode_f16(x)
    assert len(blobs) == x.shape[0] and all(len(b) == 2 * x.shape[1] for b in blobs)
    back = decode_f16(pd.Series(blobs), x.shape[1])
    assert back.dtype == np.float32
    # float16 has an 11-bit significand: relative error <= 2**-11, absolute ~6e-8 near 0
    np.testing.assert_allclose(back, x, rtol=2**-11, atol=6e-8)


def test_bytes_are_little_endian_float16():
    (blob,) = encode_f16(np.array([[1.0, -2.0]], dtype=np.float32))
    assert blob == b"\x00\x3c\x00\xc0"  # 1.0 = 0x3C00, -2.0 = 0xC000, low byte first
    np.testing.assert_array_equal(decode_f16(blob, 2), [[1.0, -2.0]])


def test_decode_refuses_null_and_wrong_length():
    with pytest.raises(InvalidInputError, match="null"):
        decode_f16([b"\x00\x3c", None], 1)
    with pytest.raises(InvalidInputError, match="expected 4"):
        decode_f16([b"\x00\x3c"], 2)
    with pytest.raises(InvalidInputError, match="2-D"):
        encode_f16(np.zeros(3))


@given(unit_rows)
def test_unit_normalize_gives_unit_rows_or_zero(x):
    y = unit_normalize(x * 5.0)
    norms = np.linalg.norm(y, axis=1)
    nonzero = np.linalg.norm(x.astype(np.float64), axis=1) > 1e-6
    np.testing.assert_allclose(norms[nonzero], 1.0, atol=1e-5)
    assert np.all(norms <= 1.0 + 1e-5)


def test_finite_rows_flags_nan_and_both_infinities():
    x = np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, 0.0], [0.0, -np.inf]])
    assert finite_rows(x).tolist() == [True, False, False, False]
