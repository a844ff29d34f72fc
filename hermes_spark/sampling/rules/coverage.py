"""``coverage``: an equal share per child, water-filled against each child's cap."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark.sampling.rules.base import Allocation, Stage2Rule


@dataclass(frozen=True)
class CoverageRule(Stage2Rule):
    name = "coverage"
    usage = "coverage"
    allocation = Allocation.EQUAL
