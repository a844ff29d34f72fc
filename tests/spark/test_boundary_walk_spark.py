"""The boundary walk on Spark: pandas groups follow one child's window, not its bucket's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.delta import get_store
from hermes_spark.sampling import select as select_mod
from hermes_spark.sampling import walk as walk_mod
from hermes_spark.sampling.select import select_manifest
from tests.helpers import build_codes
from tests.spark.test_sampling_spark import (
    assert_same_manifest,
    make_plan,
    manifest_pdf,
    reference_manifest,
)

pytestmark = pytest.mark.spark

HUGE = 2_000_000  # tokens of the one large document: wider than any child's pool


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory):
    return build_codes(spark, tmp_path_factory.mktemp("walk"))


def spy(fn, folder: Path):
    """``fn`` recording each pandas group's row count in ``folder`` (runs in workers)."""

    def wrapped(pdf):
        (folder / uuid.uuid4().hex).write_text(str(len(pdf)))
        return fn(pdf)

    return wrapped


def group_sizes(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in folder.iterdir()]


def test_one_large_document_does_not_widen_its_siblings_walk(spark, data, tmp_path, monkeypatch):
    store = get_store(spark)
    plan = make_plan(spark, data)
    codes_pdf = DeltaTable(data["codes"]).to_pandas()
    kids = plan.children[plan.children["alloc"] > 0]
    parent = kids.groupby("parent")["pool_docs"].sum().idxmax()
    last = kids[kids["parent"] == parent]["child"].max()  # no sibling receives its carry
    s = plan.stage2_level
    doc = codes_pdf[codes_pdf[f"bucket{s}"] == last]["doc_id"].min()
    big = store.read(data["codes"]).withColumn(
        "n_tokens", F.when(F.col("doc_id") == doc, F.lit(HUGE)).otherwise(F.col("n_tokens"))
    )
    table = str(tmp_path / "codes_big")
    store.overwrite(big, table)
    data_big = dict(data, codes=table)
    monkeypatch.setattr(select_mod, "BIN_DOCS", 8)
    plan = make_plan(spark, data_big)
    sorted_dir, chained_dir = tmp_path / "sorted", tmp_path / "chained"
    sorted_dir.mkdir()
    chained_dir.mkdir()
    monkeypatch.setattr(walk_mod, "order_window", spy(walk_mod.order_window, sorted_dir))
    monkeypatch.setattr(walk_mod, "resolve_goals", spy(walk_mod.resolve_goals, chained_dir))

    manifest, windows = select_manifest(store.read(table), plan)
    got = manifest_pdf(manifest)
    assert_same_manifest(got, reference_manifest(spark, plan, DeltaTable(table).to_pandas()))

    bucket_docs = int(windows[windows["parent"] == parent]["pool_docs"].sum())
    sorted_sizes, chained_sizes = group_sizes(sorted_dir), group_sizes(chained_dir)
    assert max(sorted_sizes) <= int(windows["window_docs"].max())
    # a window as wide as the bucket's largest document would hold every sibling's pool
    assert max(sorted_sizes) * 4 < bucket_docs
    siblings = windows[(windows["parent"] == parent) & (windows["child"] != last)]
    assert (siblings["b"] < HUGE / 100).all()
    assert max(chained_sizes) * 4 < bucket_docs
