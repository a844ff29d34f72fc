"""How executors run the embedding model: a small frozen value that rides in closures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hermes_spark.errors import InvalidConfigError


@dataclass(frozen=True)
class ModelSettings:
    """How the executors run the embedding model (copied from the codebook artifact,
    except the run-time knobs ``device``, ``batch_size``, ``sort_window``,
    ``batch_tokens``, ``tokenizer`` that do not change the vectors' meaning).

    ``batch_tokens`` is the padded-token budget of one model batch (0: ``batch_size ×
    max_seq_length``); ``tokenizer`` counts ``n_tokens`` in a training tokenizer
    (``None``: the embedding model's own).
    """

    name: str
    max_seq_length: int
    batch_size: int
    device: str = "auto"
    sort_window: int = 32_768
    backend: str = "torch"
    precision: str = "fp32"
    batch_tokens: int = 0
    tokenizer: str | None = None

    @property
    def token_budget(self) -> int:
        """Padded tokens per model batch."""
        return self.batch_tokens or self.batch_size * self.max_seq_length


#: What ``hermes fit`` records when neither ``model.backend`` nor ``model.precision`` is
#: set: chosen from the measurements in docs/embedding.md.
DEFAULT_BACKEND = ("torch", "fp32")


def resolve_backend(backend: str | None, precision: str | None) -> tuple[str, str]:
    """``(backend, precision)`` with unset parts filled in: both unset → the default;
    only a backend → fp32; only a precision → the first backend that runs it."""
    from hermes_spark.embedding.backends import SUPPORTED, check_backend

    if backend is None and precision is None:
        backend, precision = DEFAULT_BACKEND
    elif precision is None:
        precision = "fp32"
    elif backend is None:
        backend = next((b for b, ps in SUPPORTED.items() if precision in ps), "torch")
    check_backend(backend, precision)
    return backend, precision


def settings_for_fit(cfg: Any) -> ModelSettings:
    """Executor settings of ``hermes fit`` from a ``ModelConfig`` (driver side)."""
    backend, precision = resolve_backend(cfg.backend, cfg.precision)
    return ModelSettings(
        cfg.name,
        cfg.max_seq_length,
        cfg.batch_size,
        cfg.device,
        cfg.sort_window,
        backend=backend,
        precision=precision,
        batch_tokens=cfg.batch_tokens,
        tokenizer=cfg.tokenizer,
    )


def settings_for_annotate(artifact_model: Mapping[str, Any], cfg: Any) -> ModelSettings:
    """Executor settings of ``annotate``: what the artifact's ``model`` dict recorded
    (name, max_seq_length, backend, precision) plus this run's knobs from ``cfg``.

    Raises:
        InvalidConfigError: ``cfg`` asks for another backend or precision than the
            artifact was fitted with (codes would not be comparable).
    """
    backend = str(artifact_model.get("backend", "torch"))
    precision = str(artifact_model.get("precision", "fp32"))
    for key, have in (("backend", backend), ("precision", precision)):
        asked = getattr(cfg, key, None)
        if asked is not None and asked != have:
            raise InvalidConfigError(
                f"model.{key} is {asked} but the codebook was fitted with {key} {have}: "
                f"codes of another {key} are not comparable. Leave model.{key} unset to "
                "use the codebook's, or fit a codebook with this one"
            )
    return ModelSettings(
        str(artifact_model["name"]),
        int(artifact_model["max_seq_length"]),
        int(cfg.batch_size),
        cfg.device,
        cfg.sort_window,
        backend=backend,
        precision=precision,
        batch_tokens=cfg.batch_tokens,
        tokenizer=cfg.tokenizer,
    )
