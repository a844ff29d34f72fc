"""The sample plan object: a computed two-stage allocation and its JSON form.

Driver only; a plan holds one row per bucket, never a document.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hermes_spark import io
from hermes_spark.errors import InvalidInputError
from hermes_spark.io import jsonable
from hermes_spark.sampling.rules.base import Stage2Rule
from hermes_spark.sampling.rules.registry import parse_rule
from hermes_spark.sampling.weights import format_bucket_key

PLAN_FORMAT = 1
PLAN_KIND = "hermes-sample-plan"


@dataclass(frozen=True)
class SamplePlan:
    """A computed two-stage allocation; JSON round-trips exactly (``save``/``load``).

    ``stage1`` has one row per non-empty level-``w`` bucket (column ``bucket``), ``children``
    one row per non-empty level-``s`` bucket (``parent``, ``child``, pool sizes, ``alloc``,
    ``full_passes``, ``remainder``, ...). ``info`` holds what the report needs besides
    (weights source, unlisted buckets, shortfalls, pool contraction, entropies).
    """

    codebook_version: str
    levels: tuple[int, ...]
    settings: dict[str, Any]
    stage1: pd.DataFrame
    children: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_level(self) -> int:
        """Stage-1 level ``w``."""
        return int(self.settings["weights_level"])

    @property
    def stage2_level(self) -> int:
        """Stage-2 level ``s``."""
        return int(self.settings["stage2_level"])

    @property
    def rule(self) -> tuple[str, float | None]:
        """The parsed Stage-2 rule ``(name, p)``."""
        return self.stage2_rule.as_tuple()

    @property
    def stage2_rule(self) -> Stage2Rule:
        """The Stage-2 rule object (``settings["stage2"]`` keeps the spec as given; a saved
        plan's parameter file need not exist any more)."""
        return parse_rule(self.settings["stage2"], check_files=False)

    @property
    def seed(self) -> int:
        """Seed of ``u = hash(doc_id, seed)``."""
        return int(self.settings["seed"])

    def key(self, bucket: int, level: int) -> str:
        """Written key (``"c1.c2"``) of a packed bucket id."""
        return format_bucket_key(int(bucket), level, self.levels)

    def target_shares(self) -> dict[str, float]:
        """Stage-1 target shares (``T_b / Σ T``, after capping) keyed by bucket key."""
        target = self.stage1.set_index("bucket")["target"]
        total = float(target.sum())
        return {
            self.key(b, self.weights_level): (float(t) / total if total > 0 else 0.0)
            for b, t in target.items()
        }

    def _repr_html_(self) -> str:
        """Notebook view: the settings and the Stage-1 table."""
        from hermes_spark.report.tables import plan_html

        return plan_html(self)

    def with_seed(self, seed: int) -> SamplePlan:
        """The same allocation with another selection seed."""
        return dataclasses.replace(self, settings={**self.settings, "seed": int(seed)})

    def to_json(self) -> str:
        """The plan as JSON (NaN written as null)."""
        doc = {
            "kind": PLAN_KIND,
            "format": PLAN_FORMAT,
            "codebook_version": self.codebook_version,
            "levels": list(self.levels),
            "settings": self.settings,
            "info": self.info,
            "stage1": _records(self.stage1),
            "children": _records(self.children),
        }
        return json.dumps(jsonable(doc), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> SamplePlan:
        """Parse :meth:`to_json` output; InvalidInputError when it is not a plan."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
            raise InvalidInputError(f"{source} is not a hermes sample plan (as hermes plan writes)")
        if doc.get("format") != PLAN_FORMAT:
            raise InvalidInputError(
                f"{source} has plan format {doc.get('format')!r}; this hermes reads "
                f"format {PLAN_FORMAT}: re-run hermes plan"
            )
        try:
            stage1 = pd.DataFrame.from_records(doc["stage1"])
            children = pd.DataFrame.from_records(doc["children"])
            for frame, cols in ((stage1, ("bucket",)), (children, ("parent", "mid", "child"))):
                for col in cols:
                    frame[col] = frame[col].astype(np.int64)
            for col in ("full_passes", "docs", "pool_docs"):
                children[col] = children[col].astype(np.int64)
            for frame in (stage1, children):
                for col in [c for c in frame.columns if frame[c].dtype.kind == "O"]:
                    frame[col] = frame[col].astype(np.float64)  # nulls of numeric columns
            return cls(
                codebook_version=str(doc["codebook_version"]),
                levels=tuple(int(k) for k in doc["levels"]),
                settings=dict(doc["settings"]),
                stage1=stage1,
                children=children,
                info=dict(doc.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{source} is not a valid hermes sample plan: {exc}") from exc

    def save(self, path: str, *, storage: io.Storage | None = None) -> None:
        """Write the plan JSON to any URI (driver)."""
        io.write_text(str(path), self.to_json(), storage=storage)

    @classmethod
    def load(cls, path: str, *, storage: io.Storage | None = None) -> SamplePlan:
        """Read a plan written by :meth:`save` (any URI)."""
        try:
            text = io.read_text(str(path), storage=storage)
        except (OSError, InvalidInputError) as exc:
            raise InvalidInputError(f"cannot read plan {str(path)!r}: {exc}") from exc
        return cls.from_json(text, source=f"plan {str(path)!r}")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    return records
