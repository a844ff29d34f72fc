"""The quality/diversity frontier of the Stage-2 rules on FineWeb with its ``edu_score``.

Run: ``python bench/bench_selection.py [--cache /tmp/hermes_bench]`` (docs/sampling.md).
The 1,000 FineWeb pages of the shared data get vectors once (``--vectors hashed``:
feature-hashed bags of words, seconds; ``--vectors model``: all-MiniLM-L6-v2; cached as
Parquet under ``--cache``), a codebook 8·4·4 is fitted and
every page annotated (``edu_score`` as quality, ``token_count`` as tokens). Then, at one
budget (``--budget-share`` of the tokens, E = ``--max-epochs``, proportional Stage-1
weights), it samples with ``random``, ``coverage``, ``quality-top:p`` and ``quadmix`` over
a sweep of the steepness, and prints per rule the token-weighted mean ``edu_score`` of the
sample, the entropy (bits) of its tokens over the level-2 cells, the distinct documents
and the realized share of the budget. Timings are not the point and are not printed.

``--target``: issue 12's target-oriented measurement instead (:func:`target_oriented`):
the arXiv share of the sampled tokens for ``target:`` weights and ``target-top:0.3`` on
the five shared corpora mixed, the target being 300 held-out arXiv abstracts.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
from hermes_spark.delta import get_store
from hermes_spark.sampling.planner import plan_mixture
from hermes_spark.sampling.select import sample
from hermes_spark.session import get_spark
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit

LEVELS = (8, 4, 4)
FINEWEB = Path(__file__).resolve().parents[2] / "shared" / "data" / "fineweb_1k_eduscored.parquet"


def embedded_corpus(cache: Path, vectors: str) -> Path:
    """``id, text, token_count, edu_score, emb`` (computed once per kind of vectors):
    ``model`` vectors of all-MiniLM-L6-v2, or ``hashed`` bags of words (no model)."""
    out = cache / f"fineweb_{vectors}" / "part-0.parquet"
    if out.exists():
        return out.parent
    table = pq.read_table(FINEWEB, columns=["id", "text", "token_count", "edu_score"])
    texts = table.column("text").to_pylist()
    if vectors == "model":
        from hermes_spark.embedding import embed_texts, load_model

        vecs = embed_texts(load_model("all-MiniLM-L6-v2", 256, "cpu"), texts, 32)
    else:
        from tests.helpers import hashed_bow

        vecs = hashed_bow(texts)
    table = table.append_column(
        "emb", pa.array([list(map(float, v)) for v in vecs], pa.list_(pa.float32()))
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out.parent


#: The target-oriented bench: documents per shared corpus, and held-out arXiv targets.
MIX_PER_CORPUS = 1000
MIX_TARGETS = 300
MIX_SOURCES = {
    "c4": "c4_en_1k.parquet",
    "fineweb": "fineweb_1k_eduscored.parquet",
    "arxiv": "arxiv_0704_2k.parquet",
    "agnews": "ag_news_test.parquet",
    "dbpedia": "dbpedia_hier_10k.parquet",
}


def mixed_corpus(cache: Path) -> tuple[Path, Path]:
    """The target-oriented bench's inputs, embedded once with all-MiniLM-L6-v2 (cached):
    ``MIX_PER_CORPUS`` documents of each shared corpus (``id, text, source, tokens, emb``;
    tokens counted with the model's tokenizer) and ``MIX_TARGETS`` arXiv abstracts held out
    from it (``id, text, emb``). Also writes the FineWeb model vectors that
    :func:`embedded_corpus` caches, so FineWeb is embedded once for both benches."""
    root = cache / "target_mix"
    corpus, target = root / "corpus", root / "target"
    if (corpus / "part-0.parquet").exists() and (target / "part-0.parquet").exists():
        return corpus, target
    from hermes_spark.embedding import embed_texts, load_model
    from hermes_spark.embedding.models import count_tokens

    data = FINEWEB.parent
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"id": [], "text": [], "source": []}
    held: dict[str, list] = {"id": [], "text": []}
    for name, file in MIX_SOURCES.items():
        table = pq.read_table(data / file, columns=["id", "text"])
        order = rng.permutation(table.num_rows)
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        for i in order[:MIX_PER_CORPUS]:
            rows["id"].append(f"{name}-{ids[i]}")
            rows["text"].append(texts[i])
            rows["source"].append(name)
        if name == "arxiv":
            for i in order[MIX_PER_CORPUS : MIX_PER_CORPUS + MIX_TARGETS]:
                held["id"].append(f"target-{ids[i]}")
                held["text"].append(texts[i])
    model = load_model("all-MiniLM-L6-v2", 256, "cpu")
    texts = rows["text"] + held["text"]
    vecs = embed_texts(model, texts, 32)
    emb = pa.array([list(map(float, v)) for v in vecs], pa.list_(pa.float32()))
    n = len(rows["id"])
    corpus.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    tokens = pa.array(count_tokens(model, rows["text"]), pa.int64())
    pq.write_table(
        pa.table({**rows, "tokens": tokens, "emb": emb.slice(0, n)}), corpus / "part-0.parquet"
    )
    pq.write_table(pa.table({**held, "emb": emb.slice(n)}), target / "part-0.parquet")
    fineweb = cache / "fineweb_model" / "part-0.parquet"
    if not fineweb.exists():
        table = pq.read_table(FINEWEB, columns=["id", "text", "token_count", "edu_score"])
        by_id = dict(zip(rows["id"], range(n), strict=True))
        pick = [by_id[f"fineweb-{i}"] for i in table.column("id").to_pylist()]
        fineweb.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.append_column("emb", emb.take(pa.array(pick))), fineweb)
    return corpus, target


def entropy_bits(weights: np.ndarray) -> float:
    p = weights[weights > 0] / weights.sum()
    return float(-(p * np.log2(p)).sum())


def measure(codes_df, rule: str, budget: float, epochs: float, q_by_id, b2_by_id) -> dict:
    plan = plan_mixture(
        None,
        codes_df=codes_df,
        budget_tokens=budget,
        weights="proportional",
        stage2=rule,
        max_epochs=epochs,
        levels=LEVELS,
        seed=0,
        allow_shortfall=True,  # small quality pools may not hold the budget: report it
    )
    man = sample(codes_df, plan).toPandas()
    tok = (man["repeats"] * man["tokens"]).to_numpy(dtype=np.float64)
    q = q_by_id.loc[man["doc_id"]].to_numpy()
    cells = b2_by_id.loc[man["doc_id"]].to_numpy()
    per_cell = np.bincount(cells, weights=tok)
    return {
        "rule": rule,
        "mean_edu": float((q * tok).sum() / tok.sum()),
        "l2_entropy_bits": entropy_bits(per_cell),
        "docs": len(man),
        "realized_share": float(tok.sum() / budget),
    }


#: Codes of the target-oriented bench (levels 16·8·4, as issue 12 suggests for ~5k docs).
MIX_LEVELS = (16, 8, 4)


def target_oriented(spark, cache: Path, budget_share: float, epochs: float) -> list[dict]:
    """Issue 12's target-oriented measurement: the share of sampled tokens that are arXiv
    for ``target:`` Stage-1 weights vs proportional, and for ``target-top:0.3`` vs
    ``random``, on the five shared corpora mixed (:func:`mixed_corpus`), the target being
    300 arXiv abstracts held out from the corpus. Vectors: all-MiniLM-L6-v2 (computed
    once); the codes table is annotated with ``--store-embeddings`` and target-top reads
    its ``_embeddings`` table."""
    from hermes_spark.config import SampleConfig
    from hermes_spark.schema import embeddings_table_name
    from hermes_spark.tasks.plan import compute_plan_and_codes

    corpus, target = mixed_corpus(cache)
    root = cache / "target_mix"
    codes, cb = root / "codes", root / "cb"
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus), embedding_col="emb", tokens_col="tokens", keep_cols=("source",)
        ),
        fit=FitConfig(levels=MIX_LEVELS, sample_size=10_000, seed=0),
    )
    if not Path(embeddings_table_name(str(codes))).exists():
        fit(spark, cfg, str(cb))
        annotate(spark, cfg, str(cb), str(codes), store_embeddings=True)
    store = get_store(spark)
    meta = store.read(str(codes)).select("doc_id", "source", "n_tokens", "bucket2").toPandas()
    source = meta.set_index("doc_id")["source"]
    by_cell = meta.groupby(["bucket2", "source"])["n_tokens"].sum().unstack(fill_value=0)
    majority = by_cell.idxmax(axis=1)
    purity = by_cell.max(axis=1).sum() / meta["n_tokens"].sum()
    in_arxiv = by_cell.loc[majority == "arxiv", "arxiv"].sum() / by_cell["arxiv"].sum()
    print(
        f"level-2 cells: token purity by source {purity:.3f}; arXiv tokens in "
        f"arXiv-majority cells {in_arxiv:.3f}"
    )
    total = float(meta["n_tokens"].sum())
    corpus_share = float(meta.loc[meta["source"] == "arxiv", "n_tokens"].sum() / total)
    budget = budget_share * total
    rows = [{"rule": "corpus", "weights": "", "arxiv_share": corpus_share, "docs": len(meta)}]
    for weights, stage2 in (
        ("proportional", "random"),
        (f"target:{target}", "random"),
        ("proportional", "target-top:0.3"),
        (f"target:{target}", "target-top:0.3"),
    ):
        settings = SampleConfig(
            budget_tokens=budget, weights=weights, stage2=stage2, max_epochs=epochs, seed=0,
            target=str(target), target_embedding_col="emb",
        )  # fmt: skip
        plan, scored = compute_plan_and_codes(
            spark, settings, table=str(codes), codebook=str(cb), levels=MIX_LEVELS
        )
        frame = scored if scored is not None else store.read(str(codes))
        man = sample(frame, plan).toPandas()
        tok = (man["repeats"] * man["tokens"]).to_numpy(dtype=np.float64)
        arxiv = source.loc[man["doc_id"]].to_numpy() == "arxiv"
        rows.append(
            {
                "rule": stage2,
                "weights": "target:HELD_OUT_ARXIV_300"
                if weights.startswith("target:")
                else weights,
                "arxiv_share": float(tok[arxiv].sum() / tok.sum()),
                "docs": len(man),
                "realized_share": float(tok.sum() / budget),
            }
        )
    print(
        f"5 shared corpora x {MIX_PER_CORPUS} docs, {total:,.0f} tokens; budget "
        f"{budget_share:.0%} = {budget:,.0f} tokens, E = {epochs:g}, levels {MIX_LEVELS}; "
        f"target = {MIX_TARGETS} held-out arXiv abstracts"
    )
    print(f"{'weights':<28} {'stage2':<16} {'arXiv share':>11} {'docs':>6} {'budget':>7}")
    for r in rows:
        real = f"{r['realized_share']:>7.1%}" if "realized_share" in r else ""
        print(f"{r['weights']:<28} {r['rule']:<16} {r['arxiv_share']:>11.1%} {r['docs']:>6} {real}")
    return rows


def pools_regression(spark, cache: Path) -> None:
    """Issue 9: budget met under quality-top:0.3 with E = 2 on ≈19.6k real documents
    (16·8·8 codes, weights ∝ bucket id), vs the old Stage-1 cap (E × whole bucket)."""
    from hermes_spark.config import SampleConfig
    from hermes_spark.sampling.allocate import stage1_targets, stage2_allocation
    from hermes_spark.tasks.plan import compute_plan
    from tests.helpers import MIXED_LEVELS, write_mixed_corpus

    root = cache / "mixed"
    codes = root / "codes"
    if not codes.exists():
        corpus, _ = write_mixed_corpus(root / "corpus")
        cfg = HermesConfig(
            corpus=CorpusConfig(
                input=corpus, embedding_col="emb", tokens_col="tokens", quality_col="quality"
            ),
            fit=FitConfig(levels=MIXED_LEVELS, sample_size=6000, seed=2, n_iter=10),
        )
        fit(spark, cfg, str(root / "cb"))
        annotate(spark, cfg, str(root / "cb"), str(codes))
    weights = {str(c): float(c) for c in range(MIXED_LEVELS[0])}
    (root / "w.json").write_text(json.dumps(weights))
    total = float(get_store(spark).read(str(codes)).agg({"n_tokens": "sum"}).first()[0])
    print(f"mixed AG News + DBpedia + arXiv, {total:,.0f} tokens, quality-top:0.3, E = 2")
    for share in (0.3, 0.45, 0.55):
        budget = share * total
        settings = SampleConfig(
            budget_tokens=budget, weights=str(root / "w.json"), stage2="quality-top:0.3",
            max_epochs=2.0,
        )  # fmt: skip
        plan = compute_plan(spark, settings, table=str(codes), levels=MIXED_LEVELS)
        kids = plan.children
        whole = kids.groupby("parent")["tokens"].sum().astype(float)
        w = plan.stage1.set_index("bucket")["weight"]
        old1, _ = stage1_targets(w, whole, budget, 2.0)  # the old cap: E × whole bucket
        old = stage2_allocation(old1, kids, "quality-top:0.3", 2.0)
        old_unmet = float(old.groupby("parent")["parent_unmet"].first().sum())
        new_unmet = plan.info["stage1_shortfall_tokens"] + plan.info["stage2_unmet_tokens"]
        room = 2 * kids["pool_tokens"].sum() / budget
        print(
            f"  budget {share:.0%} of tokens: unmet before {old_unmet / budget:6.2%}, "
            f"now {new_unmet / budget:6.2%} (pools hold {room:.2f}× the budget at E = 2)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/hermes_bench")
    ap.add_argument("--pools", action="store_true", help="only the quality-top budget check")
    ap.add_argument(
        "--target", action="store_true", help="only the target-oriented measurement (model)"
    )
    ap.add_argument("--vectors", choices=["hashed", "model"], default="hashed")
    ap.add_argument("--budget-share", type=float, default=0.3)
    ap.add_argument("--max-epochs", type=float, default=2.0)
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    cache = Path(args.cache)
    spark = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4"})
    if args.pools:
        pools_regression(spark, cache)
        return
    if args.target:
        rows = target_oriented(spark, cache, args.budget_share, args.max_epochs)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
    corpus = embedded_corpus(cache, args.vectors)
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus), embedding_col="emb", tokens_col="token_count",
            quality_col="edu_score",
        ),
        fit=FitConfig(levels=LEVELS, sample_size=1000, seed=0),
    )  # fmt: skip
    codes_path = cache / f"fineweb_codes_{args.vectors}"
    if not codes_path.exists():
        fit(spark, cfg, str(cache / f"fineweb_cb_{args.vectors}"))
        annotate(spark, cfg, str(cache / f"fineweb_cb_{args.vectors}"), str(codes_path))
    codes_df = get_store(spark).read(str(codes_path)).cache()
    pdf = codes_df.select("doc_id", "quality", "n_tokens", "bucket2").toPandas()
    pdf = pdf.set_index("doc_id")
    budget = args.budget_share * float(pdf["n_tokens"].sum())
    rules = ["random", "coverage", "quality-top:0.5", "quality-top:0.3", "quality-top:0.1"]
    params = []
    for k in (0.0, 5.0, 10.0, 20.0, 40.0, 80.0):
        path = cache / f"quadmix_k{k:g}.json"
        path.write_text(json.dumps({"default": {"threshold": 0.7, "steepness": k}}))
        params.append(f"quadmix:{path}")
    rows = [
        measure(codes_df, r, budget, args.max_epochs, pdf["quality"], pdf["bucket2"])
        for r in rules + params
    ]
    print(f"FineWeb 1k, {budget:,.0f} budget tokens (E = {args.max_epochs:g}), levels {LEVELS}")
    print(f"{'rule':<34} {'mean edu':>9} {'L2 H bits':>10} {'docs':>6} {'budget':>7}")
    for r in rows:
        name = r["rule"].replace(str(cache) + "/", "")
        print(
            f"{name:<34} {r['mean_edu']:>9.3f} {r['l2_entropy_bits']:>10.3f} {r['docs']:>6} "
            f"{r['realized_share']:>7.1%}"
        )
    print(f"(max L2 entropy: {math.log2(math.prod(LEVELS[:2])):.2f} bits)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
