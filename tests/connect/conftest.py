"""A local Spark Connect server for the tests of this folder (started once, stopped at end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import connect_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    """``sc://127.0.0.1:PORT`` of a Spark Connect server whose Python workers see the checkout."""
    pytest.importorskip("grpc", reason="Spark Connect client needs grpcio (requirements.lock)")
    with connect_server(tmp_path_factory.mktemp("connect"), python_path=str(REPO)) as url:
        yield url
