"""The known Stage-2 rules and :func:`parse_rule`, the one reader of a rule spec."""

from __future__ import annotations

from hermes_spark.errors import InvalidConfigError
from hermes_spark.io import Storage
from hermes_spark.sampling.rules.base import STAGE2_KEY, Score, Stage2Rule
from hermes_spark.sampling.rules.coverage import CoverageRule
from hermes_spark.sampling.rules.quadmix import QuadmixRule
from hermes_spark.sampling.rules.quality_top import QualityTopRule
from hermes_spark.sampling.rules.random import RandomRule
from hermes_spark.sampling.rules.target_top import TargetTopRule

#: Every rule, in the order help text and errors list them.
RULE_TYPES: tuple[type[Stage2Rule], ...] = (
    RandomRule,
    CoverageRule,
    QualityTopRule,
    TargetTopRule,
    QuadmixRule,
)
#: The rules' names.
RULES: tuple[str, ...] = tuple(t.name for t in RULE_TYPES)
#: How each rule is written (``quality-top:<p>``), for help text and errors.
USAGE: tuple[str, ...] = tuple(t.usage for t in RULE_TYPES)
_BY_NAME = {t.name: t for t in RULE_TYPES}


def parse_rule(
    spec: str, *, check_files: bool = True, storage: Storage | None = None
) -> Stage2Rule:
    """The rule of ``random``, ``coverage``, ``quality-top:p``, ``target-top:p``
    (``0 < p <= 1``) or ``quadmix[:PATH]`` (name case-insensitive, a path's case kept).

    ``check_files`` checks that a parameter file exists (off to read a saved plan, whose
    allocation no longer needs it), reached with ``storage``.

    Raises:
        InvalidConfigError: an unknown rule or a bad parameter (names ``stage2``).
    """
    text = str(spec).strip()
    head, sep, arg = text.partition(":")
    kind = _BY_NAME.get(head.lower())
    if kind is None:
        raise InvalidConfigError(
            f"unknown Stage-2 rule {spec!r}; valid rules: {', '.join(USAGE)}", key=STAGE2_KEY
        )
    return kind.parse(arg if sep else None, check_files=check_files, storage=storage)


def rules_scoring(score: Score) -> tuple[str, ...]:
    """Names of the rules that rank by ``score``."""
    return tuple(t.name for t in RULE_TYPES if t.score is score)
