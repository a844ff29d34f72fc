"""``random``: children ∝ tokens, documents uniformly (the walk in ``u`` order)."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark.sampling.rules.base import Stage2Rule


@dataclass(frozen=True)
class RandomRule(Stage2Rule):
    name = "random"
    usage = "random"
