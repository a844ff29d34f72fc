"""``encoder_flops`` of the real default model equals an independent count: 2·T FLOPs per
weight of every ``nn.Linear`` in the encoder layers (pooler excluded) plus the attention
products read from the attention modules."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from hermes_spark.embedding import resolve_model_path
from tests.helpers import bench_module

hb = bench_module("hardware_bound")


@pytest.mark.parametrize("tokens", [1, 128, 256])
def test_encoder_flops_match_the_linear_weights_of_the_real_model(tokens):
    path = resolve_model_path("default")
    model = AutoModel.from_pretrained(path)
    assert model.pooler is not None  # present, and left out: only model.encoder is walked
    linear = [m for m in model.encoder.layer.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 6 * len(model.encoder.layer)  # Q, K, V, O, FFN in, FFN out
    gemm = sum(2 * tokens * m.weight.numel() for m in linear)
    attention = 0
    for layer in model.encoder.layer:
        width = layer.attention.self.num_attention_heads * layer.attention.self.attention_head_size
        attention += 2 * 2 * tokens * tokens * width  # Q Kᵀ and softmax · V
    assert hb.model_flops_per_doc(path, tokens) == float(gemm + attention)
