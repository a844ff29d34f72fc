"""The Stage-2 rule protocol: what the planner and the selector ask of a rule."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hermes_spark.errors import InvalidConfigError
from hermes_spark.io import Storage

#: The config key every rule error names.
STAGE2_KEY = "sample.stage2"


class Pools(enum.Enum):
    """How a child's candidate pool is formed."""

    #: every document of the child (``pool_tokens == tokens``)
    ALL = "all"
    #: the documents at or above the child's exact ``(1-p)`` quantile of the rule's score
    TOP_SHARE = "top-share"
    #: every rated document, repeated by its expected repeats (QuaDMix)
    EXPECTED_REPEATS = "expected-repeats"


class Score(enum.Enum):
    """The per-document score a rule ranks by."""

    NONE = "none"
    #: the document quality (the ``quality`` column, or ``quality_cols`` merged)
    QUALITY = "quality"
    #: the similarity to target examples (``target_similarity``)
    TARGET = "target"


class Allocation(enum.Enum):
    """How a bucket's target is split over its children (water-filled under their caps)."""

    #: children in proportion to their tokens
    TOKENS = "tokens"
    #: an equal share per child (the maximum-entropy allocation)
    EQUAL = "equal"


@dataclass(frozen=True)
class Stage2Rule:
    """One parsed Stage-2 rule; subclasses set the class attributes and :meth:`parse`."""

    #: the rule's name, the part of the spec before ``:``
    name: ClassVar[str]
    #: how the spec is written, for help text (``quality-top:<p>``)
    usage: ClassVar[str]
    pools: ClassVar[Pools] = Pools.ALL
    score: ClassVar[Score] = Score.NONE
    allocation: ClassVar[Allocation] = Allocation.TOKENS

    @classmethod
    def parse(
        cls, arg: str | None, *, check_files: bool = True, storage: Storage | None = None
    ) -> Stage2Rule:
        """The rule from what follows ``:`` in its spec (None without ``:``; case kept).

        Raises:
            InvalidConfigError: a bad parameter (names the ``stage2`` key).
        """
        if arg is not None:
            raise InvalidConfigError(f"{cls.name} takes no parameter, got {arg!r}", key=STAGE2_KEY)
        return cls()

    @property
    def p(self) -> float | None:
        """The share kept by a top-share rule (None for the others)."""
        return None

    @property
    def argument(self) -> str:
        """What follows ``:`` in the canonical spec ("" when nothing does)."""
        return ""

    @property
    def spec(self) -> str:
        """The canonical spec string; ``parse_rule(rule.spec) == rule``."""
        return f"{self.name}:{self.argument}" if self.argument else self.name

    @property
    def needs_codes(self) -> bool:
        """Whether the pools need the documents (the codes table), not only statistics."""
        return self.score is not Score.NONE

    @property
    def needs_quality(self) -> bool:
        """Whether the rule ranks by document quality (what ``quality_cols`` feeds)."""
        return self.score is Score.QUALITY

    @property
    def needs_target(self) -> bool:
        """Whether the rule ranks by the similarity to target examples."""
        return self.score is Score.TARGET

    def child_weights(self, tokens: np.ndarray) -> np.ndarray:
        """The children's weights in the Stage-2 water-fill, given their tokens."""
        if self.allocation is Allocation.EQUAL:
            return np.ones(len(tokens))
        return tokens

    def as_tuple(self) -> tuple[str, float | None]:
        """``(name, p)``, the form :func:`~hermes_spark.sampling.allocate.parse_stage2_rule`
        returns."""
        return self.name, self.p
