"""Sampling plans: Stage-1 and Stage-2 allocations from bucket statistics (SPEC "Two-stage
sampling — exact semantics"), plus quality pools and re-scoring.

Driver orchestration. A plan needs only per-bucket statistics: the STATS table (no scan of
documents) or one aggregation over the codes table's small columns. ``quality-top:p``
adds the exact per-child ``(1-p)`` quality quantile and the pool sizes: a histogram pass
on executors, then only the documents of each child's boundary bin are sorted. The driver
holds one row per bucket and never a document. :func:`rescore_quality` recomputes the
``quality`` column of one codebook version from the corpus text (executors), no embedding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, SampleConfig
from hermes_spark.corpus import (
    CORRUPT_COL,
    ORDER_COL,
    check_columns,
    doc_id_column,
    list_input_files,
    read_corpus,
    reject_reason,
)
from hermes_spark.delta_store import DeltaStore, get_store
from hermes_spark.errors import (
    BudgetError,
    InvalidConfigError,
    InvalidInputError,
    VersionMismatchError,
)
from hermes_spark.sampling.allocate import parse_stage2_rule, stage1_targets, stage2_allocation
from hermes_spark.sampling.report import jsonable
from hermes_spark.sampling.weights import format_bucket_key, resolve_stage1_weights
from hermes_spark.schema import VERSION_COL, select_version

log = logging.getLogger(__name__)

PLAN_FORMAT = 1
PLAN_KIND = "hermes-sample-plan"
#: Histogram bins per round of the exact quantile search, and the most documents of one
#: child's boundary bin that are sorted by one task (else the bin is refined again).
KTH_BINS = 1024
KTH_SORT_LIMIT = 250_000
_KTH_ROUNDS = 12


# ------------------------------------------------------------------ plan object


@dataclass(frozen=True)
class SamplePlan:
    """A computed two-stage allocation; JSON round-trips exactly (``save``/``load``).

    ``stage1`` has one row per non-empty level-``w`` bucket (column ``bucket``), ``children``
    one row per non-empty level-``s`` bucket (``parent``, ``child``, pool sizes, ``alloc``,
    ``full_passes``, ``remainder``, ...). ``info`` holds what the report needs besides
    (weights source, unlisted buckets, shortfalls, pool contraction, entropies).
    """

    codebook_version: str
    levels: tuple[int, ...]
    settings: dict[str, Any]
    stage1: pd.DataFrame
    children: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_level(self) -> int:
        """Stage-1 level ``w``."""
        return int(self.settings["weights_level"])

    @property
    def stage2_level(self) -> int:
        """Stage-2 level ``s``."""
        return int(self.settings["stage2_level"])

    @property
    def rule(self) -> tuple[str, float | None]:
        """The parsed Stage-2 rule ``(name, p)``."""
        return parse_stage2_rule(self.settings["stage2"])

    @property
    def seed(self) -> int:
        """Seed of ``u = hash(doc_id, seed)``."""
        return int(self.settings["seed"])

    def key(self, bucket: int, level: int) -> str:
        """Written key (``"c1.c2"``) of a packed bucket id."""
        return format_bucket_key(int(bucket), level, self.levels)

    def target_shares(self) -> dict[str, float]:
        """Stage-1 target shares (``T_b / Σ T``, after capping) keyed by bucket key."""
        target = self.stage1.set_index("bucket")["target"]
        total = float(target.sum())
        return {
            self.key(b, self.weights_level): (float(t) / total if total > 0 else 0.0)
            for b, t in target.items()
        }

    def with_seed(self, seed: int) -> SamplePlan:
        """The same allocation with another selection seed."""
        return dataclasses.replace(self, settings={**self.settings, "seed": int(seed)})

    def to_json(self) -> str:
        """The plan as JSON (NaN written as null)."""
        doc = {
            "kind": PLAN_KIND,
            "format": PLAN_FORMAT,
            "codebook_version": self.codebook_version,
            "levels": list(self.levels),
            "settings": self.settings,
            "info": self.info,
            "stage1": _records(self.stage1),
            "children": _records(self.children),
        }
        return json.dumps(jsonable(doc), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> SamplePlan:
        """Parse :meth:`to_json` output; InvalidInputError when it is not a plan."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
            raise InvalidInputError(f"{source} is not a hermes sample plan (hermes plan --out)")
        if doc.get("format") != PLAN_FORMAT:
            raise InvalidInputError(
                f"{source} has plan format {doc.get('format')!r}; this hermes reads "
                f"format {PLAN_FORMAT}: re-run hermes plan"
            )
        try:
            stage1 = pd.DataFrame.from_records(doc["stage1"])
            children = pd.DataFrame.from_records(doc["children"])
            for frame, cols in ((stage1, ("bucket",)), (children, ("parent", "mid", "child"))):
                for col in cols:
                    frame[col] = frame[col].astype(np.int64)
            for col in ("full_passes", "docs", "pool_docs"):
                children[col] = children[col].astype(np.int64)
            for frame in (stage1, children):
                for col in [c for c in frame.columns if frame[c].dtype.kind == "O"]:
                    frame[col] = frame[col].astype(np.float64)  # nulls of numeric columns
            return cls(
                codebook_version=str(doc["codebook_version"]),
                levels=tuple(int(k) for k in doc["levels"]),
                settings=dict(doc["settings"]),
                stage1=stage1,
                children=children,
                info=dict(doc.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{source} is not a valid hermes sample plan: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write the plan JSON (driver, local path)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SamplePlan:
        """Read a plan written by :meth:`save`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read plan {str(path)!r}: {exc}") from exc
        return cls.from_json(text, source=f"plan {str(path)!r}")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


# ------------------------------------------------------------- levels and sizes


def check_levels(weights_level: int, stage2_level: int | None, n_levels: int) -> tuple[int, int]:
    """Validate ``1 <= w < s <= n_levels`` (``s`` defaults to ``w + 1``)."""
    w = int(weights_level)
    s = w + 1 if stage2_level is None else int(stage2_level)
    if not 1 <= w < n_levels:
        raise InvalidConfigError(
            f"--weights-level must be in 1..{n_levels - 1} (the table has {n_levels} code "
            f"levels and Stage 2 needs a finer one), got {w}"
        )
    if not w < s <= n_levels:
        raise InvalidConfigError(f"--stage2-level must be in {w + 1}..{n_levels}, got {s}")
    return w, s


def pack_codes(frame: pd.DataFrame, level: int, sizes: tuple[int, ...]) -> np.ndarray:
    """Packed bucket ids of ``c1..c_level`` columns (``bucket_k = bucket_{k-1}·K_k + c_k``)."""
    packed = frame["c1"].to_numpy(dtype=np.int64).copy()
    for k in range(2, level + 1):
        packed = packed * sizes[k - 1] + frame[f"c{k}"].to_numpy(dtype=np.int64)
    return packed


def infer_sizes(
    by_level: dict[int, pd.DataFrame], given: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Level sizes ``K_k`` consistent with bucket rows (``bucket``, ``c1..ck`` per level).

    ``K_k = (bucket_k - c_k) / bucket_{k-1}`` wherever ``bucket_{k-1} > 0``; where that is
    never the case the packing does not depend on ``K_k`` and ``max(c_k) + 1`` is used (so
    is it for ``K_1``). Given sizes (from the codebook artifact) are checked instead.

    Raises:
        InvalidInputError: the rows are not packed consistently with any / the given sizes.
    """
    sizes: list[int] = []
    for k in sorted(by_level):
        frame = by_level[k]
        codes = frame[f"c{k}"].to_numpy(dtype=np.int64)
        if given is not None:
            if len(given) < k:
                raise InvalidInputError(f"the codebook has {len(given)} levels, the data {k}+")
            size = int(given[k - 1])
        elif k == 1 or frame.empty:
            size = int(codes.max(initial=0)) + 1
        else:
            prev = pack_codes(frame, k - 1, tuple(sizes))
            pos = prev > 0
            ratios = (
                np.unique((frame["bucket"].to_numpy(dtype=np.int64)[pos] - codes[pos]) // prev[pos])
                if pos.any()
                else np.array([], dtype=np.int64)
            )
            size = int(ratios[0]) if len(ratios) == 1 else int(codes.max(initial=0)) + 1
        sizes.append(size)
        if (codes < 0).any() or (codes >= size).any():
            raise InvalidInputError(f"codes c{k} lie outside 0..{size - 1}")
        if (pack_codes(frame, k, tuple(sizes)) != frame["bucket"].to_numpy(dtype=np.int64)).any():
            raise InvalidInputError(
                f"level-{k} bucket ids are not packed as bucket{k} = bucket{k - 1}·K{k} + c{k} "
                f"with level sizes {sizes}" + (" (from --codebook)" if given else "")
            )
    return tuple(sizes)


# ------------------------------------------------------------- bucket statistics


def _valid_quality() -> Any:
    q = F.col("quality")
    return q.isNotNull() & ~F.isnan(q) & (F.abs(q) != float("inf"))


def children_from_codes(codes: DataFrame, s: int) -> pd.DataFrame:
    """One aggregation over the codes' small columns: one row per non-empty level-``s``
    bucket with ``bucket1..bucket_s``, ``c1..c_s``, ``docs``, ``tokens``, ``max_tokens``
    (executors; the driver receives one row per bucket)."""
    keys = [f"bucket{k}" for k in range(1, s + 1)]
    agg = codes.groupBy(*keys).agg(
        *[F.min(f"c{k}").cast("long").alias(f"c{k}") for k in range(1, s + 1)],
        F.count(F.lit(1)).alias("docs"),
        F.sum(F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long")).alias("tokens"),
        F.max("n_tokens").cast("long").alias("max_tokens"),
    )
    pdf = agg.toPandas()
    if pdf.empty:
        raise InvalidInputError("the codes table holds no rows of this codebook version")
    for col in [*keys, *[f"c{k}" for k in range(1, s + 1)], "docs", "tokens"]:
        pdf[col] = pdf[col].astype(np.int64)
    pdf["max_tokens"] = pdf["max_tokens"].astype(np.float64)
    return pdf


def read_stats(
    store: DeltaStore, stats: str, version: str | None, max_level: int
) -> tuple[dict[int, pd.DataFrame], str]:
    """STATS rows of levels ``1..max_level`` of one codebook version (driver; small)."""
    if not store.exists(stats):
        raise InvalidInputError(f"statistics table {stats} does not exist (run hermes stats)")
    df = store.read(stats)
    need = {VERSION_COL, "level", "bucket", "docs", "tokens", "c1"}
    if need - set(df.columns):
        raise InvalidInputError(
            f"{stats} is not a STATS table: it lacks {sorted(need - set(df.columns))}"
        )
    versions = sorted(r[0] for r in df.select(VERSION_COL).distinct().collect())
    if version is None:
        if len(versions) != 1:
            raise InvalidInputError(
                f"{stats} holds codebook versions {versions}; pick one with --codebook-version"
            )
        version = versions[0]
    elif version not in versions:
        raise VersionMismatchError(
            f"statistics table {stats} has no rows of codebook version {version} "
            f"(it holds {versions}); re-run hermes stats for that version"
        )
    n_levels = sum(1 for c in df.columns if c in {f"c{k}" for k in range(1, 10)})
    if max_level > n_levels:
        raise InvalidConfigError(f"{stats} has {n_levels} code levels, level {max_level} asked")
    cols = ["level", "bucket", *[f"c{k}" for k in range(1, max_level + 1)], "docs", "tokens"]
    pdf = (
        df.where((F.col(VERSION_COL) == version) & (F.col("level") <= max_level))
        .select(*cols)
        .toPandas()
    )
    out = {}
    for k in range(1, max_level + 1):
        rows = pdf[pdf["level"] == k].drop(columns="level").reset_index(drop=True)
        for col in ["bucket", *[f"c{j}" for j in range(1, k + 1)], "docs", "tokens"]:
            rows[col] = rows[col].astype(np.int64)
        out[k] = rows[["bucket", *[f"c{j}" for j in range(1, k + 1)], "docs", "tokens"]]
    return out, version


def _stats_levels(store: DeltaStore, stats: str) -> int:
    df = store.read(stats)
    return sum(1 for c in df.columns if c in {f"c{k}" for k in range(1, 10)})


def children_from_stats(
    by_level: dict[int, pd.DataFrame], s: int, sizes: tuple[int, ...]
) -> pd.DataFrame:
    """The level-``s`` STATS rows in the layout of :func:`children_from_codes`."""
    rows = by_level[s].copy()
    for k in range(1, s + 1):
        rows[f"bucket{k}"] = pack_codes(rows, k, sizes)
    rows["max_tokens"] = np.nan
    return rows.drop(columns="bucket")


def _by_level(children: pd.DataFrame, s: int) -> dict[int, pd.DataFrame]:
    out = {}
    for k in range(1, s + 1):
        cols = [f"bucket{k}", *[f"c{j}" for j in range(1, k + 1)]]
        out[k] = children[cols].drop_duplicates().rename(columns={f"bucket{k}": "bucket"})
    return out


# ----------------------------------------------------------------- quality pools


def quality_rank(p: float, n: int) -> int:
    """1-based rank of the ``(1-p)`` quantile among ``n`` values (inverted CDF):
    ``max(1, ceil((1-p)·n))``, computed in exact decimal arithmetic."""
    exact = (Decimal(1) - Decimal(repr(float(p)))) * n
    return max(1, int(exact.to_integral_value(rounding="ROUND_CEILING")))


def exact_kth_smallest(values: DataFrame, wanted: pd.DataFrame) -> dict[int, float]:
    """The exact ``k``-th smallest ``v`` of every group ``g`` (executors; small results).

    Args:
        values: columns ``g`` (bigint) and ``v`` (finite double).
        wanted: columns ``g, k, lo, hi``: the 1-based rank and the group's min and max.

    Each round histograms the values inside every group's current interval into
    :data:`KTH_BINS` equal-width bins, finds the bin holding rank ``k`` from cumulative
    counts (a window over the small histogram), and narrows the interval to that bin's
    ``[min, max]``; a bin of at most :data:`KTH_SORT_LIMIT` documents is then sorted
    (only that bin, per group) to read the value. Deterministic: counts, mins and maxes
    do not depend on partitioning, and ties share their value.
    """
    spark = values.sparkSession
    out: dict[int, float] = {}
    todo = wanted[["g", "k", "lo", "hi"]].astype({"g": np.int64, "k": np.int64}).copy()
    to_sort: list[pd.DataFrame] = []
    for _ in range(_KTH_ROUNDS):
        same = todo["lo"] == todo["hi"]
        out.update(zip(todo.loc[same, "g"].tolist(), todo.loc[same, "lo"].tolist(), strict=True))
        todo = todo[~same]
        if todo.empty:
            break
        params = spark.createDataFrame(todo, "g long, k long, lo double, hi double")
        width = F.col("hi") - F.col("lo")
        binned = (
            values.join(F.broadcast(params), "g")
            .where(F.col("v").between(F.col("lo"), F.col("hi")))
            .withColumn(
                "bin",
                F.least(
                    F.floor((F.col("v") - F.col("lo")) / width * KTH_BINS), F.lit(KTH_BINS - 1)
                ).cast("int"),
            )
        )
        hist = binned.groupBy("g", "bin").agg(
            F.count(F.lit(1)).alias("n"), F.min("v").alias("bmin"), F.max("v").alias("bmax")
        )
        running = (
            Window.partitionBy("g")
            .orderBy("bin")
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        hist = hist.withColumn("cum", F.sum("n").over(running)).join(
            F.broadcast(params.select("g", "k")), "g"
        )
        found = (
            hist.where((F.col("cum") >= F.col("k")) & (F.col("cum") - F.col("n") < F.col("k")))
            .select("g", "n", (F.col("cum") - F.col("n")).alias("below"), "bmin", "bmax")
            .toPandas()
        )
        merged = todo.merge(found, on="g", how="left")
        if merged["n"].isna().any():
            raise RuntimeError("quantile search lost a group; the codes table changed meanwhile?")
        merged["k"] = (merged["k"] - merged["below"]).astype(np.int64)
        merged["lo"], merged["hi"] = merged["bmin"], merged["bmax"]
        small = (merged["n"] <= KTH_SORT_LIMIT) & (merged["lo"] != merged["hi"])
        to_sort.append(merged.loc[small, ["g", "k", "lo", "hi"]])
        todo = merged.loc[~small, ["g", "k", "lo", "hi"]]
    if not todo.empty:
        to_sort.append(todo)
    pending = pd.concat(to_sort, ignore_index=True) if to_sort else pd.DataFrame()
    if not pending.empty:
        params = spark.createDataFrame(pending, "g long, k long, lo double, hi double")
        order = Window.partitionBy("g").orderBy("v")
        picked = (
            values.join(F.broadcast(params), "g")
            .where(F.col("v").between(F.col("lo"), F.col("hi")))
            .withColumn("rn", F.row_number().over(order))
            .where(F.col("rn") == F.col("k"))
            .select("g", "v")
            .toPandas()
        )
        out.update(zip(picked["g"].tolist(), picked["v"].tolist(), strict=True))
    missing = set(wanted["g"].tolist()) - set(out)
    if missing:
        raise RuntimeError(f"quantile search found no value for {len(missing)} group(s)")
    return out


def quality_pools(codes: DataFrame, s: int, p: float) -> pd.DataFrame:
    """Per level-``s`` child: the exact ``(1-p)`` quality quantile and the pool above it.

    Returns one row per child with ``child, quality_docs, no_quality_docs, threshold,
    pool_docs, pool_tokens, pool_max_tokens``. The pool is the documents whose quality is
    ``>= threshold``, the ``ceil((1-p)·n)``-th smallest of the child's ``n`` finite
    qualities (inverted-CDF quantile); documents without a finite quality are never in a
    pool and are counted in ``no_quality_docs``. Executors do the passes; the driver gets
    one row per child.
    """
    child = F.col(f"bucket{s}").alias("g")
    ok = _valid_quality()
    summary = (
        codes.groupBy(child)
        .agg(
            F.count(F.when(ok, True)).alias("quality_docs"),
            F.count(F.when(~ok | F.col("quality").isNull(), True)).alias("no_quality_docs"),
            F.min(F.when(ok, F.col("quality"))).alias("lo"),
            F.max(F.when(ok, F.col("quality"))).alias("hi"),
        )
        .toPandas()
    )
    summary["g"] = summary["g"].astype(np.int64)
    rated = summary[summary["quality_docs"] > 0].copy()
    rated["k"] = [quality_rank(p, int(n)) for n in rated["quality_docs"]]
    values = codes.where(ok).select(child, F.col("quality").cast("double").alias("v"))
    thresholds = exact_kth_smallest(values, rated) if not rated.empty else {}
    summary["threshold"] = summary["g"].map(thresholds).astype(np.float64)
    pools = pd.DataFrame({"g": pd.Series([], dtype=np.int64)})
    if thresholds:
        spark = codes.sparkSession
        thr = spark.createDataFrame(
            pd.DataFrame({"g": list(thresholds), "threshold": list(thresholds.values())}),
            "g long, threshold double",
        )
        pools = (
            codes.select(child, "quality", "n_tokens")
            .join(F.broadcast(thr), "g")
            .where(ok & (F.col("quality") >= F.col("threshold")))
            .groupBy("g")
            .agg(
                F.count(F.lit(1)).alias("pool_docs"),
                F.sum(F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long")).alias("pool_tokens"),
                F.max("n_tokens").cast("double").alias("pool_max_tokens"),
            )
            .toPandas()
        )
        pools["g"] = pools["g"].astype(np.int64)
    out = summary.merge(pools, on="g", how="left").rename(columns={"g": "child"})
    for col in ("pool_docs", "pool_tokens", "quality_docs", "no_quality_docs"):
        out[col] = out[col].fillna(0).astype(np.int64)
    out["pool_max_tokens"] = out["pool_max_tokens"].astype(np.float64)
    return out[
        [
            "child",
            "quality_docs",
            "no_quality_docs",
            "threshold",
            "pool_docs",
            "pool_tokens",
            "pool_max_tokens",
        ]
    ]


# ------------------------------------------------------------------- the planner


def _entropy_bits(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    total = v.sum()
    if total <= 0:
        return 0.0
    p = v[v > 0] / total
    return float(-(p * np.log2(p)).sum())


def pool_contraction(children: pd.DataFrame, s: int) -> dict[str, Any]:
    """Mean candidate pool at level ``s`` vs level ``s-1`` (docs per non-empty bucket, and
    the doc-weighted mean ``Σ n²/N``: the pool a random document sits in)."""
    fine = children["docs"].to_numpy(dtype=np.float64)
    coarse = children.groupby("mid")["docs"].sum().to_numpy(dtype=np.float64)
    n = fine.sum()
    out: dict[str, Any] = {
        "level": s,
        "coarser_level": s - 1,
        "mean_pool_docs": float(fine.mean()),
        "coarser_mean_pool_docs": float(coarse.mean()),
        "doc_weighted_pool_docs": float((fine**2).sum() / n) if n else 0.0,
        "coarser_doc_weighted_pool_docs": float((coarse**2).sum() / n) if n else 0.0,
    }
    out["contraction"] = out["coarser_mean_pool_docs"] / max(out["mean_pool_docs"], 1e-300)
    out["doc_weighted_contraction"] = out["coarser_doc_weighted_pool_docs"] / max(
        out["doc_weighted_pool_docs"], 1e-300
    )
    if "pool_docs" in children and (children["pool_docs"] != children["docs"]).any():
        pools = children["pool_docs"].to_numpy(dtype=np.float64)
        out["mean_candidate_pool_docs"] = (
            float(pools[pools > 0].mean()) if (pools > 0).any() else 0.0
        )
    return out


def compute_plan(
    spark: SparkSession,
    settings: SampleConfig,
    *,
    table: str | None = None,
    stats: str | None = None,
    version: str | None = None,
    levels: tuple[int, ...] | None = None,
    allow_shortfall: bool = False,
) -> SamplePlan:
    """Plan a two-stage sample from statistics (driver; Spark only for aggregations).

    With ``stats`` the bucket sizes come from the STATS table (no scan of the codes for
    ``random``/``coverage``); otherwise from one aggregation over ``table``.
    ``quality-top:p`` always needs ``table`` for its exact per-child quantiles.

    Raises:
        InvalidConfigError: missing budget/table, bad levels or rule.
        BudgetError: bad weights, or a budget above ``E ×`` all tokens without
            ``allow_shortfall``.
        VersionMismatchError: STATS and codes of different codebook versions.
    """
    if settings.budget_tokens is None:
        raise InvalidConfigError("missing --budget-tokens (give the flag or sample.budget_tokens)")
    rule, p = parse_stage2_rule(settings.stage2)
    if stats is None and table is None:
        raise InvalidConfigError("planning needs --stats STATS or --table CODES")
    if rule == "quality-top" and table is None:
        raise InvalidConfigError("quality-top needs the codes table (--table) for its quantiles")
    store = get_store(spark)
    codes = None
    if stats is not None:
        n_levels = _stats_levels(store, stats)
        w, s = check_levels(settings.weights_level, settings.stage2_level, n_levels)
        by_level, chosen = read_stats(store, stats, version, s)
        if not by_level[s].shape[0]:
            raise InvalidInputError(f"{stats} has no level-{s} rows for version {chosen}")
        sizes = infer_sizes(by_level, levels)
        children = children_from_stats(by_level, s, sizes)
        if table is not None and rule == "quality-top":
            codes, _ = select_version(store, table, chosen)
    else:
        assert table is not None
        codes, chosen = select_version(store, table, version)
        n_levels = sum(1 for k in range(1, 10) if f"c{k}" in codes.columns)
        w, s = check_levels(settings.weights_level, settings.stage2_level, n_levels)
        children = children_from_codes(codes, s)
        sizes = infer_sizes(_by_level(children, s), levels)
    children["mid"] = children[f"bucket{s - 1}"]
    children = children.rename(columns={f"bucket{w}": "parent", f"bucket{s}": "child"})
    children = children.sort_values("child", kind="stable").reset_index(drop=True)
    if rule == "quality-top":
        assert codes is not None and p is not None
        pools = quality_pools(codes, s, p)
        children = children.merge(pools, on="child", how="left")
        if children["pool_docs"].isna().any():
            raise InvalidInputError(
                "STATS and the codes table disagree on the buckets; re-run hermes stats"
            )
    else:
        children["quality_docs"] = np.nan
        children["no_quality_docs"] = 0
        children["threshold"] = np.nan
        children["pool_docs"] = children["docs"]
        children["pool_tokens"] = children["tokens"]
        children["pool_max_tokens"] = children["max_tokens"]
    supply = children.groupby("parent")["tokens"].sum()
    parents = pd.DataFrame({"bucket": supply.index.astype(np.int64), "tokens": supply.to_numpy()})
    weights, winfo = resolve_stage1_weights(
        settings.weights, parents, w, sizes, settings.max_epochs
    )
    budget = float(settings.budget_tokens)
    capacity = float(settings.max_epochs) * float(supply.sum())
    if budget > capacity and not allow_shortfall:
        raise BudgetError(
            f"a budget of {budget:,.0f} tokens is impossible: the corpus holds "
            f"{float(supply.sum()):,.0f} tokens and --max-epochs {settings.max_epochs:g} allows "
            f"at most {capacity:,.0f}. Lower --budget-tokens, raise --max-epochs, or pass "
            "--allow-shortfall to sample what there is and report the rest as unmet"
        )
    stage1, shortfall = stage1_targets(
        weights, supply.astype(np.float64), budget, settings.max_epochs
    )
    kids = stage2_allocation(stage1, children, settings.stage2, settings.max_epochs)
    extra = [c for c in children.columns if c not in kids.columns]
    kids = kids.merge(children[["child", *extra]], on="child", how="left")
    kids["pool_docs"] = kids["pool_docs"].astype(np.int64)
    kids["docs"] = kids["docs"].astype(np.int64)
    stage1 = stage1.rename_axis("bucket").reset_index()
    stage1["docs"] = stage1["bucket"].map(children.groupby("parent")["docs"].sum()).astype(np.int64)
    stage1["children"] = stage1["bucket"].map(children.groupby("parent").size()).astype(np.int64)
    stage1["allocated"] = stage1["bucket"].map(kids.groupby("parent")["alloc"].sum()).fillna(0.0)
    stage1["stage2_unmet"] = stage1["target"] - stage1["allocated"]
    resolved = {
        "budget_tokens": budget,
        "weights": str(settings.weights),
        "stage2": str(settings.stage2),
        "weights_level": w,
        "stage2_level": s,
        "max_epochs": float(settings.max_epochs),
        "seed": int(settings.seed),
        "allow_shortfall": bool(allow_shortfall),
    }
    pooled = kids["pool_tokens"] > 0
    info = {
        "source": {"table": table, "stats": stats},
        "weights": winfo,
        "stage1_shortfall_tokens": float(shortfall),
        "stage2_unmet_tokens": float(stage1["stage2_unmet"].clip(lower=0).sum()),
        "allocated_tokens": float(kids["alloc"].sum()),
        "expected_repeats_token_weighted": float(
            (kids["alloc"] * kids["expected_repeats"]).sum() / max(kids["alloc"].sum(), 1e-300)
        ),
        "max_expected_repeats": float(
            kids.loc[pooled, "expected_repeats"].max() if pooled.any() else 0.0
        ),
        "docs_without_quality": int(kids["no_quality_docs"].sum()) if rule == "quality-top" else 0,
        "pool_contraction": pool_contraction(kids, s),
        "corpus_entropy_bits": {
            "stage1": _entropy_bits(stage1["supply"].to_numpy()),
            "stage2": _entropy_bits(kids["tokens"].to_numpy()),
        },
        "target_entropy_bits": {
            "stage1": _entropy_bits(stage1["target"].to_numpy()),
            "stage2": _entropy_bits(kids["alloc"].to_numpy()),
        },
    }
    log.info(
        "plan: %d level-%d buckets, %d level-%d children, %.6g of %.6g tokens allocated",
        len(stage1),
        w,
        len(kids),
        s,
        info["allocated_tokens"],
        budget,
    )
    return SamplePlan(chosen, tuple(int(k) for k in sizes), resolved, stage1, kids, info)


# ------------------------------------------------------------------ re-scoring


@dataclass(frozen=True)
class RescoreResult:
    """What :func:`rescore_quality` did."""

    table: str
    codebook_version: str
    rows: int
    rescored: int
    not_in_corpus: int


def corpus_texts(
    spark: SparkSession, corpus: CorpusConfig, columns: list[str] | None = None
) -> tuple[DataFrame, list[str]]:
    """``doc_id``, corpus ``columns`` (default: all but the embedding) and the ordering
    columns that :func:`first_per_id` needs; also returns the column names kept.

    ``doc_id`` is :func:`hermes_spark.corpus.doc_id_column`, exactly as annotate computes
    it. Lazy: the corpus is read by executors when the result is used.
    """
    files = list_input_files(corpus)
    raw = read_corpus(spark, corpus, files.paths)
    check_columns(raw.schema, corpus, embedding_dim=None)
    keep = (
        columns
        if columns is not None
        else [c for c in raw.columns if c not in (CORRUPT_COL, corpus.embedding_col, "doc_id")]
    )
    with_id = raw.withColumn("doc_id", doc_id_column(raw.schema, corpus))
    ordered = with_id.select(
        "doc_id",
        *[F.col(c) for c in keep],
        reject_reason(with_id.schema, corpus, None).isNotNull().alias("_invalid"),
        F.struct(
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("row"),
        ).alias(ORDER_COL),
    ).where(F.col("doc_id").isNotNull())
    return ordered, keep


def first_per_id(df: DataFrame) -> DataFrame:
    """Keep one row per ``doc_id`` of a :func:`corpus_texts` frame, the one annotate kept
    (``--on-duplicate keep-first``): the first valid row in input order (file, position).
    A window per id: executors, no global sort."""
    order = Window.partitionBy("doc_id").orderBy("_invalid", ORDER_COL)
    return (
        df.withColumn("_rn", F.row_number().over(order))
        .where(F.col("_rn") == 1)
        .drop("_rn", "_invalid", ORDER_COL)
    )


def rescore_quality(
    spark: SparkSession, table: str, corpus: CorpusConfig, version: str | None = None
) -> RescoreResult:
    """Recompute ``quality`` of one codebook version with the built-in scorer, no embedding.

    Joins the corpus text on ``doc_id`` (computed as annotate does), scores it with
    :func:`udfs.quality.quality_scores` in a pandas UDF (executors) and replaces that
    version's partition in one Delta commit: its rows get the new quality (rows whose doc
    is not in the corpus keep theirs), every other column is unchanged and the files of
    every other version are not touched.

    Raises:
        InvalidInputError: no document of the table is found in the corpus.
    """
    from pyspark.sql.functions import pandas_udf

    store = get_store(spark)
    codes, chosen = select_version(store, table, version)
    plain = dataclasses.replace(
        corpus, quality_col=None, tokens_col=None, embedding_col=None, keep_cols=()
    )
    texts, _ = corpus_texts(spark, plain, [plain.text_col])
    texts = texts.withColumnRenamed(plain.text_col, "_text")
    matched = codes.select("doc_id").join(texts.select("doc_id").distinct(), "doc_id")
    total = codes.count()
    found = matched.count()
    if found == 0 and total:
        raise InvalidInputError(
            f"none of the {total} documents of version {chosen} in {table} is in corpus "
            f"{corpus.input}: check --input, --id-col and --text-col"
        )

    @pandas_udf("double")
    def score(text: pd.Series) -> pd.Series:
        from udfs.quality import quality_scores

        return quality_scores(text)

    best = first_per_id(texts)
    joined = codes.join(best, "doc_id", "left")
    raw = score(F.col("_text"))
    fresh = F.when(F.isnan(raw), F.lit(None).cast("double")).otherwise(raw)
    new_quality = F.when(F.col("_text").isNotNull(), fresh).otherwise(F.col("quality"))
    columns = store.read(table).columns
    rescored = joined.select(
        *[new_quality.alias(c) if c == "quality" else F.col(c) for c in columns]
    )
    store.replace_partition(rescored, table, VERSION_COL, chosen)
    log.info("rescored %d of %d rows of version %s in %s", found, total, chosen, table)
    return RescoreResult(table, chosen, total, found, total - found)
