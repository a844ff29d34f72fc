"""Several quality signals merged into one Stage-2 quality (``--quality-cols``).

``edu:0.6,dclm:0.4,edu>=0.3``: every weighted signal is turned into its percentile rank
within the document's level-``s`` child (the fraction of the child's documents with a
lower value: signals on different scales combine fairly), and the document's quality is
the weighted mean of its ranks, in ``[0, 1)``. Threshold items (``edu>=0.3``, also ``>``,
``<=``, ``<``) filter before ranking: a document failing one, or without a finite value of
a weighted signal, gets no quality (it is outside every quality pool). One column without
thresholds keeps the column itself as the quality (today's behaviour).

The signals are columns of the codes table (``annotate --keep-cols edu,dclm`` copies them
there), so ranking never touches the corpus text. Ranks are exact and deterministic: a
histogram of each signal per child (:data:`RANK_BINS` equal-width bins, executors) gives
the count below every bin, and only the documents of one (child, bin) are ranked together
(a window over that bin alone, never a whole child in one task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidConfigError, InvalidInputError

#: Equal-width bins per child and signal of the rank histogram.
RANK_BINS = 4096
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
                f"--quality-cols item {item.strip()!r} is not NAME[:WEIGHT] or NAME>=T[:WEIGHT]"
            )
        name = m["name"]
        if m["op"]:
            filters.append((name, m["op"], float(m["thr"])))
        if m["w"] is not None or not m["op"]:
            w = float(m["w"]) if m["w"] is not None else 1.0
            if not (w > 0 and w != float("inf")):
                raise InvalidConfigError(f"--quality-cols weight of {name!r} must be > 0, got {w}")
            if name in weights:
                raise InvalidConfigError(f"--quality-cols weights {name!r} twice")
            weights[name] = w
    if not weights:
        raise InvalidConfigError("--quality-cols needs at least one weighted column (NAME:W)")
    return QualitySignals(tuple(weights.items()), tuple(filters))


def _finite(col: Column) -> Column:
    return col.isNotNull() & ~F.isnan(col) & (F.abs(col) != float("inf"))


def _rank(df: DataFrame, col: str, out: str) -> DataFrame:
    """Add ``out``: the fraction of the group's (``_g``) rows with a lower ``col`` (exact)."""
    v = F.col(col)
    bounds = df.groupBy("_g").agg(
        F.min(v).alias("_lo"), F.max(v).alias("_hi"), F.count(F.lit(1)).alias("_n")
    )
    width = F.col("_hi") - F.col("_lo")
    scaled = F.floor((v - F.col("_lo")) / width * RANK_BINS)
    bin_ = F.when(width > 0, F.least(scaled, F.lit(RANK_BINS - 1))).otherwise(F.lit(0))
    binned = df.join(F.broadcast(bounds), "_g").withColumn("_bin", bin_.cast("int"))
    hist = binned.groupBy("_g", "_bin").agg(F.count(F.lit(1)).alias("_c"))
    running = Window.partitionBy("_g").orderBy("_bin").rowsBetween(Window.unboundedPreceding, -1)
    hist = hist.withColumn("_below", F.coalesce(F.sum("_c").over(running), F.lit(0)))
    within = F.rank().over(Window.partitionBy("_g", "_bin").orderBy(v)) - 1
    ranked = binned.join(hist.select("_g", "_bin", "_below"), ["_g", "_bin"])
    return ranked.withColumn(out, (F.col("_below") + within) / F.col("_n")).drop(
        "_lo", "_hi", "_n", "_bin", "_below"
    )


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
            f"--quality-cols names {missing}, not columns of the codes table; annotate with "
            f"--keep-cols {','.join(missing)} to copy them there"
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
    merged = sum(F.col(f"_r{i}") * (w / total) for i, (_, w) in enumerate(signals.weights))
    rated = rated.withColumn("quality", merged.cast("double"))
    unrated = keyed.where(~F.col("_ok")).withColumn("quality", F.lit(None).cast("double"))
    cols = codes.columns
    return rated.select(*cols).unionByName(unrated.select(*cols))
