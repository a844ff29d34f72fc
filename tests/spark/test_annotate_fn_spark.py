"""The row-preserving annotate function inside a real ``mapInPandas`` (given vectors)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import types as T

from hermes_spark.embedding.vectors import decode_f16
from hermes_spark.quantize.codebook import fit_codebook
from tests.helpers import clustered_vectors
from udfs.annotate_udf import ModelSettings, annotate_schema, make_annotate_fn

pytestmark = pytest.mark.spark
DIM = 8


def test_rejects_keep_their_place_with_null_codes_through_arrow(spark):
    x = clustered_vectors(200, dim=DIM, seed=0)
    book = fit_codebook(x, (4, 2), seed=0, lst_dim=4, n_iter=5, model={"name": "fake"})
    rows = []
    for i in range(40):
        vec = [float(v) for v in x[i]]
        reason = "duplicate_doc_id" if i % 10 == 3 else None
        if i % 10 == 5:
            vec[0] = float("inf")
        tokens = -4 if i % 10 == 7 else 10 + i
        rows.append((f"d{i:02d}", f"text {i}", reason, vec, tokens, 0.5, i))
    df = spark.createDataFrame(
        rows,
        "doc_id string, text string, reason string, embedding array<float>, "
        "n_tokens bigint, quality double, k int",
    ).repartition(3)
    fn = make_annotate_fn(
        book,
        ModelSettings("fake", 16, 8, "cpu"),
        has_embedding=True,
        has_tokens=True,
        has_quality=True,
        passthrough=("k",),
        emit_embedding=True,
    )
    schema = annotate_schema(2, [T.StructField("k", T.IntegerType())], emit_embedding=True)
    out = df.mapInPandas(fn, schema).toPandas().sort_values("doc_id").reset_index(drop=True)
    assert len(out) == 40 and out["k"].tolist() == list(range(40))
    want = {3: "duplicate_doc_id", 5: "non_finite_embedding", 7: "bad_token_count"}
    assert out["reason"].tolist() == [want.get(i % 10) for i in range(40)]
    bad = out["reason"].notna()
    assert (
        out.loc[bad, ["c1", "c2", "qerr1", "n_tokens", "quality", "embedding_f16"]]
        .isna()
        .all()
        .all()
    )
    codes, _ = book.assign(x[:40][~bad.to_numpy()])
    np.testing.assert_array_equal(out.loc[~bad, ["c1", "c2"]].to_numpy(int), codes)
    vecs = decode_f16(out.loc[~bad, "embedding_f16"], DIM)
    np.testing.assert_allclose(vecs, x[:40][~bad.to_numpy()], atol=1e-3)
