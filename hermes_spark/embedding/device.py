"""Which device and how many CPU threads an embedding task may use (executor side).

The GPU of a Spark task comes from ``TaskContext.resources()["gpu"]``, never guessed.
Nothing here needs a SparkSession; ``torch`` and ``pyspark`` are imported lazily.
"""

from __future__ import annotations

import os
from typing import Any

from hermes_spark.errors import InvalidConfigError


def choose_device(requested: str = "auto") -> str:
    """The torch device for this process: the Spark task's GPU when it has one, else CPU.

    Inside a Spark task the GPU address comes from ``TaskContext.resources()["gpu"]``
    (never guessed); outside a task (driver, benchmarks) the first visible GPU is used.
    """
    if requested == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if requested == "cuda":
            raise InvalidConfigError("model.device is cuda but torch sees no CUDA GPU")
        return "cpu"
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None:
        gpus = ctx.resources().get("gpu")
        if gpus is None or not gpus.addresses:
            return "cpu" if requested == "auto" else "cuda:0"
        return f"cuda:{torch_index(gpus.addresses[0], torch.cuda.device_count())}"
    return "cuda:0"


def torch_index(address: str, visible_count: int) -> int:
    """The torch device index of the GPU Spark assigned as ``address``.

    Spark's discovery script reports physical ids (or UUIDs); when the executor runs
    under ``CUDA_VISIBLE_DEVICES`` torch numbers only the visible GPUs from 0, so the
    address is looked up in that list. Without the variable the address is the index.

    Raises:
        InvalidConfigError: the address is neither visible nor a valid index.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if address in ids:
            return ids.index(address)
        raise InvalidConfigError(
            f"Spark assigned GPU {address!r} to this task but CUDA_VISIBLE_DEVICES={visible!r} "
            "hides it: make the GPU discovery script report the ids the executor can see"
        )
    try:
        index = int(address)
    except ValueError:
        raise InvalidConfigError(
            f"GPU address {address!r} is not an index and CUDA_VISIBLE_DEVICES is unset"
        ) from None
    if not 0 <= index < max(visible_count, 1):
        raise InvalidConfigError(f"GPU address {address} is beyond {visible_count} visible GPUs")
    return index


def embedding_resource_profile(gpu_amount: float | None = 1.0, cpus: int | None = None) -> Any:
    """A pyspark ``ResourceProfile`` for the embedding ``mapInPandas`` stage
    (``df.mapInPandas(fn, schema, profile=...)``, stage-level scheduling; driver side).

    ``gpu_amount`` is the GPU share of one task: ``1`` = one task per GPU, ``0.25`` =
    four tasks share a GPU (their tokenizing and host work overlaps the others' kernels;
    each loads its own model copy). Whole numbers above 1 ask for several GPUs; ``None``
    asks for none (a CPU profile). ``cpus`` is the cores of one task (``model.task_cpus``;
    the task's ONNX Runtime and torch threads follow ``TaskContext.cpus()``).
    Stage-level scheduling needs a cluster manager that supports it (standalone, YARN,
    Kubernetes); on ``local[*]`` leave the profile out.

    Raises:
        InvalidConfigError: ``gpu_amount`` is not positive, or a fraction above 1;
            ``cpus`` is below 1.
    """
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    requests = TaskResourceRequests()
    if gpu_amount is not None:
        amount = float(gpu_amount)
        if not amount > 0 or (amount > 1 and not amount.is_integer()):
            raise InvalidConfigError(
                f"model.task_gpu_amount must be in (0, 1] or a whole number, got {gpu_amount}"
            )
        requests = requests.resource("gpu", amount)
    if cpus is not None:
        if int(cpus) < 1:
            raise InvalidConfigError(f"model.task_cpus must be at least 1, got {cpus}")
        requests = requests.cpus(int(cpus))
    return ResourceProfileBuilder().require(requests).build


def task_cpus() -> int:
    """CPU cores this Spark task may use (``spark.task.cpus``), or all cores off-Spark."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None:
        try:
            return max(1, int(ctx.cpus()))
        except Exception:  # older Spark without TaskContext.cpus
            return 1
    return os.cpu_count() or 1


def device_label(backend: str, precision: str, requested: str = "auto") -> str:
    """What this task embeds with, as annotate commits record it (executor side: the GPU
    comes from the task's resources): ``cpu:fp32``, ``cuda:fp16`` for PyTorch (the
    labels older commits carry), ``cpu:onnx-int8``, ``cpu:openvino-fp32`` otherwise.

    Several labels in one codebook version mean its rows were embedded differently
    (``hermes versions`` shows them as mixed devices).
    """
    if backend != "torch":  # the ONNX Runtime and OpenVINO backends run on the CPU
        return f"cpu:{backend}-{precision}"
    kind = "cuda" if choose_device(requested).startswith("cuda") else "cpu"
    return f"{kind}:{precision}"


def cluster_has_gpus(conf: Any, requested: str = "auto") -> bool:
    """Whether this job's executors embed on GPUs (driver side; picks the default
    backend at fit): ``model.device`` says so, or the Spark conf gives executors or tasks
    a GPU, or (``local`` masters, where the driver is the executor) torch sees CUDA.

    ``conf`` is ``spark.conf`` (anything with ``get(key, default)``).
    """
    if requested in ("cpu", "cuda"):
        return requested == "cuda"
    for key in ("spark.executor.resource.gpu.amount", "spark.task.resource.gpu.amount"):
        amount = conf.get(key, None)
        if amount not in (None, "", "0", "0.0"):
            return True
    master = str(conf.get("spark.master", "") or "")
    if master.startswith("local"):
        import torch

        return bool(torch.cuda.is_available())
    return False
