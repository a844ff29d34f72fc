"""``--weights FILE --weights-version V1`` on a real corpus coded by two codebook versions.

AG News (1,000 items, hashed bag-of-words vectors standing in for the model) is coded by
V1 (levels 4,4,2) and by V2 (levels 8,4,2, another seed) into one codes table; a DoReMi
file keyed by V1's c1 is carried to V2's level 2 and sampled. The sample, measured in V1
cells of the same documents, must realize the V1 weights.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from hermes_spark.quantize.codebook import Codebook
from tests.conftest import shared_corpus
from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run
from tests.spark.test_sampling_spark import hashed_bow

pytestmark = pytest.mark.spark

V1_WEIGHTS = {"0": 0.45, "1": 0.3, "2": 0.15, "3": 0.1}


@pytest.fixture(scope="module")
def two_codebooks(tmp_path_factory):
    root = tmp_path_factory.mktemp("carried")
    src = pq.read_table(shared_corpus("ag_news_test.parquet"), columns=["id", "text"]).slice(
        0, 1000
    )
    texts = src.column("text").to_pylist()
    tokens = pa.array([max(len(t.split()), 1) for t in texts], type=pa.int64())
    emb = pa.array(list(hashed_bow(texts, dim=64)), type=pa.list_(pa.float32()))
    pq.write_table(src.append_column("tokens", tokens).append_column("emb", emb), root / "n.pq")
    flags = ("--input", str(root / "n.pq"), "--embedding-col", "emb", "--tokens-col", "tokens")
    table = str(root / "codes")
    versions = []
    for name, levels, seed in (("v1", "4,4,2", "1"), ("v2", "8,4,2", "2")):
        cb = str(root / name)
        assert _ok("fit", *flags, "--out", cb, "--levels", levels, "--seed", seed)
        assert _ok("annotate", *flags, "--codebook", cb, "--table", table)
        versions.append(Codebook.load(cb).version)
    weights = root / "doremi.json"
    weights.write_text(json.dumps({"train_domain_weights": V1_WEIGHTS}))
    return {
        "root": root,
        "table": table,
        "versions": versions,
        "weights": str(weights),
        "flags": flags,
    }


def _ok(*argv: str) -> bool:
    from hermes_spark.cli import execute

    return execute(list(argv)) == 0


def _tv(a: dict, b: dict) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def test_carried_weights_realize_the_v1_mixture_in_v1_cells(two_codebooks, capsys):
    v1, v2 = two_codebooks["versions"]
    root = two_codebooks["root"]
    out, report = str(root / "manifest"), str(root / "report.json")
    code, stdout, err = run(
        capsys, "sample", "--table", two_codebooks["table"], "--codebook-version", v2,
        "--weights", two_codebooks["weights"], "--weights-version", v1, "--weights-level", "2",
        "--budget-share", "0.25", "--max-epochs", "4", "--stage2", "random",
        "--out", out, "--mixture-report", report,
    )  # fmt: skip
    assert code == 0, err
    assert f"weights carried from {v1} level 1 to level 2" in stdout
    carried = json.loads((root / "report.json").read_text())["weights"]["carried"]
    assert (carried["from_version"], carried["from_level"], carried["to_level"]) == (v1, 1, 2)
    assert carried["coverage"] == pytest.approx(1.0)
    # measured on the sample: its tokens in the V1 cells of the same documents
    codes = DeltaTable(two_codebooks["table"]).to_pandas()
    c1_of = codes[codes.codebook_version == v1].set_index("doc_id")["c1"]
    manifest = DeltaTable(out).to_pandas()
    assert manifest["stage1_bucket"].max() >= 8  # V2 level-2 cells, not V1's
    mass = (
        (manifest["repeats"] * manifest["tokens"])
        .groupby(manifest["doc_id"].map(c1_of).astype(str))
        .sum()
    )
    realized = (mass / mass.sum()).to_dict()
    tv = _tv(realized, V1_WEIGHTS)
    print(f"\nrealized TV {tv:.4f} (planned {carried['tv']:.4f}, plain {carried['plain_tv']:.4f})")
    assert tv <= 0.05
    assert carried["tv"] <= carried["plain_tv"]


def test_a_rule_with_weights_version_is_refused_before_spark(two_codebooks, capsys):
    v1, _ = two_codebooks["versions"]
    code, _, err = run(
        capsys, "plan", "--table", two_codebooks["table"], "--weights", "unimax",
        "--weights-version", v1, "--budget-share", "0.1",
    )  # fmt: skip
    assert_clean_error(code, err, "--weights FILE")


def test_an_unknown_source_version_is_refused(two_codebooks, capsys):
    code, _, err = run(
        capsys, "plan", "--table", two_codebooks["table"], "--weights",
        two_codebooks["weights"], "--weights-version", "cb-nope", "--budget-share", "0.1",
    )  # fmt: skip
    assert_clean_error(code, err, "cb-nope")


def test_fit_init_from_records_its_parent_and_refuses_other_levels(two_codebooks, capsys):
    root, flags = two_codebooks["root"], two_codebooks["flags"]
    v1 = two_codebooks["versions"][0]
    child = str(root / "v1_child")
    code, stdout, err = run(
        capsys, "fit", *flags, "--out", child, "--levels", "4,4,2", "--seed", "5",
        "--init-from", str(root / "v1"),
    )  # fmt: skip
    assert code == 0, err
    assert Codebook.load(child).fit["parent"]["version"] == v1
    assert f"warm-started from {v1}: code numbers kept" in stdout
    code, _, err = run(
        capsys, "fit", *flags, "--out", str(root / "bad"), "--levels", "8,4,2",
        "--init-from", str(root / "v1"),
    )  # fmt: skip
    assert_clean_error(code, err, "--levels 4,4,2")
    assert not (root / "bad").exists()
