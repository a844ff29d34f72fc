"""Fixtures shared by the sampling test modules of the Spark tier."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shared_codes(spark, tmp_path_factory) -> dict[str, str]:
    """One synthetic corpus → codebook → codes → stats for the modules that only read it
    (built once per test session: fit + annotate are the slow part)."""
    from tests.helpers import build_codes

    return build_codes(spark, tmp_path_factory.mktemp("shared_codes"))
