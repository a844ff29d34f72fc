"""The catalogue of bad inputs (README "Bad inputs"): each has a clear, tested outcome."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from hermes_spark.cli import execute as main
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ["--embedding-col", "emb", "--tokens-col", "tokens"]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err


def annotate_cli(capsys, corpus, codebook, table, *flags: str) -> tuple[int, str]:
    """``hermes annotate --input CORPUS --codebook CODEBOOK --table TABLE FLAGS``."""
    args = ["--input", str(corpus), "--codebook", str(codebook), "--table", str(table)]
    return run(capsys, "annotate", *args, *flags)


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("hermes: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def codebook(spark, tmp_path_factory):
    """A codebook fitted on 32-dim synthetic vectors."""
    root = tmp_path_factory.mktemp("bad")
    corpus = write_embedded_corpus(root / "corpus", n=120, dim=32, files=1)
    assert (
        main(
            [
                "fit",
                "--input",
                str(corpus),
                *EMB,
                "--out",
                str(root / "cb"),
                "--levels",
                "4,2",
                "--sample-size",
                "120",
            ]
        )
        == 0
    )
    return root / "cb"


def rejects(table) -> dict[str, str]:
    df = DeltaTable(str(table) + "_rejects").to_pandas()
    return dict(zip(df["doc_id"], df["reason"], strict=True))


def test_nan_and_wrong_length_vectors_are_rejected_not_lost(spark, codebook, tmp_path, capsys):
    good = np.full(32, 0.1, dtype=np.float32)
    nan = good.copy()
    nan[3] = np.nan
    inf = good.copy()
    inf[5] = -np.inf
    table = pa.table(
        {
            "id": ["ok", "nan", "inf", "short", "none"],
            "text": ["fine", "has nan", "has inf", "short vec", "no vec"],
            "emb": pa.array(
                [good.tolist(), nan.tolist(), inf.tolist(), [0.1] * 7, None],
                type=pa.list_(pa.float32()),
            ),
            "tokens": pa.array([3, 3, 3, 3, 3], type=pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    code, _ = annotate_cli(
        capsys,
        str(tmp_path / "c.parquet"),
        str(codebook),
        str(tmp_path / "codes"),
        *EMB,
    )
    assert code == 0
    assert DeltaTable(str(tmp_path / "codes")).to_pandas()["doc_id"].tolist() == ["ok"]
    assert rejects(tmp_path / "codes") == {
        "nan": "non_finite_embedding",
        "inf": "non_finite_embedding",
        "short": "wrong_embedding_length",
        "none": "null_embedding",
    }


def test_vectors_of_another_dimension_than_the_codebook(spark, codebook, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "c16", n=20, dim=16, files=1)
    code, err = annotate_cli(
        capsys,
        str(corpus),
        str(codebook),
        str(tmp_path / "codes"),
        *EMB,
    )
    assert code == 2
    assert "fitted on 32-dimensional vectors" in error_line(err)
    assert not (tmp_path / "codes").exists()


def test_table_path_that_is_not_delta(spark, codebook, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "c", n=20, dim=32, files=1)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a table")
    code, err = annotate_cli(
        capsys,
        str(corpus),
        str(codebook),
        str(tmp_path / "plain"),
        *EMB,
    )
    assert code == 2
    assert "is not a Delta table" in error_line(err)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["notes.txt"]


def test_empty_input(spark, codebook, tmp_path, capsys):
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    pq.write_table(empty, tmp_path / "empty.parquet")
    code, err = run(
        capsys, "fit", "--input", str(tmp_path / "empty.parquet"), "--out", str(tmp_path / "cb")
    )
    assert code == 2
    assert "holds no rows" in error_line(err)


def test_json_lines_with_invalid_utf8_and_unparsable_lines(spark, codebook, tmp_path, capsys):
    vec = json.dumps([0.1] * 32)
    lines = [
        f'{{"id": "a", "text": "clean text", "emb": {vec}, "tokens": 2}}'.encode(),
        b'{"id": "b", "text": "caf\xe9 \xff broken bytes", "emb": '
        + vec.encode()
        + b', "tokens": 3}',
        b"this line is not json at all",
    ]
    (tmp_path / "c.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    code, err = annotate_cli(
        capsys,
        str(tmp_path / "c.jsonl"),
        str(codebook),
        str(tmp_path / "codes"),
        "--format",
        "json",
        *EMB,
    )
    assert code == 0, err
    codes = DeltaTable(str(tmp_path / "codes")).to_pandas()
    assert codes["doc_id"].tolist() == ["a"]
    # Spark's JSON parser refuses malformed UTF-8: the line is kept as a reject, by hash
    bad = rejects(tmp_path / "codes")
    assert sorted(bad.values()) == ["unreadable_record", "unreadable_record"]
    assert all(k.startswith("unreadable:") and len(k) == 43 for k in bad)


def test_stats_of_a_version_the_table_does_not_hold(spark, codebook, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "c", n=30, dim=32, files=1)
    assert (
        annotate_cli(
            capsys,
            str(corpus),
            str(codebook),
            str(tmp_path / "codes"),
            *EMB,
        )[0]
        == 0
    )
    code, err = run(
        capsys,
        "stats",
        "--table",
        str(tmp_path / "codes"),
        "--out",
        str(tmp_path / "stats"),
        "--codebook-version",
        "cb-000000000000",
    )
    assert code == 2
    assert "no rows of codebook version cb-000000000000" in error_line(err)


@pytest.mark.model
def test_null_empty_whitespace_and_huge_text_with_the_real_model(spark, tmp_path, capsys):
    huge = ("A long paragraph about river ecology and water quality. " * 18_000)[:1_000_000]
    texts = [
        "Markets rallied after the central bank held rates.",
        None,
        "",
        " \n\t\u00a0 ",
        huge,
        "The striker scored twice in the final minutes.",
    ]
    ids = ["news", "null", "empty", "space", "huge", "sport"]
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "c.parquet")
    flags = ["--input", str(tmp_path / "c.parquet"), "--max-seq-length", "64"]
    code, err = run(
        capsys,
        "fit",
        *flags,
        "--out",
        str(tmp_path / "cb"),
        "--levels",
        "2,2",
        "--sample-size",
        "10",
    )
    assert code == 0, err
    code, err = annotate_cli(
        capsys,
        str(tmp_path / "c.parquet"),
        str(tmp_path / "cb"),
        str(tmp_path / "codes"),
    )
    assert code == 0, err
    codes = DeltaTable(str(tmp_path / "codes")).to_pandas().set_index("doc_id")
    assert sorted(codes.index) == ["huge", "news", "sport"]
    assert rejects(tmp_path / "codes") == {
        "null": "null_text",
        "empty": "empty_text",
        "space": "empty_text",
    }
    # the whole 1 MB text is counted, not just the embedded window
    assert codes.loc["huge", "n_tokens"] > 100_000


def _write_repeating_corpus(root) -> list:
    """Three files (odd names on purpose) that repeat ids within and across files."""
    rng = np.random.default_rng(5)
    files = {
        "0 first%.parquet": [("a", "t"), ("dup", "t"), ("w", " ")],
        "1 second.parquet": [("dup", "t"), ("c", "t"), ("dup", "t"), ("w", "t")],
        "2 third.parquet": [("dup", "t"), ("d", "t")],
    }
    root.mkdir()
    for name, rows in files.items():
        pq.write_table(
            pa.table(
                {
                    "id": [i for i, _ in rows],
                    "text": [t for _, t in rows],
                    "emb": pa.array(
                        rng.normal(size=(len(rows), 32)).tolist(), type=pa.list_(pa.float32())
                    ),
                    "tokens": pa.array([5] * len(rows), type=pa.int64()),
                    "source": [f"{name[0]}-{i}" for i, _ in rows],
                }
            ),
            root / name,
        )
    return list(files)


def test_ids_repeated_across_chunks_keep_the_first_copy_and_reject_the_rest(
    spark, codebook, tmp_path, capsys
):
    names = _write_repeating_corpus(tmp_path / "corpus")
    table = tmp_path / "codes"
    args = [tmp_path / "corpus", codebook, table, *EMB, "--keep-cols", "source"]

    def snapshot():
        codes = DeltaTable(str(table)).to_pandas()
        rej = DeltaTable(f"{table}_rejects").to_pandas()
        rej["file"] = rej["source_file"].str.rsplit("/", n=1).str[-1]
        return (
            dict(zip(codes["doc_id"], codes["source"], strict=True)),
            sorted(zip(rej["doc_id"], rej["reason"], rej["file"], strict=True)),
        )

    assert annotate_cli(capsys, *args, "--files-per-chunk", "1")[0] == 0
    codes, rej = snapshot()
    # each id once, from its first valid copy: "w" is blank in file 0, so file 1's wins
    assert codes == {"a": "0-a", "dup": "0-dup", "w": "1-w", "c": "1-c", "d": "2-d"}
    assert rej == [
        ("dup", "duplicate_doc_id", "1%20second.parquet"),
        ("dup", "duplicate_doc_id", "1%20second.parquet"),
        ("dup", "duplicate_doc_id", "2%20third.parquet"),
        ("w", "empty_text", names[0].replace(" ", "%20").replace("%.", "%25.")),
    ]
    assert len(codes) + len(rej) == 9  # every input row is accounted for
    # the same command again, then another chunking: nothing is annotated or rejected twice
    assert annotate_cli(capsys, *args, "--files-per-chunk", "1")[0] == 0
    assert annotate_cli(capsys, *args, "--files-per-chunk", "2")[0] == 0
    assert snapshot() == (codes, rej)

    # Resumed or incremental: the first file was annotated by an earlier run, the later
    # copies arrive in a new one. The outcome must be the one of a single run.
    later = tmp_path / "later"
    later.mkdir()
    for name in names[1:]:
        (tmp_path / "corpus" / name).rename(later / name)
    table = tmp_path / "codes_incremental"
    args[2] = table
    assert annotate_cli(capsys, *args, "--files-per-chunk", "1")[0] == 0
    for name in names[1:]:
        (later / name).rename(tmp_path / "corpus" / name)
    assert annotate_cli(capsys, *args, "--files-per-chunk", "1")[0] == 0
    assert snapshot() == (codes, rej)

    # Files moved (as compaction does): documents whose annotated row came from a file
    # that is gone are the same documents, not copies. Nothing new is annotated or
    # rejected as a duplicate; only the blank row is recorded again, under its new file.
    moved = "0 moved.parquet"
    (tmp_path / "corpus" / names[0]).rename(tmp_path / "corpus" / moved)
    assert annotate_cli(capsys, *args, "--files-per-chunk", "1")[0] == 0
    assert snapshot() == (codes, sorted([*rej, ("w", "empty_text", "0%20moved.parquet")]))


def test_keep_cols_may_not_shadow_a_codes_column(spark, codebook, tmp_path, capsys):
    _write_repeating_corpus(tmp_path / "corpus")
    code, err = annotate_cli(
        capsys,
        str(tmp_path / "corpus"),
        str(codebook),
        str(tmp_path / "codes"),
        *EMB,
        "--keep-cols",
        "source,tokens,text",
    )
    assert code == 0, err  # tokens and text are corpus columns, not codes columns
    kept = DeltaTable(str(tmp_path / "codes")).to_pandas().set_index("doc_id")
    assert kept.loc["w", "text"] == "t" and kept.loc["a", "source"] == "0-a"
    assert (kept["tokens"] == kept["n_tokens"]).all()
    pq.write_table(pa.table({"id": ["a"], "text": ["t"], "quality": [0.1]}), tmp_path / "q.parquet")
    code, err = annotate_cli(
        capsys,
        str(tmp_path / "q.parquet"),
        str(codebook),
        str(tmp_path / "codes2"),
        "--keep-cols",
        "quality",
    )
    assert code == 2
    assert "--keep-cols quality" in error_line(err)


def test_on_duplicate_error_refuses_before_any_chunk_is_committed(
    spark, codebook, tmp_path, capsys
):
    _write_repeating_corpus(tmp_path / "corpus")
    code, err = annotate_cli(
        capsys,
        str(tmp_path / "corpus"),
        str(codebook),
        str(tmp_path / "codes"),
        *EMB,
        "--files-per-chunk",
        "1",
        "--on-duplicate",
        "error",
    )
    assert code == 2
    assert "'dup' x4" in error_line(err) and "nothing was written" in err
    assert not (tmp_path / "codes").exists()

    # a copy of a document that an earlier run annotated from a file still in the corpus
    later = tmp_path / "later"
    later.mkdir()
    for name in sorted(os.listdir(tmp_path / "corpus"))[1:]:
        (tmp_path / "corpus" / name).rename(later / name)
    args = [tmp_path / "corpus", codebook, tmp_path / "codes", *EMB, "--on-duplicate", "error"]
    args += ["--files-per-chunk", "1"]  # file 0's chunk stays committed, skipped below
    assert annotate_cli(capsys, *args)[0] == 0  # file 0 alone repeats nothing
    version = DeltaTable(str(tmp_path / "codes")).version()
    pq.write_table(pq.read_table(later / "2 third.parquet"), tmp_path / "corpus" / "9.parquet")
    code, err = annotate_cli(capsys, *args)
    assert code == 2
    assert "already annotated" in error_line(err) and "'dup'" in err
    assert DeltaTable(str(tmp_path / "codes")).version() == version  # nothing committed
