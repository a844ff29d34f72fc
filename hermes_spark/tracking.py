"""MLflow runs for ``fit``, ``evaluate``, ``plan``, ``sample`` and ``export`` (driver only).

A command logs a run when the config's ``mlflow`` section names an experiment or a
tracking URI, or the ``MLFLOW_TRACKING_URI`` variable is set (on Databricks, set
``mlflow.experiment`` and the run lands in the workspace's server). Params say how the
result was made (levels, model, backend and precision, quantizer options, the weights and
Stage-2 rules, budget, seed, table and codebook versions), metrics what came out
(relative MSE, perplexity and dead codes per level, NMI, realized entropy, unmet budget,
repetition) and artifacts are the reports themselves. Nothing here touches Spark data:
it reads the small result objects the commands already return.

``mlflow`` (or ``mlflow-skinny``) is an optional dependency; asking for a run without it
is an :class:`~hermes_spark.errors.InvalidConfigError` raised before Spark starts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from hermes_spark import __version__, io
from hermes_spark.config import HermesConfig, MlflowConfig
from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

#: The commands that log a run.
TRACKED = ("fit", "evaluate", "plan", "sample", "export")
#: MLflow refuses longer param values; longer ones are cut with a marker.
_MAX_PARAM = 500


def enabled(cfg: MlflowConfig) -> bool:
    """Whether a command with this config logs an MLflow run."""
    return bool(cfg.experiment or cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise InvalidConfigError(
            "MLflow logging is on (config mlflow.experiment or mlflow.tracking_uri, or "
            "MLFLOW_TRACKING_URI) but the mlflow package is not "
            "installed: pip install 'hermes-spark[mlflow]', or unset them"
        ) from None
    return mlflow


def check(cfg: MlflowConfig) -> None:
    """Fail early (before Spark starts) when a run is asked for and mlflow is missing."""
    if enabled(cfg):
        _mlflow()


class RunLog:
    """What a command logs into one MLflow run (a no-op when tracking is off)."""

    def __init__(self, mlflow: Any | None = None, run_id: str | None = None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    @property
    def active(self) -> bool:
        """Whether this logs anything."""
        return self._mlflow is not None

    def params(self, values: Mapping[str, Any]) -> None:
        """Log params (``None`` values are left out; long values are cut)."""
        if self._mlflow is None:
            return
        clean = {}
        for key, value in values.items():
            if value is None:
                continue
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            clean[key] = text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."
        self._mlflow.log_params(clean)

    def metrics(self, values: Mapping[str, Any]) -> None:
        """Log the finite numeric metrics of ``values`` (others are left out)."""
        if self._mlflow is None:
            return
        clean = {}
        for key, value in values.items():
            if isinstance(value, bool) or value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if number == number and abs(number) != float("inf"):
                clean[key] = number
        if clean:
            self._mlflow.log_metrics(clean)

    def json(self, value: Mapping[str, Any], name: str) -> None:
        """Log ``value`` as the JSON artifact ``name``."""
        if self._mlflow is not None:
            self._mlflow.log_dict(dict(value), name)

    def text(self, value: str, name: str) -> None:
        """Log ``value`` as the text artifact ``name`` (e.g. an HTML page)."""
        if self._mlflow is not None:
            self._mlflow.log_text(value, name)


def _experiment_id(mlflow: Any, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    return str(found.experiment_id if found is not None else mlflow.create_experiment(name))


@contextmanager
def tracked_run(cfg: HermesConfig, command: str) -> Iterator[RunLog]:
    """An MLflow run around one command (nested under a run the caller has open, as in a
    notebook); marked FAILED when the command raises. Yields a no-op :class:`RunLog`
    when tracking is off."""
    if not enabled(cfg.mlflow):
        yield RunLog()
        return
    mlflow = _mlflow()
    if cfg.mlflow.tracking_uri:
        mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    experiment = _experiment_id(mlflow, cfg.mlflow.experiment) if cfg.mlflow.experiment else None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with mlflow.start_run(
        experiment_id=experiment,
        run_name=cfg.mlflow.run_name or f"hermes-{command}-{stamp}",
        nested=mlflow.active_run() is not None,
        tags={"hermes.command": command, "hermes.version": __version__},
    ) as run:
        log.info("MLflow run %s (%s)", run.info.run_id, mlflow.get_tracking_uri())
        yield RunLog(mlflow, run.info.run_id)


# ------------------------------------------------------------------ what each command logs


def _model_params(cfg: HermesConfig) -> dict[str, Any]:
    m = cfg.model
    return {
        "model": m.name,
        "backend": m.backend,
        "precision": m.precision,
        "max_seq_length": m.max_seq_length,
        "batch_tokens": m.batch_tokens,
    }


def _fit_params(cfg: HermesConfig) -> dict[str, Any]:
    return {f"fit.{k}": v for k, v in dataclasses.asdict(cfg.fit).items()}


def _sample_params(cfg: HermesConfig) -> dict[str, Any]:
    s = cfg.sample
    keys = (
        "weights",
        "stage2",
        "weights_level",
        "stage2_level",
        "budget_tokens",
        "budget_share",
        "max_epochs",
        "seed",
        "quality_cols",
    )
    return {k: getattr(s, k, None) for k in keys}


def _levels_metrics(stages: list[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in stages:
        k = s["level"]
        for name in ("relative_mse", "perplexity", "dead_codes", "imbalance"):
            if name in s:
                out[f"{name}_L{k}"] = s[name]
    return out


def log_fit(run: RunLog, cfg: HermesConfig, report: Mapping[str, Any]) -> None:
    """Params, per-level codebook health and the fit report of ``hermes fit``."""
    run.params(
        {
            **_model_params(cfg),
            **_fit_params(cfg),
            "input": cfg.corpus.input or cfg.corpus.table,
            "codebook": cfg.paths.codebook,
            "codebook_version": report.get("codebook_version"),
        }
    )
    run.metrics(
        {
            **_levels_metrics(report.get("stages", [])),
            "sample_size": report.get("sample_size"),
            "quantizer_fit_seconds": report.get("quantizer_fit_seconds"),
        }
    )
    run.json(report, "fit_report.json")


def log_evaluate(run: RunLog, cfg: HermesConfig, report: Mapping[str, Any]) -> None:
    """Metrics of every method and level, NMI per label column, the goals."""
    run.params(
        {
            "table": report.get("table"),
            "codebook": cfg.paths.codebook,
            "codebook_version": report.get("codebook_version"),
            "levels": report.get("levels"),
            "label_cols": report.get("label_cols"),
            "vectors": report.get("vectors"),
        }
    )
    metrics: dict[str, Any] = {"eval_rows": report.get("eval_rows")}
    for row in report.get("methods", []):
        tag = f"{row['method']}_L{row['level']}"
        for name in ("relative_mse", "perplexity", "dead_codes", "collision_rate"):
            metrics[f"{tag}_{name}"] = row.get(name)
        for col, scores in (row.get("labels") or {}).items():
            metrics[f"{tag}_nmi_{col}"] = scores.get("nmi")
    goals = report.get("goals", {})
    metrics.update({k: goals.get(k) for k in ("l1_mse_ratio", "l12_mse_ratio")})
    run.metrics(metrics)
    run.json(report, "evaluation.json")


def _plan_params(cfg: HermesConfig, plan: Any) -> dict[str, Any]:
    settings = dict(plan.settings)
    return {
        **_sample_params(cfg),
        **{k: settings.get(k) for k in ("weights", "stage2", "budget_tokens", "seed")},
        "table": cfg.paths.table,
        "stats": cfg.paths.stats,
        "codebook_version": plan.codebook_version,
        "levels": list(plan.levels),
    }


def log_plan(run: RunLog, cfg: HermesConfig, plan: Any) -> None:
    """Settings, target entropies and the plan JSON of ``hermes plan``."""
    run.params(_plan_params(cfg, plan))
    info = plan.info
    metrics = {
        "allocated_tokens": info.get("allocated_tokens"),
        "stage1_shortfall_tokens": info.get("stage1_shortfall_tokens"),
        "stage2_unmet_tokens": info.get("stage2_unmet_tokens"),
    }
    for stage, bits in (info.get("target_entropy_bits") or {}).items():
        metrics[f"target_entropy_bits_{stage}"] = bits
    run.metrics(metrics)
    run.text(plan.to_json(), "plan.json")


def log_sample(run: RunLog, cfg: HermesConfig, result: Mapping[str, Any]) -> None:
    """Settings, realized entropy, unmet budget, repetition and the mixture report
    (``result``: what ``hermes sample`` returns: manifest, report, plan)."""
    report, plan = result["report"], result["plan"]
    run.params({**_plan_params(cfg, plan), "manifest": result["manifest"]})
    totals = report.get("totals", {})
    metrics = {
        k: totals.get(k)
        for k in ("budget_tokens", "realized_tokens", "unmet_tokens", "docs", "copies")
    }
    for level, bits in (report.get("entropy_bits") or {}).items():
        metrics[f"realized_entropy_bits_{level}"] = bits.get("realized")
        metrics[f"target_entropy_bits_{level}"] = bits.get("target")
    reps = report.get("repetition_histogram") or []
    docs = sum(r["docs"] for r in reps)
    if docs:
        metrics["mean_repeats"] = sum(r["repeats"] * r["docs"] for r in reps) / docs
        metrics["max_repeats"] = max(r["repeats"] for r in reps)
        metrics["repeated_docs_share"] = sum(r["docs"] for r in reps if r["repeats"] > 1) / docs
    metrics["within_bound"] = 1.0 if report.get("within_bound") else 0.0
    run.metrics(metrics)
    run.text(plan.to_json(), "plan.json")
    run.json(report, "mixture_report.json")
    if result.get("page"):  # the HTML page of --report, one self-contained file
        from hermes_spark.object_stores import storage_before_session

        storage = storage_before_session(dict(cfg.spark.conf))
        run.text(io.read_text(result["page"], storage=storage), "report.html")


def log_export(run: RunLog, cfg: HermesConfig, result: Any) -> None:
    """Where the shards went and how much they hold."""
    run.params({"manifest": cfg.paths.manifest, "out": result.out_dir, "seed": cfg.sample.seed})
    run.metrics(
        {
            "rows": result.rows,
            "docs": result.docs,
            "tokens": result.tokens,
            "files": len(result.files),
            "files_read": len(result.files_read),
            "seconds": result.seconds,
        }
    )


LOGGERS: dict[str, Callable[..., None]] = {
    "fit": log_fit,
    "evaluate": log_evaluate,
    "plan": log_plan,
    "sample": log_sample,
    "export": log_export,
}

__all__ = ["LOGGERS", "TRACKED", "RunLog", "check", "enabled", "tracked_run"]
