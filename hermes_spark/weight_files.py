"""The weight files of the mixture tools, written beside an export or alone: DoReMi's
``doremi_weights.json``, RegMix's ``regmix_mixture.csv`` and Megatron-LM's
``megatron_blend.txt`` (driver; small text files through the URI layer)."""

from __future__ import annotations

from collections.abc import Mapping

from hermes_spark.io import Storage, write_text
from hermes_spark.sampling.exports import doremi_json, megatron_blend, regmix_csv

DOREMI_FILE = "doremi_weights.json"
REGMIX_FILE = "regmix_mixture.csv"
MEGATRON_FILE = "megatron_blend.txt"


def write_weight_files(
    out_dir: str,
    weights: Mapping[str, float],
    *,
    blend_paths: Mapping[str, str] | None = None,
    storage: Storage | None = None,
) -> list[str]:
    """Write ``doremi_weights.json``, ``regmix_mixture.csv`` and, given per-domain data
    prefixes, ``megatron_blend.txt`` into ``out_dir`` (driver; local path or URI)."""
    base = out_dir.rstrip("/")
    written = []
    for name, text in ((DOREMI_FILE, doremi_json(weights)), (REGMIX_FILE, regmix_csv(weights))):
        write_text(f"{base}/{name}", text, storage=storage)
        written.append(f"{base}/{name}")
    if blend_paths is not None:
        write_text(f"{base}/{MEGATRON_FILE}", megatron_blend(weights, blend_paths), storage=storage)
        written.append(f"{base}/{MEGATRON_FILE}")
    return written
