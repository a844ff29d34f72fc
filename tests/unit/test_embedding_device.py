"""GPU choice, stage-level scheduling profile, backend settings and torch assignment,
all without CUDA (fake task contexts, CPU torch)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hermes_spark.config import ModelConfig
from hermes_spark.embedding import device
from hermes_spark.embedding.assign_torch import TorchAssigner
from hermes_spark.embedding.device import choose_device, embedding_resource_profile, torch_index
from hermes_spark.embedding.settings import (
    DEFAULT_CPU_BACKEND,
    DEFAULT_GPU_BACKEND,
    resolve_backend,
    settings_for_annotate,
    settings_for_fit,
)
from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.codebook import fit_codebook
from tests.helpers import clustered_vectors


def fake_task(gpus):
    resources = {"gpu": SimpleNamespace(addresses=gpus)} if gpus is not None else {}
    return SimpleNamespace(resources=lambda: resources, cpus=lambda: 2)


@pytest.fixture
def fake_cuda(monkeypatch):
    import pyspark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def with_task(gpus):
        monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: fake_task(gpus)))

    return with_task


def test_task_gpu_is_remapped_under_cuda_visible_devices(fake_cuda, monkeypatch):
    fake_cuda(["3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert choose_device("auto") == "cuda:1"  # physical GPU 3 is torch's second device
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")
    fake_cuda(["GPU-bb"])
    assert choose_device("auto") == "cuda:1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    fake_cuda(["1"])
    assert choose_device("auto") == "cuda:1"
    fake_cuda(None)
    assert choose_device("auto") == "cpu"  # a task without a GPU never grabs one


def test_hidden_or_out_of_range_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(InvalidConfigError, match="hides it"):
        torch_index("3", 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(InvalidConfigError, match="beyond 2 visible"):
        torch_index("2", 2)


def test_resource_profile_asks_for_a_gpu_share():
    profile = embedding_resource_profile(0.25, cpus=2)
    assert profile.taskResources["gpu"].amount == 0.25
    assert profile.taskResources["cpus"].amount == 2
    assert embedding_resource_profile(2).taskResources["gpu"].amount == 2
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidConfigError, match="task_gpu_amount"):
            embedding_resource_profile(bad)
    assert device.task_cpus() >= 1


def test_backend_resolution_and_refusal_of_a_mismatch():
    assert resolve_backend(None, None) == DEFAULT_CPU_BACKEND == ("onnx", "int8")
    assert resolve_backend(None, None, gpu=True) == DEFAULT_GPU_BACKEND == ("torch", "fp16")
    assert resolve_backend("torch", None, gpu=True) == ("torch", "fp32")  # as asked
    assert resolve_backend("onnx", None) == ("onnx", "fp32")
    assert resolve_backend(None, "int8") == ("onnx", "int8")
    with pytest.raises(InvalidConfigError, match="runs precision"):
        resolve_backend("torch", "int8")
    assert resolve_backend("openvino", None) == ("openvino", "fp32")
    with pytest.raises(InvalidConfigError, match="openvino runs precision fp32, int8"):
        ModelConfig(backend="openvino", precision="bf16")
    with pytest.raises(InvalidConfigError, match="not one of"):
        ModelConfig(backend="tensorrt")
    fit = settings_for_fit(ModelConfig(backend="onnx", precision="int8", batch_tokens=4096))
    assert (fit.backend, fit.precision, fit.token_budget) == ("onnx", "int8", 4096)
    artifact = {"name": "m", "max_seq_length": 128, "backend": "onnx", "precision": "int8"}
    run = settings_for_annotate(artifact, ModelConfig(batch_size=7))
    assert (run.backend, run.precision, run.max_seq_length, run.batch_size) == (
        "onnx",
        "int8",
        128,
        7,
    )
    with pytest.raises(InvalidConfigError, match="not comparable"):
        settings_for_annotate(artifact, ModelConfig(backend="torch"))
    with pytest.raises(InvalidConfigError, match="precision"):
        settings_for_annotate(artifact, ModelConfig(precision="fp32"))
    old = settings_for_annotate({"name": "m", "max_seq_length": 64}, ModelConfig())
    assert (old.backend, old.precision) == ("torch", "fp32")  # artifacts before backends


def test_a_backend_mismatch_is_used_only_when_allowed():
    artifact = {"name": "m", "max_seq_length": 128, "backend": "onnx", "precision": "int8"}

    def run(**kw):
        s = settings_for_annotate(artifact, ModelConfig(allow_backend_mismatch=True, **kw))
        return s.backend, s.precision

    assert run() == ("onnx", "int8")  # nothing asked: the artifact's
    assert run(backend="onnx") == ("onnx", "int8")  # the part left unset stays the artifact's
    assert run(precision="int8") == ("onnx", "int8")
    assert run(backend="torch", precision="fp16") == ("torch", "fp16")
    assert run(backend="torch") == ("torch", "fp32")
    assert run(backend="onnx", precision="fp32") == ("onnx", "fp32")
    with pytest.raises(InvalidConfigError, match="allow_backend_mismatch"):
        settings_for_annotate(artifact, ModelConfig(backend="openvino"))
    with pytest.raises(InvalidConfigError, match="true or false"):
        ModelConfig(allow_backend_mismatch="yes")


def test_fit_picks_the_default_of_the_executors_hardware(monkeypatch):
    from hermes_spark.embedding.device import cluster_has_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not cluster_has_gpus({"spark.master": "local[2]"})
    assert cluster_has_gpus({"spark.master": "local[2]"}, "cuda")
    gpu_cluster = {"spark.master": "spark://m:7077", "spark.executor.resource.gpu.amount": "1"}
    assert cluster_has_gpus(gpu_cluster) and not cluster_has_gpus(gpu_cluster, "cpu")
    assert not cluster_has_gpus({"spark.master": "yarn", "spark.task.resource.gpu.amount": "0"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cluster_has_gpus({"spark.master": "local[*]"})  # the driver is the executor
    fit = settings_for_fit(ModelConfig(), gpu=cluster_has_gpus(gpu_cluster))
    assert (fit.backend, fit.precision) == DEFAULT_GPU_BACKEND
    fit = settings_for_fit(ModelConfig(precision="fp32"), gpu=True)
    assert (fit.backend, fit.precision) == ("torch", "fp32")  # what was asked, not the default


@pytest.mark.parametrize("books", ["shared", "per_parent", "refined"])
def test_torch_assignment_matches_numpy(books):
    from hermes_spark.quantize.options import QuantizerOptions

    x = clustered_vectors(3000, dim=32, clusters=12, seed=7)
    book = fit_codebook(
        x[:1000], (16, 8, 4), seed=0, lst_dim=24, n_iter=8, model={"name": "m"},
        options=QuantizerOptions(stage_books=books, parent_min_rows=0),
    )  # fmt: skip
    assert book.rvq.is_tree == (books != "shared")
    want_codes, want_qerr = book.assign(x)
    got_codes, got_qerr = TorchAssigner(book, "cpu").assign(torch.from_numpy(x))
    assert got_codes.dtype == np.int32 and got_qerr.dtype == np.float32
    np.testing.assert_array_equal(got_codes, want_codes)
    np.testing.assert_allclose(got_qerr, want_qerr, rtol=1e-4, atol=1e-5)


def test_device_label_comes_from_the_tasks_resources(fake_cuda):
    from hermes_spark.embedding.device import device_label

    fake_cuda(["1"])  # the task holds a GPU: PyTorch runs there at the artifact's precision
    assert device_label("torch", "fp16") == "cuda:fp16"
    assert device_label("torch", "fp32") == "cuda:fp32"
    assert device_label("torch", "fp32", "cpu") == "cpu:fp32"
    assert device_label("onnx", "int8") == "cpu:onnx-int8"  # CPU backends stay on the CPU
    assert device_label("openvino", "fp32") == "cpu:openvino-fp32"
    fake_cuda(None)  # a CUDA machine, but this task was given no GPU
    assert device_label("torch", "fp16") == "cpu:fp16"


def test_the_mismatch_flag_overrides_the_config_only_when_given():
    from hermes_spark.cli import build_parser
    from hermes_spark.cli.flags import COMMANDS, overrides

    annotate = next(c for c in COMMANDS if c.name == "annotate")
    base = ["annotate", "--input", "in", "--codebook", "cb", "--table", "t"]
    args = build_parser().parse_args([*base, "--backend", "torch", "--allow-backend-mismatch"])
    assert overrides(annotate, vars(args))["model"] == {
        "backend": "torch",
        "allow_backend_mismatch": True,
    }
    args = build_parser().parse_args(base)  # absent: a config file's value would stay
    assert "allow_backend_mismatch" not in overrides(annotate, vars(args)).get("model", {})
