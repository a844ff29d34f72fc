"""The executor-side annotate function on pandas frames (no Spark, no real model).

Rows keep their place: a row with a reason (given, or found here) passes through with
null codes and is never embedded; the others get exactly the codebook's codes.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.embedding.encoder import EncodeStats
from hermes_spark.embedding.vectors import decode_f16
from hermes_spark.quantize.codebook import fit_codebook
from tests.helpers import clustered_vectors
from udfs import annotate_udf
from udfs.annotate_udf import (
    EMBEDDING_F16,
    INT32_MAX,
    ModelSettings,
    annotate_schema,
    make_annotate_fn,
    token_counts,
)

DIM = 16


@pytest.fixture(scope="module")
def codebook():
    x = clustered_vectors(300, dim=DIM, seed=3)
    return fit_codebook(x, (4, 3, 2), seed=0, lst_dim=8, n_iter=5, model={"name": "fake"})


def settings_(window: int = 0) -> ModelSettings:
    return ModelSettings("fake", 16, 8, "cpu", sort_window=window)


class FakeModel:
    """Stands in for the encoder: vectors from a lookup table, counts = words."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.seen: list[list[str]] = []
        self.backend = SimpleNamespace(name="fake", device="cpu")
        self.stats = EncodeStats()

    def prepare(self, texts: list[str], *, vectors: bool, counts: bool) -> SimpleNamespace:
        n_tokens = np.array([len(t.split()) for t in texts]) if counts else None
        return SimpleNamespace(tokenized=list(texts) if vectors else None, counts=n_tokens)

    def embed(self, prepared: SimpleNamespace) -> np.ndarray:
        self.seen.append(prepared.tokenized)
        return np.stack([self.table[t] for t in prepared.tokenized]).astype(np.float32)


@pytest.fixture
def fake_model(monkeypatch):
    x = clustered_vectors(8, dim=DIM, seed=9)
    texts = [f"text number {i}" for i in range(7)]
    table = {t: x[i] for i, t in enumerate(texts)}
    table["poisoned text"] = np.full(DIM, np.nan, dtype=np.float32)
    table["infinite text"] = np.r_[np.inf, np.zeros(DIM - 1)].astype(np.float32)
    model = FakeModel(table)
    monkeypatch.setattr(annotate_udf, "get_encoder", lambda settings: model)
    return model


def run(fn, frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(list(fn(iter(frames))), ignore_index=True)


def test_rows_with_a_reason_pass_through_unembedded(codebook, fake_model):
    pdf = pd.DataFrame(
        {
            "doc_id": ["a", "b", "c", "d", "e"],
            "text": ["text number 0", None, "text number 2", "text number 3", "   "],
            "reason": [None, "null_text", "duplicate_doc_id", None, None],
            "keep": [1, 2, 3, 4, 5],
        }
    )
    fn = make_annotate_fn(
        codebook,
        settings_(),
        has_embedding=False,
        has_tokens=False,
        has_quality=False,
        passthrough=("keep",),
    )
    out = run(fn, [pdf])
    assert out["doc_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert out["keep"].tolist() == [1, 2, 3, 4, 5]
    assert out["reason"].tolist() == [None, "null_text", "duplicate_doc_id", None, "empty_text"]
    embedded = [t for batch in fake_model.seen for t in batch]
    assert sorted(embedded) == ["text number 0", "text number 3"]  # rejects never embedded
    rejected = out["reason"].notna()
    for col in ("c1", "c2", "c3", "qerr1", "qerr2", "qerr3", "n_tokens", "quality"):
        assert out.loc[rejected, col].isna().all(), col
        assert out.loc[~rejected, col].notna().all(), col
    want, want_err = codebook.assign(np.stack([fake_model.table[t] for t in pdf["text"][[0, 3]]]))
    np.testing.assert_array_equal(out.loc[~rejected, ["c1", "c2", "c3"]].to_numpy(int), want)
    np.testing.assert_allclose(out.loc[~rejected, ["qerr1", "qerr2", "qerr3"]], want_err)
    assert out.loc[~rejected, "n_tokens"].tolist() == [3, 3]


def test_a_frame_of_rejects_never_loads_the_model(codebook, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model loaded for a frame of rejects")

    monkeypatch.setattr(annotate_udf, "get_encoder", boom)
    fn = make_annotate_fn(
        codebook, settings_(), has_embedding=False, has_tokens=False, has_quality=False
    )
    pdf = pd.DataFrame({"doc_id": ["a"], "text": ["x"], "reason": ["duplicate_doc_id"]})
    out = run(fn, [pdf])
    assert out["reason"].tolist() == ["duplicate_doc_id"] and out["c1"].isna().all()


def test_non_finite_model_vectors_are_rejected_and_the_job_goes_on(codebook, fake_model):
    pdf = pd.DataFrame(
        {
            "doc_id": ["a", "b", "c"],
            "text": ["poisoned text", "text number 1", "infinite text"],
        }
    )
    fn = make_annotate_fn(
        codebook, settings_(), has_embedding=False, has_tokens=False, has_quality=False
    )
    out = run(fn, [pdf])
    assert out["reason"].tolist() == ["non_finite_embedding", None, "non_finite_embedding"]
    assert out["c1"].isna().tolist() == [True, False, True]


def given_frame(vectors: list, tokens: list) -> pd.DataFrame:
    n = len(vectors)
    return pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(n)],
            "text": [f"doc {i}" for i in range(n)],
            "embedding": pd.Series(vectors, dtype=object),
            "n_tokens": pd.Series(tokens, dtype=object),
            "quality": np.linspace(0, 1, n),
        }
    )


def test_given_vectors_with_nan_or_inf_are_rejected(codebook):
    x = clustered_vectors(5, dim=DIM, seed=1)
    rows = [x[0], np.r_[np.nan, x[1][1:]], np.r_[x[2][:-1], -np.inf], x[3], x[4] * 7.0]
    pdf = given_frame([np.asarray(r, dtype=np.float32) for r in rows], [10, 20, 30, 40, 50])
    fn = make_annotate_fn(
        codebook, settings_(), has_embedding=True, has_tokens=True, has_quality=True
    )
    out = run(fn, [pdf])
    nf = "non_finite_embedding"
    assert out["reason"].tolist() == [None, nf, nf, None, None]
    codes, _ = codebook.assign(np.stack([x[0], x[3], x[4]]))  # x[4]*7 is normalised first
    np.testing.assert_array_equal(
        out.loc[out["reason"].isna(), ["c1", "c2", "c3"]].to_numpy(int), codes
    )
    assert out["n_tokens"].tolist()[3] == 40 and pd.isna(out["n_tokens"][1])


def test_ragged_null_and_null_element_vectors_get_their_reasons(codebook):
    x = clustered_vectors(4, dim=DIM, seed=2)
    rows = [x[0].tolist(), None, x[2].tolist()[:-1], [None] * DIM]
    pdf = given_frame(rows, [1, 2, 3, 4])
    fn = make_annotate_fn(
        codebook, settings_(), has_embedding=True, has_tokens=True, has_quality=True
    )
    out = run(fn, [pdf])
    assert out["reason"].tolist() == [
        None,
        "null_embedding",
        "wrong_embedding_length",
        "non_finite_embedding",
    ]


def test_bad_given_token_counts_are_rejected(codebook):
    x = clustered_vectors(6, dim=DIM, seed=4)
    tokens = [5, None, -1, INT32_MAX + 1, 2.5, INT32_MAX]
    pdf = given_frame(list(x), tokens)
    fn = make_annotate_fn(
        codebook, settings_(), has_embedding=True, has_tokens=True, has_quality=True
    )
    out = run(fn, [pdf])
    bad = "bad_token_count"
    assert out["reason"].tolist() == [None, bad, bad, bad, bad, None]
    assert out.loc[[0, 5], "n_tokens"].tolist() == [5, INT32_MAX]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(min_value=-(2**40), max_value=2**40),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=30,
    )
)
def test_token_counts_accept_exactly_the_int32_range(values):
    counts, bad = token_counts(pd.Series(values, dtype=object))
    for v, c, b in zip(values, counts, bad, strict=True):
        usable = (
            v is not None
            and np.isfinite(float(v))
            and float(v) == int(v)
            and 0 <= int(v) <= INT32_MAX
        )
        assert b == (not usable)
        if usable:
            assert c == int(v)


def test_f16_column_holds_the_normalised_vector(codebook):
    x = clustered_vectors(4, dim=DIM, seed=5) * 3.0
    rows = [x[0], np.r_[np.nan, x[1][1:]], x[2], x[3]]
    pdf = given_frame([np.asarray(r, dtype=np.float32) for r in rows], [1, 2, 3, 4])
    fn = make_annotate_fn(
        codebook,
        settings_(),
        has_embedding=True,
        has_tokens=True,
        has_quality=True,
        emit_embedding=True,
    )
    out = run(fn, [pdf])
    assert out[EMBEDDING_F16].isna().tolist() == [False, True, False, False]
    kept = out.loc[out[EMBEDDING_F16].notna(), EMBEDDING_F16]
    assert all(len(b) == DIM * 2 for b in kept)
    got = decode_f16(kept, DIM)
    want = x[[0, 2, 3]] / np.linalg.norm(x[[0, 2, 3]], axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-3)
    names = [f.name for f in annotate_schema(3, [], emit_embedding=True).fields]
    assert names[-2:] == ["reason", EMBEDDING_F16] and list(out.columns) == names


def test_schema_makes_codes_nullable_and_adds_reason():
    schema = annotate_schema(2, [])
    assert [f.name for f in schema.fields] == [
        "doc_id",
        "c1",
        "c2",
        "qerr1",
        "qerr2",
        "n_tokens",
        "quality",
        "reason",
    ]
    assert all(f.nullable for f in schema.fields)


def test_prefetching_the_next_window_changes_nothing(codebook, fake_model):
    texts = [f"text number {i}" for i in range(7)]
    frames = [
        pd.DataFrame({"doc_id": [f"{b}-{i}" for i in range(7)], "text": texts}) for b in range(4)
    ]
    outs = []
    for prefetch in (False, True):
        fn = make_annotate_fn(
            codebook,
            settings_(),
            has_embedding=False,
            has_tokens=False,
            has_quality=False,
            prefetch=prefetch,
        )
        outs.append(run(fn, frames))
    pd.testing.assert_frame_equal(outs[0], outs[1])
    assert outs[1]["doc_id"].tolist() == [d for f in frames for d in f["doc_id"]]
