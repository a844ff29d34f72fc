"""Test data builders shared by the Spark tests (synthetic corpora with known structure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def clustered_vectors(n: int, dim: int = 32, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres."""
    return labelled_vectors(n, dim, clusters, seed)[0]


def labelled_vectors(
    n: int, dim: int = 32, clusters: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` random centres, with each vector's centre index."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, size=n)
    x = centres[labels] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def write_embedded_corpus(
    path: Path, n: int = 400, dim: int = 32, seed: int = 0, files: int = 2
) -> Path:
    """A Parquet corpus (``id, text, emb, tokens, quality, source, cluster``) over files."""
    x, labels = labelled_vectors(n, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    path.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for f in range(files):
        lo, hi = f * per, min(n, (f + 1) * per)
        table = pa.table(
            {
                "id": [f"doc-{i:05d}" for i in range(lo, hi)],
                "text": [f"document number {i} about topic {i % 7}" for i in range(lo, hi)],
                "emb": pa.array(
                    [list(map(float, v)) for v in x[lo:hi]], type=pa.list_(pa.float32())
                ),
                "tokens": pa.array(rng.integers(20, 400, size=hi - lo), type=pa.int64()),
                "quality": rng.random(hi - lo),
                "source": [f"s{i % 3}" for i in range(lo, hi)],
                "cluster": [f"k{c}" for c in labels[lo:hi]],
            }
        )
        pq.write_table(table, path / f"part-{f:03d}.parquet")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``hermes ARGV`` in-process: exit code, stdout, stderr."""
    from hermes_spark.cli import execute as main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *needles: str) -> str:
    """Exit 2 with one ``hermes: error:`` line holding every needle, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hermes: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
