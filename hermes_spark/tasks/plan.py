"""``hermes plan``: the table side of :mod:`hermes_spark.sampling.planner`.

Driver orchestration: reads the STATS or codes table (and, for ``target-top:p``, the
embeddings table or corpus named by the settings), then hands their frames to
:func:`~hermes_spark.sampling.planner.plan_mixture`. The store is built once per call
(``store``, else the session's bound settings) and passed to the helpers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, SampleConfig
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidConfigError, InvalidInputError, VersionMismatchError
from hermes_spark.object_stores import storage_of
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.planner import check_budget_given, plan_mixture
from hermes_spark.sampling.rules.registry import parse_rule
from hermes_spark.sampling.similarity import TargetCentroids
from hermes_spark.sampling.sources import stats_rows
from hermes_spark.sampling.target import is_target_spec
from hermes_spark.schema import (
    embeddings_table_name,
    latest_version,
    recorded_levels,
    select_version,
)
from hermes_spark.tasks.target import read_target_frame, target_weights_from_path

log = logging.getLogger(__name__)


def read_stats(
    store: DeltaStore, stats: str, version: str | None, max_level: int
) -> tuple[dict[int, pd.DataFrame], str]:
    """STATS rows of the table ``stats`` (see :func:`stats_rows`; driver, small)."""
    if not store.exists(stats):
        raise InvalidInputError(f"statistics table {stats} does not exist (run hermes stats)")
    return stats_rows(store.read(stats), version, max_level, name=stats)


def carried_plan_weights(
    store: DeltaStore,
    table: str | None,
    path: str,
    from_version: str,
    version: str | None,
    level: int,
) -> tuple[dict[str, float], str, dict[str, Any]]:
    """For ``compute_plan``: the carried V2 weights by written key, the chosen version
    (``version``, else the table's latest) and the record (driver orchestration)."""
    from hermes_spark.sampling.carried_weights import carry_weights_file

    if table is None:
        raise InvalidConfigError(
            "carries the weights through the documents coded under both versions: pass "
            "{table} (the codes table)",
            key="sample.weights_version",
        )
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist (run hermes annotate)")
    codes = store.read(table)
    chosen = version or latest_version(codes, table)
    carried, record = carry_weights_file(codes, path, from_version, chosen, level)
    return {str(k): float(v) for k, v in carried.weights.items()}, chosen, record


def compute_plan(
    spark: SparkSession,
    settings: SampleConfig,
    *,
    table: str | None = None,
    stats: str | None = None,
    version: str | None = None,
    levels: tuple[int, ...] | None = None,
    allow_shortfall: bool = False,
    codebook: str | None = None,
    corpus: CorpusConfig | None = None,
    store: DeltaStore | None = None,
) -> SamplePlan:
    """:func:`plan_mixture` over tables given by path or name (driver; the CLI's layer).

    See :func:`compute_plan_and_codes`, which also returns the codes frame it planned on.
    """
    return compute_plan_and_codes(
        spark, settings, table=table, stats=stats, version=version, levels=levels,
        allow_shortfall=allow_shortfall, codebook=codebook, corpus=corpus, store=store,
    )[0]  # fmt: skip


def compute_plan_and_codes(
    spark: SparkSession,
    settings: SampleConfig,
    *,
    table: str | None = None,
    stats: str | None = None,
    version: str | None = None,
    levels: tuple[int, ...] | None = None,
    allow_shortfall: bool = False,
    codebook: str | None = None,
    corpus: CorpusConfig | None = None,
    store: DeltaStore | None = None,
) -> tuple[SamplePlan, DataFrame | None]:
    """:func:`compute_plan`, and the codes frame planned on (None when the plan came from
    STATS alone), so ``hermes sample`` selects from the same frame: under
    ``target-top:p`` it carries the persisted ``target_similarity`` scores.

    ``--weights target:PATH`` codes the target corpus with the artifact ``codebook``
    first (:mod:`hermes_spark.sampling.target`). ``--stage2 target-top:p`` embeds the
    target examples (``settings.target``, else the ``target:PATH`` of the weights), fits
    their centroids and scores the codes (:func:`target_scored_codes`): document vectors
    from the embeddings table, else from ``corpus`` (its vectors, or its text re-embedded).

    With ``stats`` the bucket sizes come from the STATS table (no scan of the codes for
    ``random``/``coverage``); otherwise from one aggregation over ``table``.
    ``quality-top:p`` always needs ``table`` for its exact per-child quantiles.

    Raises:
        InvalidConfigError, BudgetError, VersionMismatchError: see :func:`plan_mixture`.
    """
    check_budget_given(settings)
    storage = storage_of(spark)
    rule = parse_rule(settings.stage2, storage=storage)
    if stats is None and table is None:
        raise InvalidConfigError("planning needs {stats} (the statistics) or {table} (the codes)")
    if rule.needs_codes and table is None:
        raise InvalidConfigError(f"{rule.name} needs the codes table ({{table}}) for its quantiles")
    store = store or get_store(spark)
    stats_df = codes_df = None
    chosen = version
    if stats is not None:
        if not store.exists(stats):
            raise InvalidInputError(f"statistics table {stats} does not exist (run hermes stats)")
        stats_df = store.read(stats)
        if rule.needs_codes:
            _, chosen = read_stats(store, stats, version, 1)
    if table is not None and (stats is None or rule.needs_codes):
        codes_df, chosen = select_version(store, table, chosen)
    target_top: dict[str, Any] | None = None
    if rule.needs_target:
        assert codes_df is not None and table is not None and chosen is not None
        codes_df, target_top = target_scored_codes(
            spark, settings, codes_df, table=table, version=chosen, codebook=codebook,
            corpus=corpus, store=store,
        )  # fmt: skip
    weights: str | dict[str, float] = settings.weights
    carried: dict[str, Any] | None = None
    if settings.weights_version:
        weights, chosen, carried = carried_plan_weights(
            store, table, settings.weights, settings.weights_version, chosen,
            settings.weights_level,
        )  # fmt: skip
    elif is_target_spec(settings.weights):
        weights, levels = _target_mapping(
            spark, settings, stats=stats, table=table, version=chosen, codebook=codebook,
            levels=levels, store=store,
        )  # fmt: skip
    if levels is None and table is not None and chosen is not None:
        # the table's c1 metadata holds the first version's sizes; each annotate commit
        # records its own version's
        found = recorded_levels(store, table, chosen)
        levels = None if found is None else tuple(found)
    plan = plan_mixture(
        stats_df,
        codes_df=codes_df,
        budget_tokens=settings.budget_tokens,
        budget_share=settings.budget_share,
        weights=weights,
        stage2=settings.stage2,
        weights_level=settings.weights_level,
        stage2_level=settings.stage2_level,
        max_epochs=settings.max_epochs,
        seed=settings.seed,
        levels=levels,
        codebook_version=chosen,
        allow_shortfall=allow_shortfall,
        quality_cols=settings.quality_cols,
        target=None if target_top is None else TargetCentroids.from_dict(target_top),
        stats_name=stats or "the statistics",
        storage=storage,
    )
    info = {"source": {"table": table, "stats": stats}, **plan.info}
    resolved = dict(plan.settings)
    if target_top is not None:
        resolved["target_top"] = target_top
        info["target_top"] = {
            **info.get("target_top", {}),
            "target": target_top["path"],
            "vectors": target_top["vectors"],
        }
    if carried is not None:
        resolved["weights"] = settings.weights
        resolved["weights_version"] = settings.weights_version
        info["weights"] = {**info["weights"], "source": settings.weights, "carried": carried}
    elif isinstance(weights, dict):
        resolved["weights"] = settings.weights
        info["weights"] = {**info["weights"], "source": settings.weights, "rule": "target"}
        info["weights"]["target_weights"] = weights
        info["weights"]["target_smoothing"] = settings.target_smoothing
        info["weights"]["target_prior_mix"] = settings.target_prior_mix
    return dataclasses.replace(plan, info=info, settings=resolved), codes_df


def _vector_spec(
    store: DeltaStore, settings: SampleConfig, table: str, corpus: CorpusConfig | None
) -> dict[str, Any]:
    """Where ``target-top`` reads document vectors (JSON-able, recorded in the plan)."""
    emb = settings.embeddings_table
    if emb:
        if not store.exists(emb):
            raise InvalidInputError(
                f"embeddings table {emb} does not exist (annotating with {{store_embeddings}} "
                "writes <CODES>_embeddings)",
                key="sample.embeddings_table",
            )
        return {"kind": "embeddings_table", "table": emb}
    default = embeddings_table_name(table)
    if store.exists(default):
        return {"kind": "embeddings_table", "table": default}
    if corpus is not None and (corpus.input or corpus.table):
        return {
            "kind": "corpus",
            "corpus": {
                "input": corpus.input, "table": corpus.table, "format": corpus.format,
                "id_col": corpus.id_col, "text_col": corpus.text_col,
                "embedding_col": corpus.embedding_col,
            },
            "max_embed_docs": int(settings.target_max_embed_docs),
        }  # fmt: skip
    raise InvalidInputError(
        f"target-top:p needs document vectors, and there is no embeddings table {default} "
        "and no corpus to re-embed: annotate with {store_embeddings} (or name the vectors "
        "with {sample.embeddings_table}), or pass the corpus ({corpus.input}, with its "
        "{corpus.text_col} or {corpus.embedding_col}) so the candidate documents are "
        "re-embedded with the artifact's model (at most {sample.target_max_embed_docs}, "
        f"{settings.target_max_embed_docs:,})"
    )


def target_scored_codes(
    spark: SparkSession,
    settings: SampleConfig,
    codes_df: DataFrame,
    *,
    table: str,
    version: str,
    codebook: str | None,
    corpus: CorpusConfig | None,
    store: DeltaStore | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """The codes with ``target_similarity`` and the plan's ``target_top`` settings
    (centroids, artifact, target path, vector source), for ``--stage2 target-top:p``.

    Driver: the target examples' vectors (a few hundred) and their k-means; the scores
    are computed on executors and persisted (see :mod:`hermes_spark.sampling.similarity`).

    Raises:
        InvalidConfigError: no ``--codebook`` or no target corpus.
        InvalidInputError: no document vectors (see :func:`_vector_spec`).
        VersionMismatchError: the artifact is not the codes' version.
    """
    from hermes_spark.artifacts import load_codebook
    from hermes_spark.sampling.similarity import target_centroids
    from hermes_spark.tasks.sample import scored_codes_from_settings

    if not codebook:
        raise InvalidConfigError(
            "target-top:p scores documents in the artifact's LST space: pass {codebook}"
        )
    path = settings.target
    if not path and is_target_spec(settings.weights):
        path = settings.weights.strip()[len("target:") :]
    if not path:
        raise InvalidConfigError(
            "target-top:p keeps the documents most similar to target examples: pass "
            "{sample.target} PATH (a corpus of a few hundred target texts)"
        )
    cb = load_codebook(codebook, storage=storage_of(spark))
    if cb.version != version:
        raise VersionMismatchError(
            f"{{codebook}} is version {cb.version}, the codes are {version}: score with the "
            "artifact that produced the codes"
        )
    store = store or get_store(spark)
    vectors = _vector_spec(store, settings, table, corpus)
    frame = read_target_frame(spark, path, settings.target_embedding_col)
    target = target_centroids(
        frame, cb, k=settings.target_centroids, embedding_col=settings.target_embedding_col,
        source=path,
    )  # fmt: skip
    doc = {**target.to_dict(), "path": path, "codebook": codebook, "vectors": vectors}
    log.info(
        "target-top: %d target examples, %d centroids, vectors from %s",
        target.target_docs, target.k, vectors.get("table") or "the corpus",
    )  # fmt: skip
    return scored_codes_from_settings(spark, codes_df, doc, codebook=cb, store=store), doc


def _target_mapping(
    spark: SparkSession,
    settings: SampleConfig,
    *,
    stats: str | None,
    table: str | None,
    version: str | None,
    codebook: str | None,
    levels: tuple[int, ...] | None,
    store: DeltaStore,
) -> tuple[dict[str, float], tuple[int, ...]]:
    """The ``target:PATH`` weights over the corpus's level-``w`` buckets, and the sizes."""
    if not codebook:
        raise InvalidConfigError(
            "{sample.weights} target:PATH codes the target texts with the artifact: pass {codebook}"
        )
    from hermes_spark.artifacts import load_codebook

    sizes = levels or tuple(
        int(k) for k in load_codebook(codebook, storage=storage_of(spark)).levels
    )
    w = settings.weights_level
    if stats is not None:
        by_level, chosen = read_stats(store, stats, version, w)
        parents = by_level[w][["bucket", "tokens"]]
    else:
        assert table is not None
        codes, chosen = select_version(store, table, version)
        parents = (
            codes.groupBy(F.col(f"bucket{w}").alias("bucket"))
            .agg(F.sum("n_tokens").alias("tokens"))
            .toPandas()
        )
    mapping = target_weights_from_path(
        spark,
        settings.weights,
        parents,
        codebook=codebook,
        level=w,
        levels=sizes,
        smoothing=settings.target_smoothing,
        prior_mix=settings.target_prior_mix,
        embedding_col=settings.target_embedding_col,
        version=chosen,
    )
    return mapping, sizes
