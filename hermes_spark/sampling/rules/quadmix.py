"""``quadmix[:PARAMS.json]``: expected repeats ``min(E, λ·σ(k·(q − t)))`` of each
document's quality percentile ``q`` within its child (:mod:`..quadmix` computes them)."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_spark import io
from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.rules.base import STAGE2_KEY, Pools, Score, Stage2Rule


@dataclass(frozen=True)
class QuadmixRule(Stage2Rule):
    """``params`` is the parameter file's path ("" for the defaults)."""

    params: str = ""
    name = "quadmix"
    usage = "quadmix[:<params.json>]"
    pools = Pools.EXPECTED_REPEATS
    score = Score.QUALITY

    @classmethod
    def parse(
        cls, arg: str | None, *, check_files: bool = True, storage: io.Storage | None = None
    ) -> Stage2Rule:
        path = (arg or "").strip()
        if check_files and path and not io.is_file(path, storage=storage):
            raise InvalidConfigError(f"quadmix parameters {path!r} do not exist", key=STAGE2_KEY)
        return cls(path)

    @property
    def argument(self) -> str:
        return self.params

    @property
    def params_path(self) -> str | None:
        """The parameter file (None: the default parameters)."""
        return self.params or None
