"""Quiet by default: a ``hermes-spark`` run shows hermes' own lines, not Spark's and the
JVM's startup chatter (the packaged log4j2 configuration); the console script sets the
offline and tokenizer variables itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_spark.cli import RUN_ENV, execute
from hermes_spark.session import quiet_log_conf

#: log4j lines (``26/12/02 15:51:30 WARN NativeCodeLoader: ...``) and Spark's own hints.
SPARK_LINE = re.compile(
    r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN)\b|log4j profile|default log level|setLogLevel",
    re.MULTILINE,
)


@pytest.mark.spark
def test_a_cli_run_keeps_spark_startup_lines_off_stderr(tmp_path):
    script = Path(sys.executable).with_name("hermes-spark")
    env = {k: v for k, v in os.environ.items() if k not in RUN_ENV and k != "SPARK_REMOTE"}
    done = subprocess.run(
        [str(script), "versions", "--table", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr  # no such table: a clean error
    assert "started Spark" in done.stderr  # the session did start
    assert not SPARK_LINE.search(done.stderr), done.stderr
    assert "hermes: error: codes table" in done.stderr


def test_the_cli_sets_the_offline_and_tokenizer_variables_itself(monkeypatch, capsys):
    for key in RUN_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the caller's own value stays
    assert execute(["no-such-command"]) == 2
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_the_quiet_config_is_appended_to_the_driver_options_unless_one_is_given():
    conf = quiet_log_conf("-Dderby.system.home=/tmp/derby")
    options = conf["spark.driver.extraJavaOptions"]
    assert options.startswith("-Dderby.system.home=/tmp/derby -Dlog4j.configurationFile=file:")
    path = Path(options.split("file:", 1)[1])
    assert path.name == "log4j2-quiet.properties" and path.is_file()
    assert "rootLogger.level = error" in path.read_text()
    assert quiet_log_conf("-Dlog4j.configurationFile=mine.properties") == {}
