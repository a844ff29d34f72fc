"""The one testing module: data builders shared by the test tiers, ``bench/`` and
``scripts/`` (synthetic corpora with known structure, the shared real corpora), the CLI
runner, and the rule that a missing prerequisite skips a test locally but fails it in CI."""

from __future__ import annotations

import importlib.util
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

#: The shared real corpora (never copied into the repo), beside the checkout.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    """A ``bench/`` module imported by path (the scripts import their siblings by bare
    name, so ``bench/`` is no package), without touching ``sys.path``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skip_or_fail_in_ci(reason: str) -> None:
    """Skip the test, except in CI (env ``CI`` set), where a missing prerequisite (native
    Delta jars, the shared corpora) is a broken setup that must not hide a regression."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def shared_corpus(name: str) -> Path:
    """Path of a shared corpus file; absent, the test skips (fails in CI) saying why."""
    path = SHARED_DATA / name
    if not path.exists():
        skip_or_fail_in_ci(
            f"shared corpus {path} is absent (only present next to the project checkout)"
        )
    return path


def clustered_vectors(n: int, dim: int = 32, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres."""
    return labelled_vectors(n, dim, clusters, seed)[0]


def labelled_vectors(
    n: int, dim: int = 32, clusters: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` random centres, with each vector's centre index."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, size=n)
    x = centres[labels] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def write_embedded_corpus(
    path: Path, n: int = 400, dim: int = 32, seed: int = 0, files: int = 2
) -> Path:
    """A Parquet corpus (``id, text, emb, tokens, quality, source, cluster``) over files."""
    x, labels = labelled_vectors(n, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    path.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for f in range(files):
        lo, hi = f * per, min(n, (f + 1) * per)
        table = pa.table(
            {
                "id": [f"doc-{i:05d}" for i in range(lo, hi)],
                "text": [f"document number {i} about topic {i % 7}" for i in range(lo, hi)],
                "emb": pa.array(
                    [list(map(float, v)) for v in x[lo:hi]], type=pa.list_(pa.float32())
                ),
                "tokens": pa.array(rng.integers(20, 400, size=hi - lo), type=pa.int64()),
                "quality": rng.random(hi - lo),
                "source": [f"s{i % 3}" for i in range(lo, hi)],
                "cluster": [f"k{c}" for c in labels[lo:hi]],
            }
        )
        pq.write_table(table, path / f"part-{f:03d}.parquet")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``hermes ARGV`` in-process: exit code, stdout, stderr."""
    from hermes_spark.cli import execute as main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *needles: str) -> str:
    """Exit 2 with one ``hermes: error:`` line holding every needle, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hermes: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


#: Level sizes and size of the synthetic corpus behind :func:`build_codes`.
CODES_LEVELS = (4, 4, 3)
CODES_DOCS = 3000


def write_corpus(
    path: Path, n: int = CODES_DOCS, dim: int = 32, seed: int = 0, files: int = 3
) -> Path:
    """``id, text, emb, tokens, quality`` (about 3% of qualities null) over ``files`` files."""
    x = clustered_vectors(n, dim, clusters=24, seed=seed)
    rng = np.random.default_rng(seed + 7)
    tokens = rng.integers(20, 600, size=n)
    quality = rng.random(n)
    no_quality = rng.random(n) < 0.03
    path.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for f in range(files):
        lo, hi = f * per, min(n, (f + 1) * per)
        table = pa.table(
            {
                "id": [f"d{i:05d}" for i in range(lo, hi)],
                "text": [
                    f"Document {i} talks about topic {i % 11}. It has several words in it."
                    for i in range(lo, hi)
                ],
                "emb": pa.array(
                    [list(map(float, v)) for v in x[lo:hi]], type=pa.list_(pa.float32())
                ),
                "tokens": pa.array(tokens[lo:hi], type=pa.int64()),
                "quality": pa.array(
                    [None if no_quality[i] else float(quality[i]) for i in range(lo, hi)],
                    type=pa.float64(),
                ),
            }
        )
        pq.write_table(table, path / f"part-{f:03d}.parquet")
    return path


def build_codes(spark, root: Path) -> dict[str, str]:
    """Corpus → fit → annotate (synthetic vectors, no model) → stats."""
    from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
    from hermes_spark.tasks.annotate import annotate
    from hermes_spark.tasks.fit import fit
    from hermes_spark.tasks.stats import compute_stats

    corpus = write_corpus(root / "corpus")
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus), embedding_col="emb", tokens_col="tokens", quality_col="quality"
        ),
        fit=FitConfig(levels=CODES_LEVELS, sample_size=1500, seed=1, n_iter=10),
    )
    fit(spark, cfg, str(root / "cb"))
    annotate(spark, cfg, str(root / "cb"), str(root / "codes"))
    compute_stats(spark, str(root / "codes"), str(root / "stats"), None, list(CODES_LEVELS))
    return {
        "root": str(root),
        "corpus": str(corpus),
        "codes": str(root / "codes"),
        "stats": str(root / "stats"),
        "cb": str(root / "cb"),
    }


#: Level sizes, vector size and shared corpora of :func:`write_mixed_corpus`.
MIXED_LEVELS = (16, 8, 8)
MIXED_DIM = 64
MIXED_CORPORA = ("ag_news_test.parquet", "dbpedia_hier_10k.parquet", "arxiv_0704_2k.parquet")


def hashed_bow(texts: list[str], dim: int = MIXED_DIM) -> np.ndarray:
    """Unit feature-hashed bags of words (crc32 of the lower-cased word; signed)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z]{3,}", text.lower()):
            h = zlib.crc32(word.encode())
            out[i, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def write_mixed_corpus(root: Path) -> tuple[str, pd.DataFrame]:
    """AG News + DBpedia + arXiv texts (shared corpora) with hashed-BOW vectors, word-count
    tokens and built-in qualities, over 4 files under ``root``."""
    from udfs.quality import quality_scores

    frames = []
    for name in MIXED_CORPORA:
        t = pq.read_table(shared_corpus(name), columns=["id", "text"]).to_pandas()
        t["id"] = name.split("_")[0] + ":" + t["id"].astype(str)
        frames.append(t)
    docs = pd.concat(frames, ignore_index=True)
    docs["tokens"] = docs["text"].str.split().str.len().clip(lower=1).astype(np.int64)
    docs["quality"] = quality_scores(docs["text"]).to_numpy()
    vecs = hashed_bow(docs["text"].tolist())
    root.mkdir(parents=True, exist_ok=True)
    for f, part in enumerate(np.array_split(np.arange(len(docs)), 4)):
        sub = docs.iloc[part]
        table = pa.table(
            {
                "id": sub["id"].tolist(),
                "text": sub["text"].tolist(),
                "tokens": pa.array(sub["tokens"].to_numpy(), type=pa.int64()),
                "quality": pa.array(sub["quality"].to_numpy(), type=pa.float64()),
                "emb": pa.array([list(map(float, v)) for v in vecs[part]], pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, root / f"part-{f}.parquet")
    return str(root), docs
