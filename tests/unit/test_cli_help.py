"""The CLI a person reads: sections in ``--help``, the defaults of the ``--config`` in
effect, one metavar per concept, and ``--json`` for machines."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from hermes_spark import jars
from hermes_spark.cli import build_parser, execute, jsonable
from hermes_spark.cli.flags import COMMANDS, COMMON, GROUPS
from hermes_spark.config import load_config


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        execute([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_help_shows_flags_in_sections_in_order(capsys):
    text = _help(capsys, "annotate")
    titles = [t for t in GROUPS if f"\n{t}:\n" in text]
    want = ["general", "Spark", "corpus", "model", "tables and output", "command options"]
    assert titles == want
    positions = [text.index(f"\n{t}:\n") for t in titles]
    assert positions == sorted(positions)
    section = text[text.index("\ncorpus:\n") : text.index("\nmodel:\n")]
    assert "--input-table" in section and "--batch-size" not in section
    sample = _help(capsys, "sample")
    rules = sample[sample.index("\ntarget rules:\n") :]
    assert "--target-smoothing" in rules.split("\n\n")[0]


def test_help_defaults_are_those_of_the_config_in_effect(capsys, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("fit:\n  sample_size: 4321\n  levels: [8, 4]\n")
    text = " ".join(_help(capsys, "fit", "--config", str(mine)).split())
    assert "documents to fit on (default: 4321)" in text
    assert "level sizes (default: 8,4)" in text
    builtin = " ".join(_help(capsys, "fit").split())
    assert "(default: 4321)" not in builtin
    assert f"(default: {load_config(None).fit.sample_size})" in builtin


def test_input_help_leaves_catalog_tables_to_input_table(capsys):
    text = _help(capsys, "fit")
    text = " ".join(text[text.index("\ncorpus:\n") :].split())
    line = text[text.index("--input CORPUS") : text.index("--input-table NAME")]
    assert "--input-table" in line and "or a catalog table" not in line


def test_one_metavar_per_concept():
    parser = build_parser()
    seen: dict[str, set[str]] = {}
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in (c.name for c in COMMANDS):
        for action in sub.choices[name]._actions:
            for opt in action.option_strings:
                if opt in ("--codebook", "--manifest", "--table", "--stats"):
                    seen.setdefault(opt, set()).add(action.metavar)
    assert seen["--codebook"] == {"ARTIFACT"}
    assert seen["--manifest"] == {"MANIFEST"}
    assert seen["--table"] == {"CODES"}
    assert seen["--stats"] <= {"STATS", None}  # None: argparse shows STATS


def test_json_is_a_global_flag():
    assert any(f.names == ("--json",) for f in COMMON)


def test_json_prints_the_result_on_stdout_and_the_human_lines_on_stderr(
    tmp_path, monkeypatch, capsys
):
    body = b"delta classes"
    folder = tmp_path / "m2" / "io" / "delta" / "delta-storage" / "9.9.0"
    folder.mkdir(parents=True)
    (folder / "delta-storage-9.9.0.jar").write_bytes(body)
    lock = f"io.delta:delta-storage:9.9.0 {hashlib.sha256(body).hexdigest()} delta\n"
    monkeypatch.setattr(jars, "lock_text", lambda: lock)
    monkeypatch.setenv("HERMES_JARS_DIR", str(tmp_path / "cache"))
    repo = (tmp_path / "m2").as_uri()
    assert execute(["setup-jars", "--json", "--repo", repo]) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["command"] == "setup-jars"
    assert payload["result"]["jars"] == [str(tmp_path / "cache" / "delta-storage-9.9.0.jar")]
    assert "pinned jars" in err and "pinned jars" not in out


def test_json_reports_a_bad_input_as_an_error_object(capsys):
    assert execute(["stats", "--json"]) == 2
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["exit_code"] == 2 and "--table" in payload["error"]
    assert err.startswith("hermes: error:")


def test_jsonable_turns_results_into_json_types():
    @dataclasses.dataclass
    class Result:
        rows: np.int64
        share: np.float32
        files: tuple[str, ...]

    value = jsonable({"r": Result(np.int64(3), np.float32(0.5), ("a",)), "v": np.arange(2)})
    assert json.loads(json.dumps(value)) == {
        "r": {"rows": 3, "share": 0.5, "files": ["a"]},
        "v": [0, 1],
    }
