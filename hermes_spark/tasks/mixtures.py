"""``hermes mixtures``: candidate mixtures around a stats table's token prior, each a
file that ``plan --weights`` or ``sample --stage2 quadmix:FILE`` reads (driver; reads the
stats rows of one level, writes small JSON/CSV files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.io import Storage, write_text
from hermes_spark.object_stores import storage_of
from hermes_spark.sampling.exports import regmix_csv
from hermes_spark.sampling.levels import infer_sizes
from hermes_spark.sampling.quadmix_math import candidate_params
from hermes_spark.sampling.weights import dirichlet_mixtures, format_bucket_key
from hermes_spark.tasks.plan import read_stats


def write_candidate_mixtures(
    spark: SparkSession,
    stats: str,
    out_dir: str,
    n: int,
    *,
    level: int = 1,
    temperature: float = 1.0,
    concentration: float = 1.0,
    seed: int = 0,
    version: str | None = None,
    levels: tuple[int, ...] | None = None,
    store: DeltaStore | None = None,
) -> list[str]:
    """Write ``n`` Dirichlet mixtures around the token prior as ``mixture-0000.json`` ...
    (each a ``--weights`` file) plus all of them as ``regmix_mixtures.csv`` (driver; reads
    the level-``level`` rows of STATS only). ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    by_level, _chosen = read_stats(store, stats, version, level)
    sizes = infer_sizes(by_level, levels)
    mixtures = dirichlet_mixtures(
        by_level[level][["bucket", "tokens"]],
        level,
        sizes,
        n,
        temperature=temperature,
        concentration=concentration,
        seed=seed,
    )
    base = out_dir.rstrip("/")
    storage = storage_of(spark)
    written = _write_numbered(base, "mixture", mixtures, storage)
    write_text(f"{base}/regmix_mixtures.csv", regmix_csv(mixtures), storage=storage)
    written.append(f"{base}/regmix_mixtures.csv")
    return written


def write_candidate_quadmix(
    spark: SparkSession,
    stats: str,
    out_dir: str,
    n: int,
    *,
    level: int = 1,
    seed: int = 0,
    version: str | None = None,
    store: DeltaStore | None = None,
) -> list[str]:
    """Write ``n`` random QuaDMix parameter sets (threshold and steepness per non-empty
    level-``level`` bucket of STATS) as ``quadmix-0000.json`` ..., each usable as
    ``--stage2 quadmix:FILE`` (driver; reads the level rows of STATS only). ``store``
    defaults to the session's store."""
    store = store or get_store(spark)
    by_level, _chosen = read_stats(store, stats, version, level)
    sizes = infer_sizes(by_level, None)
    keys = [format_bucket_key(int(b), level, sizes) for b in by_level[level]["bucket"]]
    params = candidate_params(keys, n, seed=seed)
    return _write_numbered(out_dir.rstrip("/"), "quadmix", params, storage_of(spark))


def _write_numbered(base: str, prefix: str, docs: Sequence[Any], storage: Storage) -> list[str]:
    """``<base>/<prefix>-0000.json`` ... one JSON file per document (driver)."""
    written = []
    for i, doc in enumerate(docs):
        path = f"{base}/{prefix}-{i:04d}.json"
        write_text(path, json.dumps(doc, indent=1), storage=storage)
        written.append(path)
    return written
