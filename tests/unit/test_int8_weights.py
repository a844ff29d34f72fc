"""The product's int8 quantization keeps every weight within 7 bits ([-64, 64]), the range
whose u8 x s8 products are exact on every x86 int8 kernel (with or without VNNI)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hermes_spark.embedding.backends import _quantize_int8


def _matmul_model(path, weights: np.ndarray) -> None:
    k, n = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", n])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _int8_weights(path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return [a for a in arrays if a.dtype == np.int8 and a.ndim == 2]  # not zero points


def _quantized(tmp_path, **kwargs) -> np.ndarray:
    rng = np.random.default_rng(0)
    # per-channel scales: columns of very different magnitudes, some weights negative-heavy
    w = (rng.standard_normal((32, 8)) * np.geomspace(0.01, 10, 8)).astype(np.float32)
    _matmul_model(tmp_path / "fp32.onnx", w)
    _quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", **kwargs)
    (q,) = _int8_weights(tmp_path / "int8.onnx")
    assert q.shape == w.shape
    return q


def test_quantized_weights_lie_within_7_bits(tmp_path):
    q = _quantized(tmp_path)
    assert q.min() >= -64 and q.max() <= 64
    # the 7 bits are used: every channel reaches its extreme (symmetric scale max|w| / 64)
    assert (np.abs(q.astype(np.int16)).max(axis=0) == 64).all()


def test_full_range_weights_leave_7_bits(tmp_path):
    """The earlier build (``reduce_range=False``) fills the int8 range, which AVX2's
    saturating int16 pair sums cannot hold: what the 7-bit default avoids."""
    q = _quantized(tmp_path, reduce_range=False)
    assert np.abs(q.astype(np.int16)).max() > 64
