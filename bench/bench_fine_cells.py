"""Fine cells in the model's space: stage-codebook options vs flat k-means on real text.

Usage::

    python bench/bench_fine_cells.py ../shared/data/*.parquet \
        --labels label_l1,label --levels 16,8,8 [--n N] [--budget-s 240] [--out r.json]

Several corpora may be given: their vectors are pooled (and a ``corpus`` label added).
Vectors are embedded once per corpus with the product's annotate path and the backend
``hermes fit`` records on CPU executors (ONNX Runtime int8, ``--max-seq-length`` 256;
``--backend torch --precision fp32`` for PyTorch) and cached outside the repository
(``--cache``, default ``$HERMES_VECTOR_CACHE`` or ``~/.cache/hermes-spark-bench``; see
``bench/real_vectors.py``); ``--budget-s`` stops embedding new chunks after that many
seconds per corpus and uses the cached prefix of the seeded sample. ``--passages``
replaces the documents of ``--passage-corpora`` by their consecutive passages of at most
``--max-seq-length`` tokens (passages of one document stay in one half). The pooled rows
are split 50/50 by a seeded permutation into a fitting half and a held-out half
(disjoint). Every variant is fitted on the fitting half; flat faiss k-means with K1 and
K1*K2 cells (best of 3 starts, capped at half the fitting rows) is fitted on the same
rows. On the held-out half the script prints, per variant: within-cell MSE over flat
k-means in the model's space (the goals) and in the LST space, NMI at level 1 (ours /
k-means), fit time over k-means K1*K2's, dead codes per stage and the leaf collision
rate, plus fitting documents per cell at each level.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_vectors import DEFAULT_CACHE, Embedding, embed_cached, split_halves  # noqa: E402

from hermes_spark.evaluate.report import goals  # noqa: E402
from hermes_spark.quantize.codebook import fit_codebook  # noqa: E402
from hermes_spark.quantize.options import QuantizerOptions  # noqa: E402
from hermes_spark.quantize.scoring import score_codebook  # noqa: E402

#: name -> (options, Lloyd iterations); ``min_rows`` is ``fit.parent_min_rows`` (default 4)
VARIANTS: dict[str, tuple[QuantizerOptions, int]] = {
    "shared": (QuantizerOptions(stage_books="shared"), 20),
    "shared n_iter=50": (QuantizerOptions(stage_books="shared"), 50),
    "refined": (QuantizerOptions(stage_books="refined", parent_min_rows=0), 20),
    "per_parent": (QuantizerOptions(stage_books="per_parent", parent_min_rows=0), 20),
    "per_parent min_rows=4": (
        QuantizerOptions(stage_books="per_parent", parent_min_rows=4.0),
        20,
    ),
    "per_parent min_rows=8": (
        QuantizerOptions(stage_books="per_parent", parent_min_rows=8.0),
        20,
    ),
    "refined min_rows=8": (
        QuantizerOptions(stage_books="refined", parent_min_rows=8.0),
        20,
    ),
}


def load_pool(
    paths: list[str],
    label_cols: list[str],
    n: int | None,
    cache: Path,
    emb: Embedding,
    budget: float | None,
    passage_corpora: tuple[str, ...] = (),
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Pooled vectors of every corpus, the label columns (``<none>`` where absent) and a
    group id per row (its source document: passages of one document share it)."""
    xs, groups, labels = [], [], {c: [] for c in label_cols}
    if len(paths) > 1:
        labels["corpus"] = []
    for i, path in enumerate(paths):
        passages = any(k in Path(path).stem for k in passage_corpora)
        x, meta = embed_cached(path, n, cache, emb, budget, passages=passages)
        xs.append(x)
        groups.append(i * 10**9 + meta["doc"].to_numpy(np.int64))
        for col in label_cols:
            vals = meta[col].astype(str) if col in meta else ["<none>"] * len(x)
            labels[col].extend(list(vals))
        if "corpus" in labels:
            labels["corpus"].extend([Path(path).stem] * len(x))
        kind = "passages" if passages else "documents"
        logging.warning("%s: %d %s", Path(path).name, len(x), kind)
    pooled = {c: np.asarray(v) for c, v in labels.items()}
    return np.concatenate(xs), pooled, np.concatenate(groups)


def _summary(book: Any, methods: list[dict[str, Any]], cols: list[str], fit_s: float) -> dict:
    """The per-variant figures of the table from the scored rows."""
    g = goals(methods, cols)
    rows = {(r["method"], r["level"]): r for r in methods}
    km12 = rows[("kmeans", 2)]["fit_seconds"]
    return {
        "version": book.version,
        "l1_model": g["l1_mse_ratio"],
        "l12_model": g["l12_mse_ratio"],
        "l1_lst": g["l1_mse_ratio_lst"],
        "l12_lst": g["l12_mse_ratio_lst"],
        "kmeans_k": [rows[("kmeans", 1)]["k"], rows[("kmeans", 2)]["k"]],
        "nmi_l1": {c: v["hermes"] for c, v in g["l1_nmi"].items()},
        "kmeans_nmi_l1": {c: v["kmeans"] for c, v in g["l1_nmi"].items()},
        "fit_seconds": fit_s,
        "kmeans_k1k2_fit_seconds": km12,
        "fit_time_ratio": fit_s / km12,
        "dead_codes": [g["dead_codes"][k] for k in sorted(g["dead_codes"])],
        "leaf_collision_rate": g["leaf_collision_rate"],
        "cell_mse_model": [rows[("hermes", k)]["cell_mse_model"] for k in (1, 2, 3)],
        "parent_fits": [s.get("parent_fits") for s in book.fit["metrics"]["stages"]],
    }


def measure(
    x: np.ndarray,
    labels: dict[str, np.ndarray],
    levels: tuple[int, ...],
    seed: int,
    emb: Embedding,
    variants: list[str],
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit every variant on one half, score on the other; one summary per variant."""
    fit_idx, held_idx = split_halves(len(x), seed, groups)
    fit_x, held_x = x[fit_idx], x[held_idx]
    held = {c: v[held_idx] for c, v in labels.items()}
    model = emb.model(int(x.shape[1]))
    out: dict[str, Any] = {}
    km_rows: list[dict[str, Any]] | None = None
    for name in variants:
        opts, n_iter = VARIANTS[name]
        t0 = time.perf_counter()
        book = fit_codebook(
            fit_x, levels, seed=seed, lst_dim=64, model=model, n_iter=n_iter, options=opts
        )
        fit_s = time.perf_counter() - t0
        scored = score_codebook(
            book,
            fit_x,
            held_x,
            held,
            seed=seed,
            baselines=() if km_rows else ("kmeans",),
            geometry=False,
        )
        if km_rows is None:  # flat k-means depends on the LST space only: fit it once
            km_rows = [r for r in scored["methods"] if r["method"] == "kmeans"]
        methods = [r for r in scored["methods"] if r["method"] == "hermes"] + km_rows
        out[name] = _summary(book, methods, list(held), fit_s)
        print(name, json.dumps(out[name]), flush=True)
    return {"fit_rows": len(fit_idx), "held_out_rows": len(held_idx), "variants": out}


def print_table(result: dict[str, Any], cols: list[str]) -> None:
    """The Markdown table of docs/quality.md."""
    levels = result["levels"]
    cells = np.cumprod(levels)
    per = ", ".join(f"L{i + 1} {result['fit_rows'] / c:,.1f}" for i, c in enumerate(cells))
    print(
        f"\n{result['corpora']}: {result['fit_rows']} fit / {result['held_out_rows']} held-out "
        f"rows ({result['embedding']}), levels {levels}; fitting rows per cell: {per}"
    )
    head = "| variant | L1/km (model) | L12/km (model) | L1/km, L12/km (LST) | "
    head += " | ".join(f"NMI {c} (ours / km)" for c in cols)
    print(head + " | fit s | t / km12 | dead codes | leaf coll. |")
    print("|" + "---|" * (8 + len(cols)))
    for name, v in result["variants"].items():
        nmi = " | ".join(f"{v['nmi_l1'][c]:.3f} / {v['kmeans_nmi_l1'][c]:.3f}" for c in cols)
        print(
            f"| {name} | {v['l1_model']:.3f} | {v['l12_model']:.3f} | "
            f"{v['l1_lst']:.3f}, {v['l12_lst']:.3f} | {nmi} | {v['fit_seconds']:.1f} | "
            f"{v['fit_time_ratio']:.2f} | {','.join(map(str, v['dead_codes']))} | "
            f"{v['leaf_collision_rate']:.3f} |"
        )
    first = next(iter(result["variants"].values()))
    print(f"flat k-means cells: K1 {first['kmeans_k'][0]}, K1*K2 {first['kmeans_k'][1]}")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, embed (cached), measure every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", help="Parquet files with a text column")
    parser.add_argument("--labels", default="", help="comma-separated label columns")
    parser.add_argument("--n", type=int, default=None, help="documents per corpus (all)")
    parser.add_argument("--levels", default="16,8,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--budget-s", type=float, default=None, help="embedding budget")
    parser.add_argument("--passages", action="store_true", help="long docs as passages")
    parser.add_argument("--passage-corpora", default="c4_en_1k,fineweb_1k_eduscored")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", help="write the JSON result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    levels = tuple(int(v) for v in args.levels.split(","))
    cols = [c.strip() for c in args.labels.split(",") if c.strip()]
    emb = Embedding(args.max_seq_length, args.backend, args.precision)
    passage_corpora = tuple(args.passage_corpora.split(",")) if args.passages else ()
    x, labels, groups = load_pool(
        args.corpora, cols, args.n, Path(args.cache), emb, args.budget_s, passage_corpora
    )
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = measure(x, labels, levels, args.seed, emb, variants, groups)
    result.update({"corpora": [Path(p).name for p in args.corpora], "levels": list(levels)})
    result.update({"embedding": emb.tag, "passages": list(passage_corpora)})
    print_table(result, list(labels))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
