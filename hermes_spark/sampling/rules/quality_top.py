"""``quality-top:p``: the share ``p`` of each child with the highest quality."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark.sampling.rules.base import Score
from hermes_spark.sampling.rules.top_share import TopShareRule


@dataclass(frozen=True)
class QualityTopRule(TopShareRule):
    name = "quality-top"
    usage = "quality-top:<p>"
    score = Score.QUALITY
