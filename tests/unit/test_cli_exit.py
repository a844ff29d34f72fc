"""``hermes_spark.cli:main`` as a Databricks ``python_wheel_task`` calls it: a failure
must raise ``SystemExit`` (the task ignores return values), success must not."""

from __future__ import annotations

import pytest

from hermes_spark.cli import commands, execute, main


def test_bad_input_raises_system_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["stats"])  # no --table: bad input
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "hermes: error:" in err and "Traceback" not in err


def test_unknown_flag_raises_system_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["stats", "--no-such-flag"])
    assert info.value.code == 2


def test_execute_returns_the_code_instead(capsys):
    assert execute(["stats"]) == 2


def test_success_returns_zero_without_raising(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(commands, "cmd_stats", lambda args, cfg: calls.append(args.command))
    out = main(["stats", "--table", str(tmp_path / "codes"), "--out", str(tmp_path / "s")])
    assert out == 0 and calls == ["stats"]


def test_unexpected_failure_raises_system_exit_1(monkeypatch, tmp_path, capsys):
    def boom(args, cfg):
        raise RuntimeError("boom")

    monkeypatch.setattr(commands, "cmd_stats", boom)
    with pytest.raises(SystemExit) as info:
        main(["stats", "--table", str(tmp_path / "codes"), "--out", str(tmp_path / "s")])
    assert info.value.code == 1
