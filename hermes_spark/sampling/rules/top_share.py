"""The ``-top:p`` rules' shared part: keep the top share ``p`` of each child by a score."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark.errors import InvalidConfigError
from hermes_spark.io import Storage
from hermes_spark.sampling.rules.base import STAGE2_KEY, Pools, Stage2Rule


@dataclass(frozen=True)
class TopShareRule(Stage2Rule):
    """Children ∝ tokens; the pool is the documents at or above the ``(1-p)`` quantile."""

    share: float = 1.0
    pools = Pools.TOP_SHARE

    @classmethod
    def parse(
        cls, arg: str | None, *, check_files: bool = True, storage: Storage | None = None
    ) -> Stage2Rule:
        text = (arg or "").lower()
        try:
            p = float(text)
        except ValueError:
            p = float("nan")
        if not 0 < p <= 1:
            raise InvalidConfigError(f"{cls.name}:p needs 0 < p <= 1, got {text!r}", key=STAGE2_KEY)
        return cls(p)

    @property
    def p(self) -> float | None:
        return self.share

    @property
    def argument(self) -> str:
        return repr(self.share)
