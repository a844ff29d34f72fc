"""How the embedding model runs: this run's options (:class:`RunOptions`, driver side)
and the small frozen value that rides in executor closures (:class:`ModelSettings`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How this run executes the model (not part of the artifact: a GPU cluster runs a
    bigger batch than the laptop that fitted it).

    The one declaration of the run-side fields: the ``model`` config section
    (:class:`hermes_spark.config.ModelConfig`) is these plus the artifact-side ``name``
    and ``max_seq_length``, under the same flat keys.

    ``backend``/``precision`` are what the run *asks* for: ``None`` uses the artifact's;
    anything else must equal it (codes of another backend are not comparable).
    """

    #: None: the batch size the artifact recorded
    batch_size: int | None = None
    device: str = "auto"
    #: documents sorted by length together before batching (0: the whole partition)
    sort_window: int = 32_768
    #: padded tokens per model batch (0: batch_size * max_seq_length)
    batch_tokens: int = 0
    #: tokenizer.json or folder counting n_tokens (None: the embedding model's tokenizer)
    tokenizer: str | None = None
    #: torch | onnx | openvino; None: the CPU default at fit, the artifact's at annotate
    backend: str | None = None
    #: fp32 | fp16 | bf16 | int8; None: as for backend
    precision: str | None = None
    #: GPU share of one embedding task for stage-level scheduling (fractions share a GPU)
    task_gpu_amount: float = 1.0
    #: CPU cores of one embedding task for stage-level scheduling on cluster masters
    #: (None: spark.task.cpus, as every other stage); ONNX Runtime/torch threads follow
    task_cpus: int | None = None
    #: annotate: embed with backend/precision above although the codebook was fitted
    #: with others (recorded in the commits' device label); refused otherwise
    allow_backend_mismatch: bool = False

    @classmethod
    def from_config(cls, model: RunOptions) -> RunOptions:
        """The run-side fields of the ``model`` config section (a ``ModelConfig``, which
        is a ``RunOptions`` plus the artifact-side keys) as a plain run record."""
        return cls(**{f.name: getattr(model, f.name) for f in fields(cls)})


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
#: set, per hardware class of the executors (measured in docs/embedding.md): ONNX
#: Runtime int8 on CPUs (level-1 codes equal to fp32 PyTorch's), PyTorch fp16 on GPUs.
DEFAULT_CPU_BACKEND = ("onnx", "int8")
DEFAULT_GPU_BACKEND = ("torch", "fp16")
DEFAULT_BACKEND = DEFAULT_CPU_BACKEND


def resolve_backend(
    backend: str | None, precision: str | None, *, gpu: bool = False
) -> tuple[str, str]:
    """``(backend, precision)`` with unset parts filled in: both unset → the default of
    the hardware class (``gpu``: the executors embed on GPUs); only a backend → fp32;
    only a precision → the first backend that runs it."""
    from hermes_spark.embedding.backends import SUPPORTED, check_backend

    if precision is None:
        if backend is None:
            backend, precision = DEFAULT_GPU_BACKEND if gpu else DEFAULT_CPU_BACKEND
        else:
            precision = "fp32"
    elif backend is None:
        backend = next((b for b, ps in SUPPORTED.items() if precision in ps), "torch")
    check_backend(backend, precision)

    return backend, precision


def settings_for_fit(cfg: Any, *, gpu: bool = False) -> ModelSettings:
    """Executor settings of ``hermes fit`` from a ``ModelConfig`` (driver side); ``gpu``:
    the executors embed on GPUs (:func:`hermes_spark.embedding.device.cluster_has_gpus`),
    which picks the default backend when ``cfg`` names none."""
    backend, precision = resolve_backend(cfg.backend, cfg.precision, gpu=gpu)
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

    A backend or precision in ``cfg`` other than the artifact's is refused unless
    ``cfg.allow_backend_mismatch`` is set; then it is used (and logged), and the commits
    record it in their device label, so ``hermes versions`` shows the version as embedded
    on mixed devices.

    Raises:
        InvalidConfigError: ``cfg`` asks for another backend or precision than the
            artifact was fitted with (codes would not be comparable).
    """
    fitted = (
        str(artifact_model.get("backend", "torch")),
        str(artifact_model.get("precision", "fp32")),
    )
    asked = (getattr(cfg, "backend", None), getattr(cfg, "precision", None))
    allow = bool(getattr(cfg, "allow_backend_mismatch", False))
    backend, precision = fitted
    for key, have, want in zip(("backend", "precision"), fitted, asked, strict=True):
        if want is not None and want != have and not allow:
            raise InvalidConfigError(
                f"is {want} but the codebook was fitted with {key} {have}: codes of another "
                f"{key} are not comparable. Leave it unset to use the codebook's, fit a "
                "codebook with this one, or pass {model.allow_backend_mismatch} (config "
                "model.allow_backend_mismatch) to embed with it anyway (the commits record it)",
                key=f"model.{key}",
            )
    if allow and asked != (None, None):
        # a part left unset keeps the artifact's when the part given matches it
        same = asked[0] in (None, fitted[0]) and asked[1] in (None, fitted[1])
        if same:
            asked = fitted
        backend, precision = resolve_backend(*asked)
        if (backend, precision) != fitted:
            log.warning(
                "embedding with %s %s although the codebook was fitted with %s %s "
                "(--allow-backend-mismatch): codes may differ slightly from the fitted ones",
                backend,
                precision,
                *fitted,
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
