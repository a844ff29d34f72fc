"""Token-budget batches over length-sorted documents (plain numpy)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.embedding.batching import pad_batch, padding_ratio, token_batches

lengths_st = st.lists(st.integers(min_value=1, max_value=512), min_size=0, max_size=300)


@settings(max_examples=150, deadline=None)
@given(lengths_st, st.integers(min_value=1, max_value=20_000), st.floats(0.0, 0.5))
def test_batches_cover_every_document_once_within_the_budget(lengths, budget, max_padding):
    lengths = np.array(lengths, dtype=np.int64)
    batches = token_batches(lengths, budget, max_padding=max_padding, min_rows=4)
    got = np.sort(np.concatenate(batches)) if batches else np.array([], dtype=np.int64)
    np.testing.assert_array_equal(got, np.arange(len(lengths)))
    for b in batches:
        longest = lengths[b].max()
        assert len(b) == 1 or len(b) * longest <= budget  # the budget holds
        if len(b) > 4:  # beyond min_rows the padding bound holds
            real = lengths[b].sum()
            assert len(b) * longest - real <= max_padding * real + 1e-9
    firsts = [lengths[b].max() for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest documents first


def test_dense_lengths_fill_the_budget_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.0, 0.8, size=20_000).astype(int), 3, 256)
    batches = token_batches(lengths, 64 * 256)
    assert padding_ratio(lengths, batches) < 0.02
    # batches are as large as the budget allows, except among the shortest documents
    # (lengths 3 vs 4 differ by 33%: the padding bound cuts there, which costs nothing)
    long = [b for b in batches if lengths[b].max() >= 50][:-1]
    assert len(long) > 50
    assert min(len(b) * lengths[b].max() for b in long) > 0.9 * 64 * 256


def test_padding_ratio_and_pad_batch():
    ids = [np.array([5, 6, 7]), np.array([8])]
    out, mask = pad_batch(ids)
    np.testing.assert_array_equal(out, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])
    assert padding_ratio(np.array([3, 1]), [np.array([0, 1])]) == 2 / 4
