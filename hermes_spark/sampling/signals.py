"""Several quality signals merged into one Stage-2 quality (``--quality-cols``).

``edu:0.6,dclm:0.4,edu>=0.3``: every weighted signal is turned into its percentile rank
within the document's level-``s`` child (the fraction of the child's documents with a
lower value: signals on different scales combine fairly), and the document's quality is
the weighted mean of its ranks, in ``[0, 1)``. Threshold items (``edu>=0.3``, also ``>``,
``<=``, ``<``) filter before ranking: a document failing one, or without a finite value of
a weighted signal, gets no quality (it is outside every quality pool). One column without
thresholds keeps the column itself as the quality (today's behaviour).

The signals are columns of the codes table (``annotate --keep-cols edu,dclm`` copies them
there), so ranking never touches the corpus text. Ranks are exact and deterministic, and
come from counts of distinct values: tied documents collapse to one row before any window,
and a histogram of the distinct values per child (equal-width bins, dense bins split
again) bounds what one task ranks, never a whole child or a whole tie in one task.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidConfigError, InvalidInputError

#: Equal-width bins per child and signal of the rank histogram (and per dense bin).
RANK_BINS = 4096
#: A bin with more distinct values than this is split again (into bins of about this many).
RANK_DENSE_LIMIT = 50_000
#: A value held by more rows than this (of one group) joins its ranks by broadcast.
RANK_TIE_ROWS = 100_000
_ITEM = re.compile(
    r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_.]*)\s*"
    r"(?:(?P<op>>=|<=|>|<)\s*(?P<thr>[-+0-9.eE]+|inf|-inf))?\s*"
    r"(?::\s*(?P<w>[-+0-9.eE]+))?\s*$"
)
_OPS = {">=": Column.__ge__, ">": Column.__gt__, "<=": Column.__le__, "<": Column.__lt__}


@dataclass(frozen=True)
class QualitySignals:
    """Parsed ``--quality-cols``: weighted signals and threshold filters."""

    weights: tuple[tuple[str, float], ...]
    filters: tuple[tuple[str, str, float], ...] = ()

    @property
    def columns(self) -> list[str]:
        """Every column named (weighted or filtered), once, in order."""
        names = [n for n, _ in self.weights] + [n for n, _, _ in self.filters]
        return list(dict.fromkeys(names))

    @property
    def plain(self) -> bool:
        """One signal and no filter: the column itself is the quality."""
        return len(self.weights) == 1 and not self.filters

    def spec(self) -> str:
        """The canonical written form (round-trips through :func:`parse_quality_cols`)."""
        parts = [f"{n}:{w!r}" for n, w in self.weights]
        parts += [f"{n}{op}{t!r}" for n, op, t in self.filters]
        return ",".join(parts)


def parse_quality_cols(spec: str | Mapping[str, float]) -> QualitySignals:
    """Parse ``"edu:0.6,dclm:0.4,edu>=0.3"`` (or a ``{column: weight}`` mapping).

    A name without ``:w`` and without a threshold has weight 1; ``name>=t`` alone only
    filters; ``name>=t:w`` filters and weights.

    Raises:
        InvalidConfigError: malformed item, non-positive or non-finite weight, no
            weighted signal, or a column weighted twice.
    """
    if isinstance(spec, Mapping):
        items = [f"{k}:{v}" for k, v in spec.items()]
    else:
        items = [x for x in str(spec).split(",") if x.strip()]
    weights: dict[str, float] = {}
    filters: list[tuple[str, str, float]] = []
    for item in items:
        m = _ITEM.match(item)
        if not m:
            raise InvalidConfigError(
                f"item {item.strip()!r} is not NAME[:WEIGHT] or NAME>=T[:WEIGHT]",
                key="sample.quality_cols",
            )
        name = m["name"]
        if m["op"]:
            filters.append((name, m["op"], float(m["thr"])))
        if m["w"] is not None or not m["op"]:
            w = float(m["w"]) if m["w"] is not None else 1.0
            if not (w > 0 and w != float("inf")):
                raise InvalidConfigError(
                    f"weight of {name!r} must be > 0, got {w}", key="sample.quality_cols"
                )
            if name in weights:
                raise InvalidConfigError(f"weights {name!r} twice", key="sample.quality_cols")
            weights[name] = w
    if not weights:
        raise InvalidConfigError(
            "needs at least one weighted column (NAME:W)", key="sample.quality_cols"
        )
    return QualitySignals(tuple(weights.items()), tuple(filters))


def _finite(col: Column) -> Column:
    return col.isNotNull() & ~F.isnan(col) & (F.abs(col) != float("inf"))


def _rank(df: DataFrame, col: str, out: str) -> DataFrame:
    """Add ``out``: the fraction of the group's (``_g``) rows with a lower ``col`` (exact).

    Lazy; executors. Ranks come from counts of distinct values, never from a window over
    rows: ties collapse to one ``(group, value, count)`` row first. The distinct values
    are histogrammed into :data:`RANK_BINS` equal-width bins per group, and a bin with
    more than :data:`RANK_DENSE_LIMIT` distinct values is split again into up to
    :data:`RANK_BINS` bins of its own range. The count below a value is the count below
    its bin, plus below its sub-bin within the bin (running sums over at most
    :data:`RANK_BINS` histogram rows each), plus the count of the lower values of its
    sub-bin (a window over at most about :data:`RANK_DENSE_LIMIT` distinct values).
    """
    values = df.groupBy("_g", F.col(col).alias("_v")).agg(F.count(F.lit(1)).alias("_c"))
    bounds = values.groupBy("_g").agg(
        F.min("_v").alias("_lo"), F.max("_v").alias("_hi"), F.sum("_c").alias("_n")
    )
    binned = values.join(F.broadcast(bounds), "_g").withColumn(
        "_bin", _bin_of(F.col("_v"), F.col("_lo"), F.col("_hi"), F.lit(RANK_BINS))
    )
    bins = binned.groupBy("_g", "_bin").agg(
        F.count(F.lit(1)).alias("_d"),
        F.sum("_c").alias("_cb"),
        F.min("_v").alias("_blo"),
        F.max("_v").alias("_bhi"),
    )
    by_bin = Window.partitionBy("_g").orderBy("_bin").rowsBetween(Window.unboundedPreceding, -1)
    bins = bins.withColumn("_below_bin", F.coalesce(F.sum("_cb").over(by_bin), F.lit(0)))
    parts = F.least(F.ceil(F.col("_d") / RANK_DENSE_LIMIT), F.lit(RANK_BINS))
    cells = binned.join(bins, ["_g", "_bin"]).withColumn(
        "_sub", _bin_of(F.col("_v"), F.col("_blo"), F.col("_bhi"), parts)
    )
    subs = cells.groupBy("_g", "_bin", "_sub").agg(F.sum("_c").alias("_cs"))
    by_sub = (
        Window.partitionBy("_g", "_bin").orderBy("_sub").rowsBetween(Window.unboundedPreceding, -1)
    )
    subs = subs.withColumn("_below_sub", F.coalesce(F.sum("_cs").over(by_sub), F.lit(0)))
    lower = (
        Window.partitionBy("_g", "_bin", "_sub")
        .orderBy("_v")
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    below = (
        F.col("_below_bin") + F.col("_below_sub") + F.coalesce(F.sum("_c").over(lower), F.lit(0))
    )
    ranks = cells.join(subs, ["_g", "_bin", "_sub"]).select(
        "_g", "_v", "_c", (below / F.col("_n")).alias(out)
    )
    return _attach(df, ranks, col, out)


def _attach(df: DataFrame, ranks: DataFrame, col: str, out: str) -> DataFrame:
    """``df`` with each row's ``out`` from ``ranks`` (``_g, _v, _c, out``), joined on the
    group and value. Values held by more than :data:`RANK_TIE_ROWS` rows are few (at most
    rows / RANK_TIE_ROWS) and broadcast; only the others go through a shuffle join on
    ``(group, value)``, so no join task receives more than that many rows of one key
    (the tied rows take a spread-out key, a negative group that matches nothing there)."""
    heavy = F.broadcast(
        ranks.where(F.col("_c") > RANK_TIE_ROWS).select(
            F.col("_g").alias("_hg"), F.col("_v").alias("_hv"), F.col(out).alias("_hr")
        )
    )
    light = ranks.where(F.col("_c") <= RANK_TIE_ROWS).select(
        F.col("_g").alias("_jg"), F.col("_v").alias("_jv"), F.col(out).alias("_lr")
    )
    spread = F.pmod(F.xxhash64(*(["doc_id"] if "doc_id" in df.columns else df.columns)), 1 << 31)
    tied = F.col("_hr").isNotNull()
    tagged = df.join(
        heavy, (F.col("_g") == F.col("_hg")) & (F.col(col) == F.col("_hv")), "left"
    ).select(
        *df.columns,
        "_hr",
        F.when(tied, -1 - spread).otherwise(F.col("_g").cast("long")).alias("_jg"),
        F.when(tied, spread.cast("double")).otherwise(F.col(col)).alias("_jv"),
    )
    joined = tagged.join(light, ["_jg", "_jv"], "left")
    return joined.select(*df.columns, F.coalesce("_hr", "_lr").alias(out))


def _bin_of(v: Column, lo: Column, hi: Column, bins: Column) -> Column:
    """The equal-width bin (``0 .. bins - 1``) of ``v`` in ``[lo, hi]``."""
    width = hi - lo
    scaled = F.floor((v - lo) / width * bins)
    return F.when(width > 0, F.least(scaled, bins - 1)).otherwise(F.lit(0)).cast("int")


def with_merged_quality(
    codes: DataFrame, signals: QualitySignals, level: int, *, force_rank: bool = False
) -> DataFrame:
    """``codes`` with ``quality`` replaced by the merged quality of ``signals`` within each
    level-``level`` child (lazy; executors). ``force_rank``: a percentile even for one
    plain column (``quadmix`` needs ``q`` in ``[0, 1)``).

    Raises:
        InvalidInputError: a named column is not in the codes (copy it with
            ``annotate --keep-cols``).
    """
    missing = [c for c in signals.columns if c not in codes.columns]
    if missing:
        raise InvalidInputError(
            f"names {missing}, not columns of the codes table; annotate with "
            f"{{corpus.keep_cols}} {','.join(missing)} to copy them there",
            key="sample.quality_cols",
        )
    if signals.plain and not force_rank:
        return codes.withColumn("quality", F.col(signals.weights[0][0]).cast("double"))
    ok = F.lit(True)
    for name, _ in signals.weights:
        ok = ok & _finite(F.col(name).cast("double"))
    for name, op, thr in signals.filters:
        col = F.col(name).cast("double")
        ok = ok & _finite(col) & _OPS[op](col, F.lit(thr))
    keyed = codes.withColumn("_g", F.col(f"bucket{level}")).withColumn("_ok", ok)
    rated = keyed.where("_ok")
    for i, (name, _) in enumerate(signals.weights):
        rated = rated.withColumn(f"_s{i}", F.col(name).cast("double"))
        rated = _rank(rated, f"_s{i}", f"_r{i}")
    total = sum(w for _, w in signals.weights)
    merged = sum(
        (F.col(f"_r{i}") * (w / total) for i, (_, w) in enumerate(signals.weights)), F.lit(0.0)
    )

    rated = rated.withColumn("quality", merged.cast("double"))
    unrated = keyed.where(~F.col("_ok")).withColumn("quality", F.lit(None).cast("double"))
    cols = codes.columns
    return rated.select(*cols).unionByName(unrated.select(*cols))


@contextlib.contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """``df`` persisted (memory and disk, on executors) while the block runs its several
    jobs over it, then released: a rated frame is ranked once per plan, not once per job."""
    held = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield held
    finally:
        held.unpersist()
