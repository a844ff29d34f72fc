"""Multi-phase schedules on a real corpus (AG News + DBpedia + arXiv): plan → sample →
export with two phases, coverage then quality-top:0.3, and a phase frozen from a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig, SampleConfig
from hermes_spark.sampling.phases import Phase, doc_cap
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.phases import schedule_table
from tests.helpers import MIXED_LEVELS, run_cli, write_mixed_corpus

pytestmark = pytest.mark.spark

EPOCHS = 2.0


@pytest.fixture(scope="module")
def mixed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    corpus, docs = write_mixed_corpus(root / "corpus")
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=corpus, embedding_col="emb", tokens_col="tokens", quality_col="quality"
        ),
        fit=FitConfig(levels=MIXED_LEVELS, sample_size=6000, seed=2, n_iter=10),
    )
    fit(spark, cfg, str(root / "cb"))
    annotate(spark, cfg, str(root / "cb"), str(root / "codes"))
    (root / "phases.yaml").write_text(
        "phases:\n"
        "  - {name: cover, share: 0.7, weights: unimax, stage2: coverage}\n"
        "  - {name: top, share: 0.3, weights: unimax, stage2: 'quality-top:0.3'}\n"
    )
    return {"root": root, "corpus": corpus, "codes": str(root / "codes"), "docs": docs}


def _tv(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def test_two_phases_through_sample_and_export(spark, mixed, capsys):
    root = mixed["root"]
    man = str(root / "man")
    code, out, err = run_cli(
        capsys, "sample", "--table", mixed["codes"], "--out", man, "--phases",
        str(root / "phases.yaml"), "--budget-share", "0.8", "--max-epochs", str(EPOCHS),
        "--seed", "3",
    )  # fmt: skip
    assert code == 0, err
    assert "overlap cover ∩ top" in out
    report = json.loads(Path(f"{man}_report.json").read_text())
    rows = spark.read.format("delta").load(man).toPandas()
    assert set(rows["phase"]) == {"cover", "top"}
    # the cap holds per document over both phases ...
    per_doc = rows.groupby("doc_id")["repeats"].sum()
    assert per_doc.max() <= doc_cap(EPOCHS)
    assert rows.groupby(["doc_id", "phase"]).size().max() == 1
    # ... and the quality phase did pick documents the coverage phase had taken
    [overlap] = report["overlap"]
    both = set(rows.loc[rows["phase"] == "cover", "doc_id"]) & set(
        rows.loc[rows["phase"] == "top", "doc_id"]
    )
    assert overlap["docs"] == len(both) > 0
    # per bucket: tokens over all phases ≤ E × the bucket's tokens
    codes = spark.read.format("delta").load(mixed["codes"]).toPandas()
    supply = codes.groupby("bucket1")["n_tokens"].sum()
    used = (rows["repeats"] * rows["tokens"]).groupby(rows["stage1_bucket"]).sum()
    assert (used <= EPOCHS * supply.reindex(used.index)).all()
    total = float(codes["n_tokens"].sum())
    by_phase = {p["name"]: p for p in report["phases"]}
    for name, share in (("cover", 0.7), ("top", 0.3)):
        p = by_phase[name]
        mine = rows[rows["phase"] == name]
        realized = float((mine["repeats"] * mine["tokens"]).sum())
        assert p["target_tokens"] == pytest.approx(share * 0.8 * total)
        assert p["realized_tokens"] == pytest.approx(realized)
        print(
            f"phase {name}: target {p['target_tokens']:.0f}, realized {realized:.0f}, "
            f"cut by the cap {p['capped_tokens']:.0f}, TV(target, realized shares) "
            f"{_tv(p['target_shares'], p['realized_shares']):.4f}"
        )
    # the first phase has nothing cut: it meets its target and its shares
    cover = by_phase["cover"]
    assert cover["capped_tokens"] == 0
    assert cover["realized_tokens"] == pytest.approx(cover["target_tokens"], rel=0.02)
    assert _tv(cover["target_shares"], cover["realized_shares"]) < 0.02
    # every token the second phase asked for is either realized or reported as cut
    top = by_phase["top"]
    asked = top["report"]["totals"]["realized_tokens"] + top["capped_tokens"]
    assert asked >= 0.98 * top["target_tokens"]

    train = root / "train"
    code, out, err = run_cli(
        capsys, "export", "--manifest", man, "--input", mixed["corpus"], "--embedding-col",
        "emb", "--out", str(train), "--shards", "2", "--per-bucket",
    )  # fmt: skip
    assert code == 0, err
    index = json.loads((train / "phases.json").read_text())
    assert [p["name"] for p in index["phases"]] == ["cover", "top"]
    for name in ("cover", "top"):
        folder = train / f"phase={name}"
        mixture = json.loads((folder / "mixture.json").read_text())
        mine = rows[rows["phase"] == name]
        assert mixture["phase"] == name
        assert mixture["rows"] == int(mine["repeats"].sum())
        weights = json.loads((folder / "doremi_weights.json").read_text())
        assert sum(weights["train_domain_weights"].values()) == pytest.approx(1.0)
        blend = (folder / "megatron_blend.txt").read_text()
        assert f"phase={name}/bucket-" in blend
        assert mixture["weights"] == pytest.approx(by_phase[name]["realized_shares"])


def test_a_frozen_phase_keeps_its_realized_shares(spark, mixed, capsys):
    root = mixed["root"]
    first = str(root / "first.json")
    code, _, err = run_cli(
        capsys, "plan", "--table", mixed["codes"], "--phases", str(root / "phases.yaml"),
        "--budget-share", "0.5", "--max-epochs", str(EPOCHS), "--out", first,
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads(Path(first).read_text())
    realized = {p["name"]: p["realized_shares"] for p in saved["phases"]}
    frozen = [
        Phase("top", 0.4, stage2="coverage", freeze=first),
        Phase("fresh", 0.6, weights="proportional", stage2="coverage"),
    ]
    settings = SampleConfig(budget_share=0.3, max_epochs=EPOCHS)
    schedule = schedule_table(spark, mixed["codes"], frozen, settings)
    schedule.release()
    got = schedule.phases[0].target_shares
    assert _tv(got, realized["top"]) < 1e-9
    # the new phase follows its own weights (token-proportional, which the unimax shares
    # frozen from the first plan are not: the three corpora differ in length)
    assert schedule.phases[1].plan.info["weights"]["rule"] == "proportional"
    assert _tv(schedule.phases[1].target_shares, realized["top"]) > 0.01
