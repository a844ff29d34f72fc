"""Shared fixtures: one local SparkSession per test session, fresh temp paths per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The bulk of the suite commits with the embedded writer (delta-rs): a native Delta commit
# costs seconds of Spark jobs, which over ~200 tests would not fit CI's time. Native Delta
# (the users' default where the jars load) runs in the suites that name it: the two-backend
# contract suite, catalog names, Delta corpora with deletion vectors, and S3.
os.environ.setdefault("HERMES_DELTA_ENGINE", "embedded")

from tests.helpers import SHARED_DATA, shared_corpus  # noqa: F401 (fixtures import it)


@pytest.fixture(scope="session")
def spark():
    """A local[2] session with the production conf of hermes_spark.session."""
    from hermes_spark.session import get_spark

    session = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
