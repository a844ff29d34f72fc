"""The hardware-bound arithmetic of ``bench/hardware_bound.py``: the encoder FLOP count,
the config reader, the one-node GEMM graphs against numpy, and the measured rates."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import bench_module

hb = bench_module("hardware_bound")

dims = st.integers(1, 64)
tokens = st.integers(1, 512)


def test_encoder_flops_by_hand():
    # 1 layer, h=2, i=3, T=1: 4·1·4 + 2·1·2·3 + 2·1·1·2 = 32 multiply-adds, 64 FLOPs
    assert hb.encoder_flops(1, 2, 3, 1) == 64.0
    # MiniLM-L6 at 256 tokens: 6 · 2 · (4·256·384² + 2·256·384·1536 + 2·256²·384)
    assert hb.encoder_flops(6, 384, 1536, 256) == 6_039_797_760.0


@given(layers=st.integers(1, 24), h=dims, i=dims, t=tokens)
def test_flops_grow_with_tokens_linearly_plus_quadratically(layers, h, i, t):
    f = [hb.encoder_flops(layers, h, i, t + d) for d in range(3)]
    assert f[0] < f[1] < f[2]
    # the second difference is the T² term alone: 2 · layers · 2 · h · (2 · 1²)
    assert f[2] - 2 * f[1] + f[0] == 8 * layers * h
    # linear in layers
    assert hb.encoder_flops(2 * layers, h, i, t) == 2 * hb.encoder_flops(layers, h, i, t)


def test_model_flops_per_doc_reads_the_config(tmp_path):
    config = {"num_hidden_layers": 3, "hidden_size": 8, "intermediate_size": 32, "x": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    want = hb.encoder_flops(3, 8, 32, 100)
    assert hb.model_flops_per_doc(tmp_path, tokens=100) == want
    assert hb.model_flops_per_doc(str(tmp_path / "config.json"), tokens=100) == want
    assert hb.model_flops_per_doc(tmp_path) == hb.encoder_flops(3, 8, 32, 256)


@settings(max_examples=30, deadline=None)  # a session per example
@given(m=st.integers(1, 9), k=st.integers(1, 17), n=st.integers(1, 9), seed=st.integers(0, 99))
def test_int8_graph_equals_numpy_integer_matmul_for_7bit_weights(m, k, n, seed):
    """uint8 activations x weights in [-64, 64] (what the product's int8 graphs hold) are
    exact on every x86 kernel: with VNNI (int32 accumulation) and on AVX2 alone, whose
    ``vpmaddubsw`` adds pairs of products in saturating int16 (255 x 64 x 2 = 32640 fits;
    full-range weights do not: 255 x 127 + 255 x 127 saturates to 32767)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    w = rng.integers(-64, 65, size=(k, n), dtype=np.int8)
    got = hb.run_gemm_once(a, w)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64))


@pytest.mark.parametrize("weight", [64, -64])
def test_int8_graph_is_exact_at_the_7bit_extremes(weight):
    # the largest pair sums a 7-bit weight can make: ±32640, one step below saturation
    a = np.full((1, 16), 255, dtype=np.uint8)
    w = np.full((16, 3), weight, dtype=np.int8)
    np.testing.assert_array_equal(hb.run_gemm_once(a, w), np.full((1, 3), 16 * 255 * weight))


def test_fp32_graph_equals_numpy_matmul():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 12), dtype=np.float32)
    w = rng.standard_normal((12, 7), dtype=np.float32)
    got = hb.run_gemm_once(a, w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rate", ["int8_gemm_rate", "fp32_gemm_rate"])
def test_gemm_rates_are_positive_and_finite(rate):
    got = getattr(hb, rate)(1, m=16, k=32, n=24, seconds=0.05)
    assert got > 0 and math.isfinite(got)


def test_bound_docs_per_s():
    assert hb.bound_docs_per_s(2e9, 1e11) == 50.0
    with pytest.raises(ValueError):
        hb.bound_docs_per_s(0.0, 1e11)
    with pytest.raises(ValueError):
        hb.bound_docs_per_s(1e9, float("inf"))
