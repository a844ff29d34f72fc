"""fit → annotate → stats → sample through a real Spark Connect server.

The client processes are the ``hermes`` console script with ``--remote sc://…`` (and once
with ``SPARK_REMOTE`` instead) and ``SPARK_HOME`` pointing nowhere, so they cannot start a
JVM of their own: every Spark operation goes over gRPC to the server. The codes and the
manifest must equal those of the same commands on a classic local session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from tests.helpers import run_cli, write_embedded_corpus

pytestmark = [pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
HERMES = Path(sys.executable).parent / "hermes"
CORPUS_FLAGS = ["--embedding-col", "emb", "--tokens-col", "tokens", "--quality-col", "quality"]


def _client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT")}
    env.update(PYTHONPATH=str(REPO), SPARK_HOME="/nonexistent-no-local-jvm", **extra)
    return env


def _hermes(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HERMES), *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


def _table(path: Path, cols: list[str], key: list[str]) -> pd.DataFrame:
    df = DeltaTable(str(path)).to_pandas()[cols]
    return df.sort_values(key).reset_index(drop=True)


def _commands(corpus: Path, root: Path) -> dict[str, list[str]]:
    book = str(root / "codebook")
    return {
        "fit": ["--input", str(corpus), *CORPUS_FLAGS, "--out", book, "--levels", "4,3,2",
                "--sample-size", "300", "--seed", "3"],
        "annotate": ["--input", str(corpus), *CORPUS_FLAGS, "--codebook", book,
                     "--table", str(root / "codes")],
        "stats": ["--table", str(root / "codes"), "--out", str(root / "stats"),
                  "--codebook", book],
        "sample": ["--table", str(root / "codes"), "--out", str(root / "manifest"),
                   "--budget-tokens", "20000", "--weights", "uniform", "--stage2", "coverage",
                   "--seed", "5", "--codebook", book],
    }  # fmt: skip


def test_pipeline_runs_on_spark_connect_like_on_classic_spark(connect_url, spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=400, dim=16, files=2)
    remote = tmp_path / "remote"
    remote.mkdir()
    for name, args in _commands(corpus, remote).items():
        if name == "stats":  # the standard pyspark variable selects Connect too
            done = _hermes([name, *args], _client_env(SPARK_REMOTE=connect_url), remote)
        else:
            done = _hermes([name, "--remote", connect_url, *args], _client_env(), remote)
        logged = done.stdout + done.stderr
        assert done.returncode == 0, f"{name}: {logged[-6000:]}"
        assert f"attached to Spark Connect {connect_url}" in logged, (name, logged[-3000:])
        assert "started Spark" not in logged  # no classic session in the client

    local = tmp_path / "local"
    for name, args in _commands(corpus, local).items():
        code, _, err = run_cli(capsys, name, *args)
        assert code == 0, f"{name}: {err}"

    code_cols = ["doc_id", "c1", "c2", "c3", "n_tokens", "codebook_version"]
    remote_codes = _table(remote / "codes", code_cols, ["doc_id"])
    assert len(remote_codes) == 400 and remote_codes["doc_id"].is_unique
    pd.testing.assert_frame_equal(remote_codes, _table(local / "codes", code_cols, ["doc_id"]))
    stat_cols = ["level", "bucket", "docs", "tokens", "children"]
    pd.testing.assert_frame_equal(
        _table(remote / "stats", stat_cols, ["level", "bucket"]),
        _table(local / "stats", stat_cols, ["level", "bucket"]),
    )
    man_cols = ["doc_id", "stage1_bucket", "stage2_bucket", "repeats", "tokens"]
    remote_manifest = _table(remote / "manifest", man_cols, ["doc_id"])
    realized = remote_manifest["repeats"].mul(remote_manifest["tokens"]).sum()
    assert abs(realized - 20000) <= 4 * 400  # per Stage-1 bucket: within its largest doc
    pd.testing.assert_frame_equal(remote_manifest, _table(local / "manifest", man_cols, ["doc_id"]))
