"""Which device and how many CPU threads an embedding task may use (executor side).

The GPU of a Spark task comes from ``TaskContext.resources()["gpu"]``, never guessed.
Nothing here needs a SparkSession; ``torch`` and ``pyspark`` are imported lazily.
"""

from __future__ import annotations

import os

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
        return f"cuda:{gpus.addresses[0]}"
    return "cuda:0"


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
