"""Bucket cards: what is inside each bucket of a codes table, one row per bucket and level.

Everything runs on the executors as Spark jobs; the driver builds the plan and reads one
number (the total tokens). Per bucket a card holds its size, a quality summary, the top
terms by class-based TF-IDF over a bounded per-bucket sample of texts, the documents
nearest the centroid (smallest ``qerr``), random ones in ``xxhash64(doc_id, seed)`` order,
and the mix of any kept columns. The corpus is only joined with the sampled ids, so the
cost of the text side grows with the sample (``buckets × sample_per_bucket``), never with
the corpus beyond one scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError
from hermes_spark.schema import VERSION_COL
from hermes_spark.stats import codes_version

log = logging.getLogger(__name__)

#: shortest term counted (letters only)
MIN_TERM_CHARS = 3
#: characters of a document's text that the term counts read
TERM_CHARS = 4000
#: distinct values per kept column a card lists
MIX_VALUES = 5

_FALLBACK_STOP_WORDS = [
    "the",
    "and",
    "for",
    "that",
    "with",
    "this",
    "from",
    "have",
    "are",
    "was",
    "were",
    "has",
    "had",
    "not",
    "but",
    "you",
    "your",
    "its",
    "they",
    "their",
    "them",
    "what",
    "which",
    "who",
    "will",
    "would",
    "can",
    "could",
    "about",
    "into",
    "more",
    "than",
    "also",
    "said",
    "says",
    "one",
    "two",
    "been",
    "there",
    "when",
    "where",
    "how",
    "all",
    "any",
    "our",
    "out",
    "over",
    "new",
    "after",
    "before",
    "just",
    "such",
    "may",
    "most",
    "other",
    "some",
    "these",
    "those",
    "very",
    "only",
    "then",
    "here",
    "his",
    "her",
    "she",
    "him",
    "our",
    "who",
    "why",
]


def stop_words() -> list[str]:
    """Spark's English stop-word list (driver; a short built-in list where the JVM
    helper is unavailable, e.g. Spark Connect)."""
    try:
        from pyspark.ml.feature import StopWordsRemover

        return list(StopWordsRemover.loadDefaultStopWords("english"))
    except Exception:  # Spark Connect or no JVM helper: the list below is enough
        return list(_FALLBACK_STOP_WORDS)


def _ranked(df: DataFrame, keys: Sequence[str], order: Sequence[Column], limit: int) -> DataFrame:
    """Rows of ``df`` ranked ``_rn`` 1..limit within ``keys`` (a group-limited window:
    Spark keeps only the top rows per partition before it shuffles)."""
    window = Window.partitionBy(*keys).orderBy(*order)
    return df.withColumn("_rn", F.row_number().over(window)).where(F.col("_rn") <= limit)


def _level_rows(codes: DataFrame, level: int, seed: int, keep_cols: Sequence[str]) -> DataFrame:
    """``level, bucket, parent, code, doc_id, qerr, n_tokens, quality, _h`` + kept columns."""
    parent = F.col(f"bucket{level - 1}") if level > 1 else F.lit(None).cast("long")
    code = F.concat_ws(".", *[F.col(f"c{k}").cast("string") for k in range(1, level + 1)])
    return codes.select(
        F.lit(level).alias("level"),
        F.col(f"bucket{level}").alias("bucket"),
        parent.alias("parent"),
        code.alias("code"),
        "doc_id",
        F.col(f"qerr{level}").cast("double").alias("qerr"),
        F.col("n_tokens").cast("long").alias("n_tokens"),
        F.col("quality").cast("double").alias("quality"),
        F.xxhash64("doc_id", F.lit(seed)).alias("_h"),
        *[F.col(c).cast("string").alias(c) for c in keep_cols],
    )


def _summary(rows: DataFrame) -> DataFrame:
    """Docs, tokens and quality p50/p70/mean per (level, bucket)."""
    q = F.percentile_approx("quality", [0.5, 0.7], 1000)
    return (
        rows.groupBy("level", "bucket")
        .agg(
            F.first("parent").alias("parent"),
            F.first("code").alias("code"),
            F.count(F.lit(1)).alias("docs"),
            F.sum("n_tokens").alias("tokens"),
            q.alias("_q"),
            F.avg("quality").alias("quality_mean"),
        )
        .select(
            "level",
            "bucket",
            "parent",
            "code",
            "docs",
            "tokens",
            F.col("_q")[0].alias("quality_p50"),
            F.col("_q")[1].alias("quality_p70"),
            "quality_mean",
        )
    )


def _ordered_list(rows: DataFrame, fields: Sequence[str], name: str) -> DataFrame:
    """``level, bucket, name``: the ``fields`` structs of each group in ``_rn`` order."""
    items = F.array_sort(F.collect_list(F.struct("_rn", *fields)))
    strip = F.transform(items, lambda s: F.struct(*[s[f].alias(f) for f in fields]))
    return rows.groupBy("level", "bucket").agg(strip.alias(name))


def term_scores(sampled: DataFrame, top: int, stop: Sequence[str]) -> DataFrame:
    """``level, bucket, top_terms`` (best first) by class-based TF-IDF of ``sampled``
    (``level, bucket, doc_id, text``): ``tf(t,c)/words(c) · log(1 + A/f(t))`` with ``A``
    the mean words per bucket and ``f(t)`` the term's count over the level's buckets.
    Terms seen in only one document of a bucket's sample are not ranked (executors)."""
    words = sampled.select(
        "level",
        "bucket",
        "doc_id",
        F.explode(F.split(F.lower(F.substring("text", 1, TERM_CHARS)), r"[^\p{L}]+")).alias("term"),
    ).where((F.length("term") >= MIN_TERM_CHARS) & ~F.col("term").isin(list(stop)))
    tf = words.groupBy("level", "bucket", "term").agg(
        F.count(F.lit(1)).alias("tf"), F.countDistinct("doc_id").alias("df")
    )
    per_bucket = Window.partitionBy("level", "bucket")
    per_term = Window.partitionBy("level", "term")
    scored = (
        tf.withColumn("_words", F.sum("tf").over(per_bucket))
        .withColumn("_ft", F.sum("tf").over(per_term))
        .withColumn("_docs", F.max("df").over(per_bucket))
    )
    mean_words = scored.groupBy("level").agg((F.sum("tf") / F.countDistinct("bucket")).alias("_a"))
    scored = scored.join(F.broadcast(mean_words), "level").withColumn(
        "score", F.col("tf") / F.col("_words") * F.log1p(F.col("_a") / F.col("_ft"))
    )
    scored = scored.where((F.col("df") >= 2) | (F.col("_docs") < 2))
    best = _ranked(scored, ["level", "bucket"], [F.col("score").desc(), F.col("term")], top)
    terms = _ordered_list(best, ["term"], "_terms")
    return terms.select(
        "level", "bucket", F.transform("_terms", lambda s: s["term"]).alias("top_terms")
    )


def _mix(rows: DataFrame, keep_cols: Sequence[str]) -> DataFrame | None:
    """``level, bucket, mix``: the most frequent values of each kept column (executors)."""
    parts = []
    for c in keep_cols:
        counts = rows.groupBy("level", "bucket", F.col(c).alias("value")).agg(
            F.count(F.lit(1)).alias("docs")
        )
        top = _ranked(
            counts, ["level", "bucket"], [F.col("docs").desc(), F.col("value")], MIX_VALUES
        )
        parts.append(top.withColumn("column", F.lit(c)))
    if not parts:
        return None
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    union = union.withColumn(
        "_rn", F.row_number().over(Window.partitionBy("level", "bucket").orderBy("column", "_rn"))
    )
    return _ordered_list(union, ["column", "value", "docs"], "mix")


def _examples(ranked: DataFrame, snippet_chars: int, name: str) -> DataFrame:
    """``level, bucket, name``: ``doc_id, qerr, snippet`` of ranked rows with ``text``."""
    snip = F.substring(F.regexp_replace("text", r"\s+", " "), 1, snippet_chars)
    return _ordered_list(ranked.withColumn("snippet", snip), ["doc_id", "qerr", "snippet"], name)


def bucket_cards(
    codes: DataFrame,
    texts: DataFrame,
    *,
    level: int = 2,
    examples: int = 5,
    seed: int = 0,
    sample_per_bucket: int = 200,
    top_terms: int = 10,
    keep_cols: Sequence[str] = (),
    snippet_chars: int = 200,
    version: str | None = None,
) -> DataFrame:
    """The cards of levels ``1..level`` of one codebook version's codes (lazy).

    ``codes`` holds ``doc_id, c*, bucket*, qerr*, n_tokens, quality`` (and ``keep_cols``);
    ``texts`` one row per ``doc_id`` with ``text``. Columns: ``codebook_version, level,
    bucket, parent, code, docs, tokens, share_tokens, quality_p50, quality_p70, quality_mean,
    top_terms, nearest, random, mix``. Executors only; the driver reads the version
    (``version``, else one small job).

    Raises:
        InvalidInputError: a level the codes do not have, or a bad count.
    """
    if level < 1 or f"bucket{level}" not in codes.columns:
        raise InvalidInputError(f"level must be 1..the codes' levels, got {level}")
    if examples < 0 or sample_per_bucket < 1 or top_terms < 1:
        raise InvalidInputError("examples >= 0, sample_per_bucket >= 1 and top_terms >= 1")
    missing = [c for c in keep_cols if c not in codes.columns]
    if missing:
        raise InvalidInputError(f"keep columns {missing} are not in the codes table")
    version = version or codes_version(codes)
    rows = _level_rows(codes, 1, seed, keep_cols)
    for k in range(2, level + 1):
        rows = rows.unionByName(_level_rows(codes, k, seed, keep_cols))
    keys = ["level", "bucket"]
    width = max(sample_per_bucket, examples)
    picked = _ranked(rows, keys, [F.col("_h"), F.col("doc_id")], width).withColumn(
        "_kind", F.lit("sample")
    )
    if examples:
        nearest = _ranked(rows, keys, [F.col("qerr"), F.col("doc_id")], examples)
        picked = picked.unionByName(nearest.withColumn("_kind", F.lit("nearest")))
    # one join of the picked ids with the corpus: the text side costs the sample, not more
    picked = picked.join(texts.select("doc_id", "text"), "doc_id")
    sample = picked.where(F.col("_kind") == "sample")
    cards = _summary(rows)
    cards = cards.join(term_scores(sample, top_terms, stop_words()), keys, "left")
    if examples:
        near = _examples(picked.where(F.col("_kind") == "nearest"), snippet_chars, "nearest")
        rand = _examples(sample.where(F.col("_rn") <= examples), snippet_chars, "random")
        cards = cards.join(near, keys, "left").join(rand, keys, "left")
    mix = _mix(rows, keep_cols)
    if mix is not None:
        cards = cards.join(mix, keys, "left")
    share = F.col("tokens") / F.sum("tokens").over(Window.partitionBy("level"))
    cards = cards.withColumn("share_tokens", share)  # one window per level over the cards
    return cards.select(F.lit(version).alias(VERSION_COL), "*")
