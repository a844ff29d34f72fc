"""Shared fixtures: one local SparkSession per test session, fresh temp paths per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The bulk of the suite commits with the embedded writer (delta-rs): a native Delta commit
# costs seconds of Spark jobs, which over ~200 tests would not fit CI's time. Native Delta
# (the users' default where the jars load) runs in the suites that name it: the two-backend
# contract suite, catalog names, Delta corpora with deletion vectors, and S3.
os.environ.setdefault("HERMES_DELTA_ENGINE", "embedded")

from tests.helpers import SHARED_DATA, shared_corpus  # noqa: F401 (older imports)


@pytest.fixture(scope="session")
def spark():
    """A local[2] session with the production conf of hermes_spark.session."""
    from hermes_spark.session import get_spark

    session = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


#: The tier of each test folder: its tests carry that marker (and may carry more, e.g. a
#: spark test that also loads the model), so ``-m`` selects exactly what a folder holds.
FOLDER_MARKERS = {
    "unit": "unit",
    "spark": "spark",
    "model": "model",
    "cluster": "cluster",
    "connect": "connect",
    "browser": "browser",
    "drills": "drill",
}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test with its folder's tier; a ``model`` test outside tests/model or a
    ``unit`` one outside tests/unit is a collection error (markers match folders)."""
    root = Path(__file__).resolve().parent
    misplaced = []
    for item in items:
        folder = Path(str(item.path)).resolve().relative_to(root).parts[0]
        marker = FOLDER_MARKERS.get(folder)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
        for tier in ("unit",):
            if item.get_closest_marker(tier) and folder != tier:
                misplaced.append(f"{item.nodeid} is marked {tier} but lives in tests/{folder}")
    if misplaced:
        raise pytest.UsageError("\n".join(misplaced))
