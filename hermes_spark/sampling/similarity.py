"""Similarity to target examples for ``--stage2 target-top:p``.

A few hundred target texts are embedded with the artifact's model, mapped into LST space
(the artifact's Learned Semantic Transform) and clustered into ``k`` spherical k-means
centroids on the driver (small: ``k × r`` floats). A document's similarity is the cosine
between its LST-space vector and the nearest centroid, computed on executors
(``mapInPandas``; the centroids and the LST arrays travel in the function's closure, a
few hundred kB) and never collected: the result is the ``target_similarity`` column that
``target-top:p`` ranks each Stage-2 child by, exactly as ``quality-top:p`` ranks quality.

Document vectors come, in this order of preference, from

1. the ``<CODES>_embeddings`` table of ``annotate --store-embeddings`` (float16): exact
   and bitwise reproducible;
2. the corpus: its ``--embedding-col`` vectors, or a **bounded re-embedding** of its text
   with the artifact's model, of the documents that have codes (at most
   ``max_embed_docs``, :data:`MAX_EMBED_DOCS` by default; above it the run stops and says
   to store embeddings). Re-embedding fixes the batches (hash partitions of ``doc_id``
   whose count follows the row count, ``doc_id`` order inside), so a rerun on the same
   cluster configuration gives the same vectors.

Scores are computed in float64 over fixed-size row blocks (the last block zero-padded)
with ``einsum``'s own loops (no BLAS, whose kernels may depend on shapes and threads), so
a document's score does not depend on which rows share its partition or block:
the sample stays deterministic and partition-independent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark.errors import InvalidConfigError, InvalidInputError, VersionMismatchError
from hermes_spark.schema import VERSION_COL

if TYPE_CHECKING:
    from hermes_spark.config import CorpusConfig
    from hermes_spark.quantize.codebook import Codebook

log = logging.getLogger(__name__)

#: The column ``target-top:p`` ranks by (added by :func:`with_target_similarity`).
SIM_COL = "target_similarity"
#: Rows per scoring block: every document is scored inside a block of exactly this shape.
BLOCK_ROWS = 256
#: Default cap on the documents a run re-embeds when no embeddings table exists.
MAX_EMBED_DOCS = 1_000_000
#: Documents per partition when re-embedding (the partition count follows the row count).
EMBED_DOCS_PER_PARTITION = 20_000
#: At most this many target examples come to the driver.
MAX_TARGET_DOCS = 100_000
DEFAULT_CENTROIDS = 8
_NORM_FLOOR = 1e-12


# ------------------------------------------------------------------ numpy (both sides)


def lst_arrays(codebook: Codebook) -> dict[str, Any]:
    """The artifact's LST as float64 arrays (``mean, components, scale, rotation``)."""
    lst = codebook.lst
    return {
        "mean": np.asarray(lst.mean, dtype=np.float64),
        "components": np.asarray(lst.components, dtype=np.float64),
        "scale": np.asarray(lst.scale, dtype=np.float64),
        "rotation": None if lst.rotation is None else np.asarray(lst.rotation, np.float64),
    }


def _blocks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, block)`` over rows of ``x``, every block ``BLOCK_ROWS`` rows (zero-padded)."""
    for lo in range(0, x.shape[0], BLOCK_ROWS):
        block = x[lo : lo + BLOCK_ROWS]
        if block.shape[0] < BLOCK_ROWS:
            pad = np.zeros((BLOCK_ROWS - block.shape[0], x.shape[1]), dtype=np.float64)
            block = np.vstack([block, pad])
        yield lo, block


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` without BLAS (``einsum``'s own loops): every output element sums its
    products in the same order whatever the row's position, thread count or library."""
    out: np.ndarray = np.einsum("nd,dr->nr", a, b, optimize=False)
    return out


def to_lst_space(x: np.ndarray, arrays: Mapping[str, Any]) -> np.ndarray:
    """Model-space rows ``(n, d)`` → unit LST-space rows ``(n, r)`` (float64).

    The rows are first scaled to unit norm (as annotate does), then centred, projected,
    whitened, rotated and renormalised like :meth:`LST.transform`. A zero or non-finite
    row gives a NaN row. Row ``i`` of the result depends on row ``i`` of ``x`` only.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != arrays["mean"].shape[0]:
        raise InvalidInputError(
            f"vectors of shape {x.shape} do not match the artifact's dimension "
            f"{arrays['mean'].shape[0]}"
        )
    r = arrays["components"].shape[1]
    out = np.empty((x.shape[0], r), dtype=np.float64)
    for lo, block in _blocks(x):
        norms = np.sqrt((block * block).sum(axis=1, keepdims=True))
        ok = np.isfinite(norms[:, 0]) & (norms[:, 0] > _NORM_FLOOR)
        unit = np.where(ok[:, None], block / np.where(ok[:, None], norms, 1.0), 0.0)
        z = _matmul(unit - arrays["mean"], arrays["components"]) * arrays["scale"]
        if arrays.get("rotation") is not None:
            z = _matmul(z, arrays["rotation"])
        zn = np.sqrt((z * z).sum(axis=1, keepdims=True))
        z = z / np.maximum(zn, _NORM_FLOOR)
        z[~ok] = np.nan
        n = min(BLOCK_ROWS, x.shape[0] - lo)
        out[lo : lo + n] = z[:n]
    return out


def similarity_scores(
    x: np.ndarray, arrays: Mapping[str, Any], centroids: np.ndarray
) -> np.ndarray:
    """Cosine of each model-space row's LST vector to its nearest centroid (float64 ``(n,)``;
    NaN for a zero or non-finite row). Row ``i`` depends on row ``i`` only."""
    c = np.asarray(centroids, dtype=np.float64)
    z = to_lst_space(x, arrays)
    out = np.full(z.shape[0], np.nan)
    for lo, block in _blocks(np.nan_to_num(z, nan=0.0)):
        n = min(BLOCK_ROWS, z.shape[0] - lo)
        out[lo : lo + n] = _matmul(block, c.T).max(axis=1)[:n]
    out[~np.isfinite(z).all(axis=1)] = np.nan
    return out


@dataclass(frozen=True)
class TargetCentroids:
    """``k`` unit centroids of the target examples in the artifact's LST space.

    Small and JSON-able (``to_dict``/``from_dict``); the plan carries it so that
    ``hermes sample --plan`` scores the documents without the target corpus.
    """

    centroids: np.ndarray
    codebook_version: str
    target_docs: int
    seed: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of centroids."""
        return int(self.centroids.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (float32 values written exactly)."""
        return {
            "centroids": [[float(v) for v in row] for row in np.asarray(self.centroids)],
            "k": self.k,
            "codebook_version": self.codebook_version,
            "target_docs": int(self.target_docs),
            "seed": int(self.seed),
            "source": self.source,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TargetCentroids:
        """Inverse of :meth:`to_dict` (unknown keys kept in ``extra``)."""
        try:
            cents = np.asarray(doc["centroids"], dtype=np.float32)
            known = {"centroids", "k", "codebook_version", "target_docs", "seed", "source"}
            return cls(
                centroids=cents,
                codebook_version=str(doc["codebook_version"]),
                target_docs=int(doc["target_docs"]),
                seed=int(doc.get("seed", 0)),
                source=str(doc.get("source", "")),
                extra={k: v for k, v in doc.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"the plan's target centroids are not valid: {exc}") from exc


def fit_target_centroids(
    vectors: np.ndarray,
    codebook: Codebook,
    *,
    k: int = DEFAULT_CENTROIDS,
    seed: int = 0,
    n_iter: int = 25,
    source: str = "",
) -> TargetCentroids:
    """Spherical k-means (driver, numpy) of the target vectors in LST space.

    ``vectors`` are model-space embeddings of the target examples (``(n, d)``; a few
    hundred). ``k`` is capped at the number of usable vectors. Deterministic for a seed.

    Raises:
        InvalidConfigError: ``k < 1``.
        InvalidInputError: no usable target vector.
    """
    from hermes_spark.quantize.rvq import kmeans

    if int(k) < 1:
        raise InvalidConfigError(f"must be >= 1, got {k!r}", key="sample.target_centroids")
    z = to_lst_space(np.asarray(vectors), lst_arrays(codebook))
    z = z[np.isfinite(z).all(axis=1)]
    if not len(z):
        raise InvalidInputError("no target example has a usable vector")
    kk = int(min(int(k), len(z)))
    x = np.ascontiguousarray(z, dtype=np.float32)
    cents, _, _ = kmeans(x, kk, np.random.default_rng(seed), n_iter, spherical=True)
    cents = cents.astype(np.float64)
    cents /= np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), _NORM_FLOOR)
    return TargetCentroids(cents.astype(np.float32), codebook.version, len(z), int(seed), source)


# ------------------------------------------------------------------ executors


def _score_frame(
    pdf: pd.DataFrame, arrays: Mapping[str, Any], cents: np.ndarray, col: str, dim: int
) -> pd.DataFrame:
    from hermes_spark.embedding.vectors import F16

    n = len(pdf)
    x = np.full((n, dim), np.nan)
    width = dim * F16.itemsize
    for i, value in enumerate(pdf[col].to_numpy()):
        if value is None:
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            if len(value) == width:
                x[i] = np.frombuffer(bytes(value), dtype=F16)
        else:
            row = np.asarray(value, dtype=np.float64)
            if row.shape == (dim,):
                x[i] = row
    sims = similarity_scores(x, arrays, cents) if n else np.zeros(0)
    return pd.DataFrame({"doc_id": pdf["doc_id"].to_numpy(), SIM_COL: sims})


def make_similarity_fn(
    codebook: Codebook, target: TargetCentroids, vector_col: str
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function: ``doc_id, <vector_col>`` (``embedding_f16`` bytes or an
    array of floats) → ``doc_id, target_similarity`` (null for a missing/bad vector).
    The closure holds the LST arrays and the centroids (built on the driver)."""
    arrays = lst_arrays(codebook)
    cents = np.asarray(target.centroids, dtype=np.float64)
    dim = int(codebook.dim)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield _score_frame(pdf, arrays, cents, vector_col, dim)

    return score


SIM_SCHEMA = T.StructType(
    [T.StructField("doc_id", T.StringType()), T.StructField(SIM_COL, T.DoubleType())]
)


# ------------------------------------------------------------------ driver orchestration


@dataclass(frozen=True)
class VectorSource:
    """Where document vectors come from: an embeddings table frame, or a corpus frame
    (its embedding column, else its text re-embedded with the artifact's model)."""

    embeddings: DataFrame | None = None
    corpus: DataFrame | None = None
    corpus_config: CorpusConfig | None = None
    max_embed_docs: int = MAX_EMBED_DOCS
    description: str = ""


def _scores_from_embeddings(
    embeddings: DataFrame, codebook: Codebook, target: TargetCentroids
) -> DataFrame:
    missing = {"doc_id", VERSION_COL, "embedding_f16"} - set(embeddings.columns)
    if missing:
        raise InvalidInputError(
            f"the embeddings table lacks column(s) {', '.join(sorted(missing))} "
            "(it is written by annotating with {store_embeddings})"
        )
    rows = embeddings.where(F.col(VERSION_COL) == codebook.version).select(
        "doc_id", "embedding_f16"
    )
    return rows.mapInPandas(make_similarity_fn(codebook, target, "embedding_f16"), SIM_SCHEMA)


def _scores_from_corpus(
    codes: DataFrame, source: VectorSource, codebook: Codebook, target: TargetCentroids
) -> DataFrame:
    from hermes_spark.sampling.texts import corpus_rows, first_per_id

    assert source.corpus is not None and source.corpus_config is not None
    cfg = source.corpus_config
    given = cfg.embedding_col
    if not given and cfg.text_col not in source.corpus.columns:
        raise InvalidInputError(
            f"target-top:p needs document vectors: the codes have no embeddings table and the "
            f"corpus has no text column {cfg.text_col!r} to re-embed (nor "
            "{corpus.embedding_col}); annotate with {store_embeddings}, or pass the corpus "
            "texts ({corpus.input})"
        )
    col = given or cfg.text_col
    rows, _ = corpus_rows(source.corpus, cfg, [col])
    wanted = codes.select("doc_id")
    docs = first_per_id(rows).join(wanted, "doc_id")
    if given:
        vec = docs.select("doc_id", F.col(given).alias("embedding"))
        return vec.mapInPandas(make_similarity_fn(codebook, target, "embedding"), SIM_SCHEMA)
    n = wanted.count()
    if n > source.max_embed_docs:
        raise InvalidInputError(
            f"target-top:p would re-embed {n:,} documents with {codebook.model['name']}, above "
            f"the cap of {source.max_embed_docs:,} ({{sample.target_max_embed_docs}}); annotate "
            "with {store_embeddings} (the <CODES>_embeddings table is then used), or raise "
            "the cap"
        )
    from hermes_spark.coding import RunOptions, embed_rows, model_settings

    parts = max(1, math.ceil(n / EMBED_DOCS_PER_PARTITION))
    texts = docs.select("doc_id", F.col(col).alias("text")).where(F.col("text").isNotNull())
    embedded = embed_rows(
        texts.repartition(parts, "doc_id").sortWithinPartitions("doc_id"),
        model_settings(codebook, RunOptions()),
    )
    log.info("target-top: re-embedding %d documents with %s", n, codebook.model["name"])
    return embedded.mapInPandas(make_similarity_fn(codebook, target, "embedding"), SIM_SCHEMA)


def with_target_similarity(
    codes_df: DataFrame,
    target: TargetCentroids,
    codebook: Codebook,
    source: VectorSource,
) -> DataFrame:
    """``codes_df`` with the ``target_similarity`` column (lazy scores, then persisted:
    the plan's quantile passes and the selection reuse them).

    Scores are computed on executors from ``source`` (see the module doc); documents
    without a vector get a null score and are outside every pool. Nothing is collected.

    Raises:
        VersionMismatchError: the centroids belong to another codebook version.
        InvalidInputError: no usable vector source, or a re-embedding above the cap.
    """
    if target.codebook_version != codebook.version:
        raise VersionMismatchError(
            f"the target centroids were fitted with codebook {target.codebook_version}, "
            f"the artifact is {codebook.version}"
        )
    codes = codes_df.drop(SIM_COL) if SIM_COL in codes_df.columns else codes_df
    if source.embeddings is not None:
        scores = _scores_from_embeddings(source.embeddings, codebook, target)
    elif source.corpus is not None:
        scores = _scores_from_corpus(codes, source, codebook, target)
    else:
        raise InvalidInputError(
            "target-top:p needs document vectors and has none: annotate with "
            "{store_embeddings} (the <CODES>_embeddings table, or {sample.embeddings_table}), "
            "or pass the corpus ({corpus.input}) so the candidate documents are re-embedded "
            "with the artifact's model (at most {sample.target_max_embed_docs} of them)"
        )
    # one score per document even if a vector source repeats an id (same key as the join)
    once = scores.groupBy("doc_id").agg(F.max(SIM_COL).alias(SIM_COL))
    scored = codes.join(once, "doc_id", "left")
    return scored.persist(StorageLevel.MEMORY_AND_DISK)


def target_vectors(
    target_df: DataFrame,
    codebook: Codebook,
    *,
    text_col: str = "text",
    embedding_col: str | None = None,
) -> np.ndarray:
    """Model-space vectors of the target examples (driver gets ``n × d`` floats; ``n`` is
    a few hundred): their ``embedding_col``, or their text embedded with the artifact's
    model on executors.

    Raises:
        InvalidInputError: missing columns, no rows, or more than :data:`MAX_TARGET_DOCS`.
    """
    if embedding_col:
        if embedding_col not in target_df.columns:
            raise InvalidInputError(f"the target corpus has no column {embedding_col!r}")
        vec = target_df.select(F.col(embedding_col).alias("embedding"))
    else:
        if text_col not in target_df.columns:
            raise InvalidInputError(
                f"the target corpus has no text column {text_col!r} (or give "
                "{sample.target_embedding_col})"
            )
        from hermes_spark.coding import RunOptions, embed_rows, model_settings

        texts = target_df.select(
            F.sha2(F.col(text_col).cast("string"), 256).alias("doc_id"),
            F.col(text_col).cast("string").alias("text"),
        ).where(F.col("text").isNotNull() & (F.length(F.trim("text")) > 0))
        settings = model_settings(codebook, RunOptions())
        vec = embed_rows(texts, settings).select("embedding")
    rows = vec.where(F.col("embedding").isNotNull()).limit(MAX_TARGET_DOCS + 1).collect()
    if len(rows) > MAX_TARGET_DOCS:
        raise InvalidInputError(
            f"the target corpus has more than {MAX_TARGET_DOCS:,} examples; a few hundred "
            "describe a target (sample it first)"
        )
    good = [np.asarray(r[0], dtype=np.float64) for r in rows]
    good = [g for g in good if g.shape == (codebook.dim,)]
    if not good:
        raise InvalidInputError("no target example has a usable vector")
    return np.stack(good)


def target_centroids(
    target_df: DataFrame,
    codebook: Codebook,
    *,
    k: int = DEFAULT_CENTROIDS,
    seed: int = 0,
    text_col: str = "text",
    embedding_col: str | None = None,
    source: str = "",
) -> TargetCentroids:
    """:func:`fit_target_centroids` of :func:`target_vectors` (the API entry point).

    Example::

        cb = load_codebook(ARTIFACT)  # or model.codebook
        target = target_centroids(spark.read.parquet(TARGET), cb, k=8)
        scored = with_target_similarity(codes_df, target, cb, VectorSource(embeddings=emb_df))
        plan = plan_mixture(None, codes_df=scored, budget_tokens=1e9,
                            stage2="target-top:0.3", target=target)
        manifest_df = sample(scored, plan)
    """
    x = target_vectors(target_df, codebook, text_col=text_col, embedding_col=embedding_col)
    return fit_target_centroids(x, codebook, k=k, seed=seed, source=source)
