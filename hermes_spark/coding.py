"""Give prepared corpus rows their codes: the one fused executor pass, wired once.

Driver side: builds the lazy ``mapInPandas`` stage that both :meth:`HermesModel.transform`
and the ``hermes annotate`` table writer use, so the annotation logic exists once. The
function itself (``udfs.annotate_udf``) runs on executors with the codebook arrays and
model settings copied into its closure.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from hermes_spark.corpus import ORDER_COL
from hermes_spark.embedding.settings import ModelSettings, settings_for_annotate
from hermes_spark.embedding.settings import RunOptions as RunOptions  # public here too
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.schema import REASON_COL, SOURCE_COL, SOURCE_ROW_COL, codes_columns
from udfs.annotate_udf import annotate_schema, embed_schema, make_annotate_fn, make_embed_fn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """Which optional inputs the prepared frame carries."""

    embedding: bool = False
    tokens: bool = False
    quality: bool = False


def model_settings(codebook: Codebook, run: RunOptions) -> ModelSettings:
    """Executor model settings: the artifact's model, backend and precision, this run's
    batch size, device, token budget and budget tokenizer."""
    batch = int(run.batch_size or codebook.model.get("batch_size", 64))
    return settings_for_annotate(codebook.model, dataclasses.replace(run, batch_size=batch))


def embed_rows(texts: DataFrame, settings: ModelSettings) -> DataFrame:
    """Lazy: ``doc_id, text`` rows → ``doc_id, embedding`` with the executor embedding
    function (same tokenizer, backend and precision as the annotate pass). No job runs."""
    return texts.mapInPandas(make_embed_fn(settings), embed_schema())


def annotate_fn(
    codebook: Codebook,
    run: RunOptions,
    inputs: Inputs,
    *,
    passthrough: Sequence[str] = (),
    emit_embedding: bool = False,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The fused executor function (embed → LST → assign) for ``codebook`` and this run,
    as :func:`code_rows` maps it (also run in-process by ``transform_pandas``)."""
    return make_annotate_fn(
        codebook,
        model_settings(codebook, run),
        has_embedding=inputs.embedding,
        has_tokens=inputs.tokens,
        has_quality=inputs.quality,
        passthrough=tuple(passthrough),
        emit_embedding=emit_embedding,
    )


def wants_stage_gpu(
    executor_gpus: str | None, task_gpus: str | None, master: str, stage_amount: float
) -> bool:
    """Whether the embedding stage needs its own GPU ``ResourceProfile`` (driver side).

    Yes when executors have GPUs and the app-wide ``spark.task.resource.gpu.amount`` is
    unset or smaller than the embedding stage's share (``model.task_gpu_amount``): a
    small app-wide fraction (Databricks sets one on GPU clusters) only lets the other
    stages run on every core, it does not give the embedding task its GPU. No on local
    masters, without executor GPUs, or when the app-wide amount already covers the share
    (then every stage holds that much GPU).
    """
    if not executor_gpus or master.startswith("local"):
        return False
    if not task_gpus:
        return True
    return float(task_gpus) < float(stage_amount)


def stage_profile(prepared: DataFrame, run: RunOptions, inputs: Inputs) -> Any:
    """The stage-level ``ResourceProfile`` of the embedding stage, or ``None``.

    A GPU share (``model.task_gpu_amount``) when :func:`wants_stage_gpu` says so, and
    ``model.task_cpus`` cores per task when set (the executor's ONNX Runtime and torch
    threads follow ``TaskContext.cpus()``), both in one profile: only the embedding
    stage holds them, and reading, duplicate scans, stats and export keep one
    ``spark.task.cpus`` per task. Not when no model runs (vectors and tokens given), and
    no cores on ``local`` masters (Spark schedules no task profile there; logged once).
    """
    if inputs.embedding and inputs.tokens:
        return None
    conf = prepared.sparkSession.conf
    master = conf.get("spark.master", "") or ""
    gpu = wants_stage_gpu(
        conf.get("spark.executor.resource.gpu.amount", None),
        conf.get("spark.task.resource.gpu.amount", None),
        master,
        run.task_gpu_amount,
    )
    cpus = run.task_cpus
    if cpus is not None and master.startswith("local"):
        _note_local_task_cpus(cpus, master)
        cpus = None
    if not gpu and cpus is None:
        return None
    from hermes_spark.embedding.device import embedding_resource_profile

    return embedding_resource_profile(run.task_gpu_amount if gpu else None, cpus=cpus)


@functools.cache
def _note_local_task_cpus(cpus: int, master: str) -> None:
    """Say once per driver and setting that ``model.task_cpus`` waits for a cluster."""
    log.info(
        "model.task_cpus=%d applies on cluster masters; on %s every task has spark.task.cpus cores",
        cpus,
        master,
    )


def code_rows(
    prepared: DataFrame,
    codebook: Codebook,
    run: RunOptions,
    inputs: Inputs,
    *,
    passthrough: Sequence[str] = (),
    emit_embedding: bool = False,
) -> DataFrame:
    """Lazy: every prepared row with its codes, or null codes and a ``reason``.

    ``prepared`` comes from :func:`hermes_spark.corpus.prepare`; ``passthrough`` names its
    columns carried through unchanged (besides ``source_file`` and ``source_row``). Output
    columns: ``doc_id, c*, bucket*, qerr*, n_tokens, quality, codebook_version,
    annotated_at, reason, [embedding_f16], *passthrough, source_file, [source_row]``.
    No job runs here.
    """
    fields = {f.name: f for f in prepared.schema.fields}
    carried = [*passthrough, SOURCE_COL, *([SOURCE_ROW_COL] if SOURCE_ROW_COL in fields else [])]
    schema = annotate_schema(
        len(codebook.levels),
        [T.StructField(c, fields[c].dataType) for c in carried],
        emit_embedding=emit_embedding,
    )
    fn = annotate_fn(codebook, run, inputs, passthrough=carried, emit_embedding=emit_embedding)
    profile = stage_profile(prepared, run, inputs)
    source = prepared.drop(ORDER_COL)
    annotated = (
        source.mapInPandas(fn, schema, profile=profile)
        if profile is not None
        else source.mapInPandas(fn, schema)
    )
    extra = ["embedding_f16"] if emit_embedding else []
    return annotated.select(
        "doc_id",
        *codes_columns(codebook.levels, codebook.version),
        REASON_COL,
        *extra,
        *carried,
    )
