"""``hermes export``: the manifest joined back to the corpus, expanded and sharded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark import export as export_mod
from hermes_spark.config import CorpusConfig, SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.export import bucket_shards, export_training_data
from hermes_spark.paths import canonical_file_key
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from tests.helpers import assert_clean_error, build_codes
from tests.helpers import run_cli as run
from tests.spark.plans import output_names, plan_of, scans_of, shuffles

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
        "7",
        "--per-bucket",
        "--keep-cols",
        "tokens",
    )
    assert code == 0, err
    man = DeltaTable(sampled["manifest"]).to_pandas()
    buckets = sorted(man["stage1_bucket"].unique())
    dirs = sorted(p.name for p in (tmp_path / "out").glob("bucket-*"))
    assert dirs == [f"bucket-{b}" for b in buckets]
    tokens = (man["repeats"] * man["tokens"]).groupby(man["stage1_bucket"]).sum()
    want = bucket_shards(tokens.to_dict(), 7)
    assert sum(want.values()) == max(7, len(buckets))  # the total, not 7 per bucket
    total = 0
    for b in buckets:
        parts = read_shards(tmp_path / "out" / f"bucket-{b}", "jsonl")
        assert len(parts) == want[b]
        assert {p.name for p in (tmp_path / "out" / f"bucket-{b}").glob("part-*")} == {
            f"part-{k:05d}-of-{want[b]:05d}.jsonl" for k in range(want[b])
        }
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


def test_export_reads_only_the_files_holding_sampled_documents(spark, sampled, tmp_path):
    """A manifest restricted to one corpus file reads that file alone; an unreadable file
    without sampled documents in the corpus folder is never opened."""
    store = get_store(spark)
    man = DeltaTable(sampled["manifest"]).to_pandas()
    assert man["source_file"].notna().all()
    one = sorted(man["source_file"].unique())[1]
    only = str(tmp_path / "manifest_one")
    store.overwrite(store.read(sampled["manifest"]).where(F.col("source_file") == one), only)
    junk = Path(sampled["corpus"]) / "part-999.parquet"
    junk.write_bytes(b"not a parquet file")
    try:
        cfg = CorpusConfig(input=sampled["corpus"], embedding_col="emb")
        result = export_training_data(spark, only, cfg, str(tmp_path / "out"), shards=2)
    finally:
        junk.unlink()
    assert [canonical_file_key(f) for f in result.files_read] == [canonical_file_key(one)]
    rows = pd.concat(read_shards(tmp_path / "out"), ignore_index=True)
    want = man[man["source_file"] == one]
    assert len(rows) == want["repeats"].sum() == result.rows
    assert set(rows["doc_id"]) == set(want["doc_id"])
    mixture = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert mixture["input_files_read"] == 1


def test_default_shard_count_follows_the_data_size(spark, sampled, tmp_path, monkeypatch):
    assert export_mod.default_shards(10) == 1
    gb_tokens = export_mod.BYTES_PER_SHARD / export_mod.BYTES_PER_TOKEN
    assert export_mod.default_shards(3.5 * gb_tokens) == 4
    man = DeltaTable(sampled["manifest"]).to_pandas()
    tokens = int((man["repeats"] * man["tokens"]).sum())
    # shards of ~tokens/3 tokens of text each: the export picks 3 shards by itself
    monkeypatch.setattr(export_mod, "BYTES_PER_SHARD", tokens * export_mod.BYTES_PER_TOKEN / 3)
    cfg = CorpusConfig(input=sampled["corpus"], embedding_col="emb")
    result = export_training_data(spark, sampled["manifest"], cfg, str(tmp_path / "out"))
    assert len(result.files) == 3
    assert len(read_shards(tmp_path / "out")) == 3


def test_per_bucket_shards_are_renamed_on_several_threads(spark, sampled, tmp_path, monkeypatch):
    threads: set[int] = set()
    place = export_mod._place_one

    def slow_place(*args):
        threads.add(threading.get_ident())
        time.sleep(0.05)  # long enough that the pool hands the next file to another thread
        return place(*args)

    monkeypatch.setattr(export_mod, "_place_one", slow_place)
    cfg = CorpusConfig(input=sampled["corpus"], embedding_col="emb")
    result = export_training_data(
        spark, sampled["manifest"], cfg, str(tmp_path / "out"), shards=2, per_bucket=True
    )
    buckets = DeltaTable(sampled["manifest"]).to_pandas()["stage1_bucket"].nunique()
    assert len(result.files) == max(2, buckets)
    assert all(Path(f).exists() for f in result.files)
    assert len(threads) > 1


def _recorded_data(monkeypatch) -> list:
    """The DataFrames export writes (its one data job), recorded as they are written."""
    seen: list = []
    real = export_mod._write_data

    def recording(data, *args, **kw):
        seen.append(data)
        return real(data, *args, **kw)

    monkeypatch.setattr(export_mod, "_write_data", recording)
    return seen


def test_sampled_rows_are_read_by_position_and_their_text_shuffled_once(
    spark, sampled, tmp_path, monkeypatch
):
    """With ``source_row`` in the manifest no corpus scan feeds a join: executors read
    the sampled rows by position and the text crosses one shuffle (into the shards). The
    shards equal, row for row, those of the join by id (the manifest without positions)."""
    man = DeltaTable(sampled["manifest"]).to_pandas()
    assert man["source_row"].notna().all() and (man["source_row"] >= 0).all()
    written = _recorded_data(monkeypatch)
    cfg = CorpusConfig(input=sampled["corpus"], embedding_col="emb")
    export_training_data(spark, sampled["manifest"], cfg, str(tmp_path / "pos"), shards=3)
    plan = plan_of(written[-1])
    assert not scans_of(plan, "text"), "the corpus text was scanned for a join"
    text_shuffles = [s for s in shuffles(plan) if "text" in output_names(s)]
    assert len(text_shuffles) == 1, [s.toString() for s in text_shuffles]
    assert "MapInArrow" in plan.toString()
    by_id = str(tmp_path / "manifest_by_id")
    get_store(spark).overwrite(get_store(spark).read(sampled["manifest"]).drop("source_row"), by_id)
    export_training_data(spark, by_id, cfg, str(tmp_path / "id"), shards=3)
    joined = plan_of(written[-1])
    assert len([s for s in shuffles(joined) if "text" in output_names(s)]) == 2
    a, b = read_shards(tmp_path / "pos"), read_shards(tmp_path / "id")
    assert sum(len(x) for x in a) == man["repeats"].sum()
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_a_corpus_file_rewritten_since_annotate_fails_the_export(spark, sampled, tmp_path, capsys):
    """Rows moved inside a file (same ids, other positions) are found by the id check: exit
    2 naming a document, and an earlier export in the target stays whole."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in sorted(Path(sampled["corpus"]).glob("*.parquet")):
        (corpus / f.name).write_bytes(f.read_bytes())
    store, moved = get_store(spark), str(tmp_path / "manifest")
    source = F.regexp_replace("source_file", str(Path(sampled["corpus"]).resolve()), str(corpus))
    store.overwrite(store.read(sampled["manifest"]).withColumn("source_file", source), moved)
    name = Path(DeltaTable(moved).to_pandas()["source_file"].iloc[0]).name
    table = pq.read_table(corpus / name)
    args = ("--manifest", moved, "--embedding-col", "emb", "--shards", "2")
    out = str(tmp_path / "out")
    assert run(capsys, "export", *args, "--input", str(corpus), "--out", out)[0] == 0
    before = sorted(p.name for p in Path(out).iterdir())
    pq.write_table(table.take(list(range(table.num_rows))[::-1]), corpus / name)
    code, _, err = run(capsys, "export", *args, "--input", str(corpus), "--out", out, "--overwrite")
    assert_clean_error(code, err, "changed since it was annotated", "manifest document")
    assert sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("_tmp_")) == before
