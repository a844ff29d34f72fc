"""``--weights target:PATH``: the Stage-1 weights follow the cells of target texts coded
with the artifact, so the sample leans towards the target's part of the corpus."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark


def test_target_weights_pull_the_sample_towards_the_target(shared_codes, tmp_path, capsys):
    data = shared_codes
    codes = DeltaTable(data["codes"]).to_pandas()
    tokens = codes.groupby("bucket1")["n_tokens"].sum()
    # the target lives in the corpus's smallest level-1 cell that can supply 80% of the
    # budget at E = 4
    small = int(tokens[tokens * 4 >= 200_000].idxmin())
    corpus = pq.read_table(data["corpus"]).to_pandas()
    ids = set(codes.loc[codes["bucket1"] == small, "doc_id"])
    target = corpus[corpus["id"].isin(ids)].head(150).copy()
    target["id"] = "t-" + target["id"]
    (tmp_path / "target").mkdir()
    target[["id", "text", "emb"]].to_parquet(tmp_path / "target" / "part-0.parquet")
    common = [
        "--table", data["codes"], "--budget-tokens", "200000", "--stage2", "random",
        "--codebook", data["cb"], "--max-epochs", "4",
    ]  # fmt: skip
    code, _, err = run(
        capsys, "sample", *common, "--out", str(tmp_path / "t"),
        "--weights", f"target:{tmp_path / 'target'}", "--target-embedding-col", "emb",
        "--target-prior-mix", "0.2",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "sample", *common, "--out", str(tmp_path / "p"), "--weights", "proportional"
    )
    assert code == 0, err

    def share(path) -> float:
        man = DeltaTable(path).to_pandas()
        tok = man["repeats"] * man["tokens"]
        return float(tok[man["stage1_bucket"] == small].sum() / tok.sum())

    report = json.loads((tmp_path / "t_report.json").read_text())
    weights = report["weights"]["target_weights"]
    k = len(tokens)
    prior = tokens / tokens.sum()
    n = len(target)
    want = 0.8 * (n + 1) / (n + k) + 0.2 * prior.loc[small]
    assert weights[str(small)] == pytest.approx(want, rel=1e-9)
    assert report["settings"]["weights"].startswith("target:")
    assert share(str(tmp_path / "t")) > 0.7 > share(str(tmp_path / "p"))

    code, _, err = run(
        capsys, "plan", "--table", data["codes"], "--budget-tokens", "1000",
        "--weights", f"target:{tmp_path / 'target'}",
    )  # fmt: skip
    assert_clean_error(code, err, "--codebook")
