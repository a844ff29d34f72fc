"""Give prepared corpus rows their codes: the one fused executor pass, wired once.

Driver side: builds the lazy ``mapInPandas`` stage that both :meth:`HermesModel.transform`
and the ``hermes annotate`` table writer use, so the annotation logic exists once. The
function itself (``udfs.annotate_udf``) runs on executors with the codebook arrays and
model settings copied into its closure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from hermes_spark.corpus import ORDER_COL
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.schema import REASON_COL, SOURCE_COL, codes_columns
from udfs.annotate_udf import ModelSettings, annotate_schema, make_annotate_fn


@dataclass(frozen=True)
class RunOptions:
    """How this run executes the model (not part of the artifact: a GPU cluster runs a
    bigger batch than the laptop that fitted it)."""

    batch_size: int | None = None
    device: str = "auto"
    sort_window: int = 32_768


@dataclass(frozen=True)
class Inputs:
    """Which optional inputs the prepared frame carries."""

    embedding: bool = False
    tokens: bool = False
    quality: bool = False


def model_settings(codebook: Codebook, run: RunOptions) -> ModelSettings:
    """Executor model settings: the artifact's model, this run's batch size and device."""
    model = codebook.model
    return ModelSettings(
        model["name"],
        int(model["max_seq_length"]),
        int(run.batch_size or model.get("batch_size", 64)),
        run.device,
        run.sort_window,
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
    columns carried through unchanged (besides ``source_file``). Output columns:
    ``doc_id, c*, bucket*, qerr*, n_tokens, quality, codebook_version, annotated_at,
    reason, [embedding_f16], source_file, *passthrough``. No job runs here.
    """
    fields = {f.name: f for f in prepared.schema.fields}
    carried = [*passthrough, SOURCE_COL]
    schema = annotate_schema(
        len(codebook.levels),
        [T.StructField(c, fields[c].dataType) for c in carried],
        emit_embedding=emit_embedding,
    )
    fn = make_annotate_fn(
        codebook,
        model_settings(codebook, run),
        has_embedding=inputs.embedding,
        has_tokens=inputs.tokens,
        has_quality=inputs.quality,
        passthrough=tuple(carried),
        emit_embedding=emit_embedding,
    )
    annotated = prepared.drop(ORDER_COL).mapInPandas(fn, schema)
    extra = ["embedding_f16"] if emit_embedding else []
    return annotated.select(
        "doc_id",
        *codes_columns(codebook.levels, codebook.version),
        REASON_COL,
        *extra,
        *carried,
    )
