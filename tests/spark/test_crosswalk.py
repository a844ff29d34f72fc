"""``hermes crosswalk`` on a codes table holding two codebook versions (real Spark, Delta)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from deltalake import DeltaTable
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from hermes_spark.delta import get_store
from hermes_spark.sampling.crosswalk import crosswalk
from tests.helpers import assert_clean_error, write_embedded_corpus
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens")


@pytest.fixture(scope="module")
def two_versions(spark, tmp_path_factory):
    """Version A (levels 4,3) on 120 documents, version B (levels 6,2) on the first 60."""
    root = tmp_path_factory.mktemp("crosswalk")
    corpus = write_embedded_corpus(root / "c", n=120, dim=16, files=2)
    half = root / "half"
    half.mkdir()
    first = sorted(p for p in corpus.iterdir() if p.suffix == ".parquet")[0]
    shutil.copy(first, half / first.name)
    table = str(root / "codes")
    for name, levels, seed, docs in (("a", "4,3", "1", corpus), ("b", "6,2", "2", half)):
        cb = str(root / f"cb_{name}")
        assert run_ok(
            "fit", "--input", str(corpus), *EMB, "--out", cb, "--levels", levels, "--seed", seed
        )
        assert run_ok("annotate", "--input", str(docs), *EMB, "--codebook", cb, "--table", table)
    codes = DeltaTable(table).to_pandas()
    first_seen = codes.groupby("codebook_version")["annotated_at"].min().sort_values()
    return {"root": root, "table": table, "codes": codes, "versions": list(first_seen.index)}


def run_ok(*argv: str) -> bool:
    from hermes_spark.cli import execute as main

    return main(list(argv)) == 0


def test_crosswalk_table_and_summary(two_versions, capsys):
    va, vb = two_versions["versions"]
    out = str(two_versions["root"] / "xw")
    code, stdout, err = run(
        capsys,
        "crosswalk",
        "--table",
        two_versions["table"],
        "--from",
        va,
        "--to",
        vb,
        "--out",
        out,
    )
    assert code == 0, err
    assert "60 documents under both, 60 only" in stdout
    got = DeltaTable(out).to_pandas()
    codes = two_versions["codes"]
    a = codes[codes.codebook_version == va].set_index("doc_id")
    b = codes[codes.codebook_version == vb].set_index("doc_id")
    both = a.join(b, lsuffix="_a", rsuffix="_b", how="inner")
    summary = json.loads((two_versions["root"] / "xw_summary.json").read_text())
    assert (summary["docs_both"], summary["docs_only_from"], summary["docs_only_to"]) == (60, 60, 0)
    for level in (1, 2):
        ref = both.groupby([f"bucket{level}_a", f"bucket{level}_b"]).agg(
            docs=("n_tokens_a", "size"), tokens=("n_tokens_a", "sum")
        )
        mine = got[got.level == level].set_index(["from_bucket", "to_bucket"]).sort_index()
        assert mine["docs"].to_dict() == ref["docs"].to_dict()
        assert mine["tokens"].to_dict() == ref["tokens"].to_dict()
        from_tokens = mine.groupby(level=0)["tokens"].transform("sum")
        np.testing.assert_allclose(mine["share_of_from"], mine["tokens"] / from_tokens)
        lv = summary["levels"][level - 1]
        x, y = both[f"bucket{level}_a"], both[f"bucket{level}_b"]
        assert lv["nmi"] == pytest.approx(normalized_mutual_info_score(x, y), abs=1e-9)
        assert lv["ari"] == pytest.approx(adjusted_rand_score(x, y), abs=1e-9)
        best = mine.groupby(level=0)["share_of_from"].max()
        weights = mine.groupby(level=0)["tokens"].sum()
        assert lv["best_match_share"] == pytest.approx((best * weights).sum() / weights.sum())


def test_crosswalk_reads_ids_and_codes_only(spark, two_versions):
    va, vb = two_versions["versions"]
    codes = get_store(spark).read(two_versions["table"])
    plan = crosswalk(codes, va, vb, [1])._jdf.queryExecution().executedPlan().toString()
    schemas = [part.split(">")[0] for part in plan.split("ReadSchema: struct<")[1:]]
    assert schemas, plan
    for schema in schemas:
        names = {field.split(":")[0] for field in schema.split(",")}
        assert names <= {"doc_id", "n_tokens", "bucket1", "codebook_version"}, schema


def test_crosswalk_refuses_an_unknown_version(two_versions, capsys):
    va, _ = two_versions["versions"]
    code, _, err = run(
        capsys,
        "crosswalk",
        "--table",
        two_versions["table"],
        "--from",
        va,
        "--to",
        "cb-nope",
        "--out",
        str(two_versions["root"] / "bad"),
    )
    assert_clean_error(code, err, "cb-nope")


def test_carried_weights_realize_the_old_mixture(spark, two_versions):
    from hermes_spark.sampling.carry import carry_mixture

    va, vb = two_versions["versions"]
    codes = get_store(spark).read(two_versions["table"])
    old = {0: 0.4, 1: 0.3, 2: 0.2, 3: 0.1}
    carried = carry_mixture(codes, old, va, vb, from_level=1, to_level=2)
    assert sum(carried.weights.values()) == pytest.approx(1.0)
    assert carried.tv <= carried.plain_tv + 1e-12
    assert 0.0 < carried.coverage <= 1.0
    # the realized mixture, measured again with pandas on the documents under both
    rows = two_versions["codes"]
    a = rows[rows.codebook_version == va].set_index("doc_id")
    b = rows[rows.codebook_version == vb].set_index("doc_id")
    both = a[["bucket1", "n_tokens"]].join(b[["bucket2"]], how="inner")
    to_tokens = both.groupby("bucket2")["n_tokens"].transform("sum")
    w = both["bucket2"].map(carried.weights).fillna(0.0) * both["n_tokens"] / to_tokens
    got = w.groupby(both["bucket1"]).sum()
    want = {k: v for k, v in old.items() if k in set(both["bucket1"])}
    want = {k: v / sum(want.values()) for k, v in want.items()}
    tv = 0.5 * sum(abs(got.get(k, 0.0) - want.get(k, 0.0)) for k in set(got.index) | set(want))
    assert tv == pytest.approx(carried.tv, abs=1e-9)
