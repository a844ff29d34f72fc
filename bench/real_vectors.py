"""Real-text vectors for the quality benchmarks: embedded once, cached outside the repo.

Shared by ``bench_quality.py`` and ``bench_fine_cells.py``: a seeded document sample of a
Parquet corpus embedded with the product's annotate path (:class:`Encoder`, the backend
and precision ``hermes fit`` records on CPU executors unless told otherwise) and cached
in chunks, optional passages of long documents, and the disjoint fit / held-out split.

Run as a script to fill the cache in the background (``nice``; it resumes where it
stopped)::

    nice -n 10 python bench/real_vectors.py ../shared/data/*.parquet --passages
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

log = logging.getLogger("real_vectors")

DEFAULT_CACHE = Path(
    os.environ.get("HERMES_VECTOR_CACHE", str(Path.home() / ".cache" / "hermes-spark-bench"))
)
MODEL = "all-MiniLM-L6-v2"
CHUNK = 250


@dataclass(frozen=True)
class Embedding:
    """How the benchmark embeds: the settings ``hermes fit`` would record on CPU."""

    max_seq_length: int = 256
    backend: str = "onnx"
    precision: str = "int8"

    @property
    def tag(self) -> str:
        """Cache-file tag of these settings."""
        return f"{self.backend}-{self.precision}.s{self.max_seq_length}"

    def model(self, dim: int) -> dict[str, Any]:
        """The ``model`` record of a codebook fitted on these vectors."""
        return {
            "name": MODEL,
            "dim": dim,
            "max_seq_length": self.max_seq_length,
            "backend": self.backend,
            "precision": self.precision,
        }


def _encoder(emb: Embedding) -> Any:
    from hermes_spark.embedding.encoder import Encoder
    from hermes_spark.embedding.settings import ModelSettings

    settings = ModelSettings(
        MODEL, emb.max_seq_length, 64, "cpu", backend=emb.backend, precision=emb.precision
    )
    return Encoder(settings)


def load_texts(path: str, n: int | None, passages: bool, emb: Embedding) -> pd.DataFrame:
    """A seeded ``n``-document sample (all when ``None``) of ``path``; with ``passages``,
    each document split into consecutive passages of at most ``max_seq_length`` tokens
    (column ``doc`` keeps the source row, so passages of one document stay together)."""
    table = pq.read_table(path).to_pandas()
    n = len(table) if n is None else min(n, len(table))
    table = table.sample(n=n, random_state=0).reset_index(drop=True)
    table["doc"] = np.arange(len(table))
    if not passages:
        return table
    tok = _encoder(emb).text_tokenizer.tok
    body = emb.max_seq_length - 2  # [CLS] ... [SEP]
    rows = []
    for rec in table.to_dict("records"):
        enc = tok.encode(rec["text"], add_special_tokens=False)
        offsets = enc.offsets
        for start in range(0, max(1, len(offsets)), body):
            piece = offsets[start : start + body]
            if not piece:
                break
            rows.append({**rec, "text": rec["text"][piece[0][0] : piece[-1][1]]})
    return pd.DataFrame(rows)


def embed_cached(
    path: str,
    n: int | None = None,
    cache: Path = DEFAULT_CACHE,
    emb: Embedding = Embedding(),
    budget_s: float | None = None,
    passages: bool = False,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Vectors and metadata (every column but ``text``) of the sample, embedded once.

    With ``budget_s``, no new chunk is embedded after that many seconds and the cached
    prefix of the sample (itself a seeded sample) is returned.
    """
    t0 = time.perf_counter()
    table = load_texts(path, n, passages, emb)
    name = f"{Path(path).stem}.n{table['doc'].nunique()}{'.passages' if passages else ''}"
    cache.mkdir(parents=True, exist_ok=True)
    texts = table["text"].tolist()
    parts, encoder = [], None
    for i in range(0, len(texts), CHUNK):
        f = cache / f"{name}.{emb.tag}.{i:06d}.npy"
        if not f.exists() and budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
        if not f.exists():
            encoder = encoder or _encoder(emb)
            vectors, _ = encoder.encode(texts[i : i + CHUNK], counts=False)
            np.save(f, np.asarray(vectors, dtype=np.float32))
        parts.append(np.load(f))
    x = np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)
    meta = table.drop(columns=["text"]).iloc[: len(x)].reset_index(drop=True)
    log.info("%s: %d rows (%s)", name, len(x), emb.tag)
    return x, meta


def split_halves(
    n: int, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted ``(fit, held_out)`` row indices, 50/50 by a seeded permutation; with
    ``groups``, whole groups (passages of one document) go to the same half."""
    if groups is None:
        groups = np.arange(n)
    uniq, inverse = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fit_group = np.zeros(len(uniq), dtype=bool)
    fit_group[order[: len(uniq) // 2]] = True
    rows = np.arange(n)
    return rows[fit_group[inverse]], rows[~fit_group[inverse]]


def main(argv: list[str] | None = None) -> None:
    """Fill the cache for every corpus given (whole corpora; passages optional)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+")
    parser.add_argument("--passages", action="store_true", help="also passages of long docs")
    parser.add_argument("--passage-corpora", default="c4_en_1k,fineweb_1k_eduscored")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for path in args.corpora:
        t0 = time.perf_counter()
        x, _ = embed_cached(path, None, Path(args.cache))
        log.info("%s: %d docs in %.0f s", path, len(x), time.perf_counter() - t0)
    if args.passages:
        keys = args.passage_corpora.split(",")
        for path in [p for p in args.corpora if any(k in Path(p).stem for k in keys)]:
            t0 = time.perf_counter()
            x, _ = embed_cached(path, None, Path(args.cache), passages=True)
            log.info("%s passages: %d rows in %.0f s", path, len(x), time.perf_counter() - t0)


if __name__ == "__main__":
    main()
