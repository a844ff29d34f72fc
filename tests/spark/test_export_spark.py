"""``hermes export``: the manifest joined back to the corpus, expanded and sharded."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from hermes_spark.config import SampleConfig
from hermes_spark.sampling.plan import compute_plan
from hermes_spark.sampling.select import run_sample
from tests.spark.test_sampling_spark import assert_clean_error, build_codes, run

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def sampled(spark, tmp_path_factory):
    """A codes table and a manifest with repeats (budget ≈ 1.3 epochs of the corpus)."""
    root = tmp_path_factory.mktemp("export")
    data = build_codes(spark, root)
    plan = compute_plan(
        spark,
        SampleConfig(
            budget_tokens=1_200_000, weights="uniform", stage2="coverage", max_epochs=3, seed=5
        ),
        table=data["codes"],
    )
    run_sample(spark, data["codes"], str(root / "manifest"), plan)
    data["manifest"] = str(root / "manifest")
    return data


def read_shards(out, ext: str = "parquet") -> list[pd.DataFrame]:
    files = sorted(out.rglob(f"part-*.{ext}"))
    if ext == "parquet":
        return [pq.read_table(f).to_pandas() for f in files]
    return [
        pd.read_json(f, lines=True, dtype={"doc_id": str}) if f.stat().st_size else pd.DataFrame()
        for f in files
    ]


def export(capsys, sampled, out, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "export",
        "--manifest",
        sampled["manifest"],
        "--input",
        sampled["corpus"],
        "--out",
        str(out),
        "--embedding-col",
        "emb",
        *extra,
    )


def test_export_rows_equal_sum_of_repeats(spark, sampled, tmp_path, capsys):
    code, out, err = export(capsys, sampled, tmp_path / "out", "--shards", "4")
    assert code == 0, err
    man = DeltaTable(sampled["manifest"]).to_pandas()
    assert man["repeats"].max() >= 2
    shards = read_shards(tmp_path / "out")
    assert len(shards) == 4 and all(len(s) for s in shards)
    rows = pd.concat(shards, ignore_index=True)
    assert len(rows) == man["repeats"].sum()
    assert f"exported {man['repeats'].sum()} rows" in out
    assert not rows.duplicated(["doc_id", "repeat_index"]).any()
    copies = rows.groupby("doc_id")["repeat_index"].agg(["max", "size"])
    want = man.set_index("doc_id")["repeats"]
    assert (copies["size"] == want.loc[copies.index]).all()
    assert (copies["max"] == copies["size"]).all()
    corpus = pq.read_table(sampled["corpus"]).to_pandas().set_index("id")
    assert (rows["text"].to_numpy() == corpus.loc[rows["doc_id"], "text"].to_numpy()).all()
    assert "emb" not in rows.columns and {"tokens", "quality", "id"} <= set(rows.columns)
    mixture = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert mixture["rows"] == len(rows)
    assert [f["rows"] for f in mixture["files"]] == [len(s) for s in shards]
    assert mixture["tokens"] == int((man["repeats"] * man["tokens"]).sum())
    doremi = json.loads((tmp_path / "out" / "doremi_weights.json").read_text())
    assert doremi["train_domain_weights"] == pytest.approx(mixture["weights"])
    assert (tmp_path / "out" / "regmix_mixture.csv").exists()


def test_export_is_deterministic_and_shuffled(spark, sampled, tmp_path, capsys):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "3")
        assert export(capsys, sampled, tmp_path / "a", "--shards", "3", "--seed", "1")[0] == 0
        spark.conf.set("spark.sql.shuffle.partitions", "13")
        spark.conf.set("spark.sql.files.maxPartitionBytes", "20000")
        assert export(capsys, sampled, tmp_path / "b", "--shards", "3", "--seed", "1")[0] == 0
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    a, b = read_shards(tmp_path / "a"), read_shards(tmp_path / "b")
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert export(capsys, sampled, tmp_path / "c", "--shards", "3", "--seed", "2")[0] == 0
    c = read_shards(tmp_path / "c")
    assert list(a[0]["doc_id"]) != list(c[0]["doc_id"])
    order = a[0]["doc_id"].tolist()
    assert order != sorted(order)  # shuffled, not in id order


def test_jsonl_per_bucket_export_with_megatron_blend(spark, sampled, tmp_path, capsys):
    code, _, err = export(
        capsys,
        sampled,
        tmp_path / "out",
        "--format",
        "jsonl",
        "--shards",
        "2",
        "--per-bucket",
        "--keep-cols",
        "tokens",
    )
    assert code == 0, err
    man = DeltaTable(sampled["manifest"]).to_pandas()
    buckets = sorted(man["stage1_bucket"].unique())
    dirs = sorted(p.name for p in (tmp_path / "out").glob("bucket-*"))
    assert dirs == [f"bucket-{b}" for b in buckets]
    total = 0
    for b in buckets:
        parts = read_shards(tmp_path / "out" / f"bucket-{b}", "jsonl")
        assert len(parts) == 2
        rows = pd.concat(parts, ignore_index=True)
        assert set(rows.columns) == {
            "doc_id",
            "repeat_index",
            "stage1_bucket",
            "stage2_bucket",
            "text",
            "tokens",
        }
        assert (rows["stage1_bucket"] == b).all()
        total += len(rows)
    assert total == man["repeats"].sum()
    blend = (tmp_path / "out" / "megatron_blend.txt").read_text().split()
    assert len(blend) == 2 * len(buckets)
    assert blend[1].endswith(f"bucket-{buckets[0]}/megatron_text_document")
    assert sum(float(w) for w in blend[::2]) == pytest.approx(1.0)


def test_export_refuses_missing_documents_and_reused_dirs(spark, sampled, tmp_path, capsys):
    corpus = pq.read_table(sampled["corpus"])
    (tmp_path / "small").mkdir()
    pq.write_table(corpus.slice(0, 500), tmp_path / "small" / "part-0.parquet")
    code, _, err = run(
        capsys,
        "export",
        "--manifest",
        sampled["manifest"],
        "--input",
        str(tmp_path / "small"),
        "--out",
        str(tmp_path / "o"),
    )
    assert_clean_error(code, err, "manifest documents are not in corpus")
    assert export(capsys, sampled, tmp_path / "o2", "--shards", "1")[0] == 0
    code, _, err = export(capsys, sampled, tmp_path / "o2", "--shards", "1")
    assert_clean_error(code, err, "--overwrite")
    assert export(capsys, sampled, tmp_path / "o2", "--shards", "2", "--overwrite")[0] == 0
    assert len(read_shards(tmp_path / "o2")) == 2
    code, _, err = export(capsys, sampled, tmp_path / "o3", "--shards", "0")
    assert_clean_error(code, err, "--shards")
    code, _, err = run(
        capsys,
        "export",
        "--manifest",
        str(tmp_path / "nope"),
        "--input",
        sampled["corpus"],
        "--out",
        str(tmp_path / "o4"),
    )
    assert_clean_error(code, err, "does not exist")
