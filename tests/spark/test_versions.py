"""``hermes versions`` / ``--drop`` / ``vacuum`` and version isolation of stats."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from hermes_spark.cli import execute as main
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ["--embedding-col", "emb", "--tokens-col", "tokens"]


def test_two_versions_listed_dropped_and_vacuumed(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "c", n=80, dim=16, files=1)
    table = str(tmp_path / "codes")
    for seed in ("1", "2"):
        assert (
            main(
                [
                    "fit",
                    "--input",
                    str(corpus),
                    *EMB,
                    "--out",
                    str(tmp_path / f"cb{seed}"),
                    "--levels",
                    "4,2",
                    "--seed",
                    seed,
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "annotate",
                    "--input",
                    str(corpus),
                    *EMB,
                    "--codebook",
                    str(tmp_path / f"cb{seed}"),
                    "--table",
                    table,
                    "--mode",
                    "full",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["versions", "--table", table]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == 2 and all(v.startswith("cb-") for v in listed)
    rows = DeltaTable(table).to_pandas()
    assert rows.groupby("codebook_version").size().to_dict() == {v: 80 for v in listed}

    # stats read one version: the latest by default, never a mix
    assert main(["stats", "--table", table, "--out", str(tmp_path / "stats")]) == 0
    stats = DeltaTable(str(tmp_path / "stats")).to_pandas()
    assert stats["codebook_version"].unique().tolist() == [listed[0]]
    assert stats[stats["level"] == 1]["docs"].sum() == 80

    old = listed[1]
    assert main(["versions", "--table", table, "--drop", old]) == 0
    assert f"dropped 80 rows of codebook version {old}" in capsys.readouterr().out
    assert DeltaTable(table).to_pandas()["codebook_version"].unique().tolist() == [listed[0]]
    # the codes table and its siblings: rejects and the ledger of finished files
    tables = [tmp_path / name for name in ("codes", "codes_rejects", "codes_files")]
    assert all((t / "_delta_log").is_dir() for t in tables)

    def on_disk(t: Path) -> int:
        return len(list(t.rglob("*.parquet")))

    before = {t: on_disk(t) for t in tables}
    assert main(["vacuum", "--table", table]) == 0  # default retention: all are too young
    assert "removed 0 unreferenced files" in capsys.readouterr().out
    assert {t: on_disk(t) for t in tables} == before
    assert main(["vacuum", "--table", table, "--retention-hours", "0"]) == 0
    after = {t: on_disk(t) for t in tables}
    removed = sum(before.values()) - sum(after.values())
    assert f"removed {removed} unreferenced files" in capsys.readouterr().out
    # the dropped version's codes and ledger files are gone from disk
    for t in (tables[0], tables[2]):
        assert after[t] < before[t]
    for t in tables:
        assert after[t] == len(DeltaTable(str(t)).file_uris())
    assert len(DeltaTable(table).to_pandas()) == 80
    assert DeltaTable(str(tables[2])).to_pandas()["codebook_version"].tolist() == [listed[0]]

    code = main(["versions", "--table", table, "--drop", old])
    assert code == 2
    assert f"has no codebook version {old}" in capsys.readouterr().err
