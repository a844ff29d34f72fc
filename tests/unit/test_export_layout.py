"""``export --per-bucket``: shards per bucket follow the bucket's tokens, bounded total."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hermes_spark.export import bucket_shards

tokens_maps = st.dictionaries(
    st.integers(0, 10_000), st.integers(0, 10**12), min_size=1, max_size=300
)


@given(tokens_maps, st.integers(1, 100_000))
def test_total_is_bounded_and_every_bucket_gets_a_shard(tokens, total):
    got = bucket_shards(tokens, total)
    assert set(got) == set(tokens)
    assert sum(got.values()) == max(total, len(tokens))
    assert min(got.values()) >= 1


@given(tokens_maps, st.integers(1, 100_000))
def test_more_tokens_never_means_fewer_shards(tokens, total):
    got = bucket_shards(tokens, total)
    for a in tokens:
        for b in tokens:
            if tokens[a] > tokens[b]:
                assert got[a] >= got[b]


def test_shards_follow_the_bytes():
    # 16M partitions at level 2 were N per bucket: here one giant bucket takes the most
    got = bucket_shards({0: 900, 1: 90, 2: 10}, 100)
    assert got == {0: 88, 1: 10, 2: 2}
    assert bucket_shards({b: 1 for b in range(4096)}, 64) == {b: 1 for b in range(4096)}
