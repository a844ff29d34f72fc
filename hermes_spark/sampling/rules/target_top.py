"""``target-top:p``: as ``quality-top:p``, ranking by the similarity to target examples."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark.sampling.rules.base import Score
from hermes_spark.sampling.rules.top_share import TopShareRule


@dataclass(frozen=True)
class TargetTopRule(TopShareRule):
    name = "target-top"
    usage = "target-top:<p>"
    score = Score.TARGET
