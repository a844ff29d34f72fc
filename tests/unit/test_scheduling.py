"""The shipped Databricks bundle, Airflow DAG and crontab work as written.

The bundle's artifact build command is run as the bundle runs it (it builds the wheel into
dist/), then every path the bundle names must exist, each task must be a
``python_wheel_task`` whose package and ``hermes`` entry point are in the built wheel, its
runtime must be Spark 4 (17.3 LTS ML GPU or newer), and every task's parameters — like
every Airflow task's and crontab line's arguments — must parse with the CLI and leave no
required flag unset.
"""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hermes_spark.cli import build_parser
from hermes_spark.cli.flags import COMMANDS, needed, overrides
from hermes_spark.config import load_config
from tests.scheduling_defs import (
    CRON_HOME,
    REPO,
    SCHEDULING,
    airflow_tasks,
    bundle,
    crontab_entries,
    crontab_submits,
    job_of,
    substitute,
)

BY_NAME = {c.name: c for c in COMMANDS}


def _check_cli(argv: list[str]) -> object:
    """Parse ``hermes ARGV`` and load its config as main() does; nothing may be missing."""
    args = build_parser().parse_args(argv)
    command = BY_NAME[args.command]
    cfg = load_config(args.config).with_overrides(overrides(command, vars(args)))
    assert needed(command, cfg) == [], (argv, needed(command, cfg))
    return args


@pytest.fixture(scope="module")
def built_bundle() -> dict:
    """The bundle, after running its artifact build command where the bundle runs it."""
    spec = bundle()
    for artifact in spec["artifacts"].values():
        cmd = shlex.split(artifact["build"])
        assert cmd[0] == "python"
        done = subprocess.run(
            [sys.executable, *cmd[1:]],
            cwd=(SCHEDULING / artifact["path"]).resolve(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    return spec


def _tasks(spec: dict) -> list[dict]:
    return [t for job in spec["resources"]["jobs"].values() for t in job["tasks"]]


def test_bundle_has_targets_sync_and_a_spark4_gpu_runtime():
    spec = bundle()
    assert {"dev", "prod"} <= set(spec["targets"])
    assert spec["targets"]["dev"].get("default") is True
    assert spec["targets"]["prod"]["mode"] == "production"
    for path in spec["sync"]["paths"]:
        assert (SCHEDULING / path).resolve() == REPO  # syncs the repository itself
    jobs = spec["resources"]["jobs"]
    assert {"hermes_fit", "hermes_nightly_annotate"} <= set(jobs)
    for job in jobs.values():
        for cluster in job["job_clusters"]:
            version = cluster["new_cluster"]["spark_version"]
            m = re.fullmatch(r"(\d+)\.(\d+)\.x-(?:gpu-ml-)?scala2\.13", version)
            assert m, version
            assert (int(m[1]), int(m[2])) >= (17, 3), version  # Spark 4: 17.3 LTS or newer


def test_every_path_the_bundle_names_exists_in_the_built_bundle(built_bundle):
    for artifact in built_bundle["artifacts"].values():
        assert (SCHEDULING / artifact["path"] / "pyproject.toml").is_file()
    wheels = set()
    for task in _tasks(built_bundle):
        for library in task["libraries"]:
            pattern = (SCHEDULING / library["whl"]).resolve()
            found = sorted(pattern.parent.glob(pattern.name))
            assert len(found) == 1, (library, found)  # exactly the wheel just built
            wheels.add(found[0])
        for key in ("spark_python_task", "notebook_task"):
            if key in task:
                ref = task[key].get("python_file") or task[key]["notebook_path"]
                assert (SCHEDULING / ref).exists(), ref
    (wheel,) = wheels
    with zipfile.ZipFile(wheel) as zf:
        (entry_file,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        dist_name = entry_file.split("-", 1)[0]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(zf.read(entry_file).decode())
        assert "hermes_spark/conf/cluster-gpu.yaml" in zf.namelist()
    for task in _tasks(built_bundle):
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == dist_name
        assert entry_points["console_scripts"][wheel_task["entry_point"]] == "hermes_spark.cli:main"


def test_every_bundle_task_parses_with_the_cli():
    spec = bundle()
    commands = []
    for task in _tasks(spec):
        params = [
            substitute(str(p), spec["variables"]) for p in task["python_wheel_task"]["parameters"]
        ]
        assert "${" not in " ".join(params), params
        args = _check_cli(params)
        assert args.config == "cluster-gpu"
        commands.append(args.command)
        if args.command == "annotate":
            assert args.mode == "incremental"
    assert commands == ["fit", "annotate", "stats", "optimize"]


def test_airflow_dag_runs_real_jobs_with_real_flags(built_bundle):
    tasks = airflow_tasks(hermes_home=REPO)
    assert [t["task_id"] for t in tasks] == ["annotate", "stats", "optimize"]
    for task in tasks:
        application = Path(task["application"])
        assert application.is_file() and application.parent == REPO / "jobs"
        assert Path(task["py_files"]) == REPO / "dist" / "hermes_spark.zip"
        assert Path(task["py_files"]).is_file()  # what make dist (the bundle build) wrote
        args = _check_cli([application.stem, *task["application_args"]])
        assert args.command == task["task_id"]


def test_crontab_entries_are_single_lines_cron_can_run():
    """cron has no continuations and turns an unescaped % into a newline."""
    text = (SCHEDULING / "crontab.example").read_text()
    assert "\\\n" not in text
    entries = crontab_entries()
    assert entries, "no entries"
    for entry in entries:
        assert "%" not in entry, entry
        tokens = shlex.split(entry)
        scripts = [t for t in tokens if t.endswith("scripts/cron_submit.sh")]
        assert scripts and all(t.startswith(CRON_HOME + "/") for t in scripts), entry
        assert all(Path(t).is_absolute() for t in tokens if t.startswith("/")), entry
    script = REPO / "scripts" / "cron_submit.sh"
    assert script.stat().st_mode & 0o111, "cron_submit.sh must be executable"


def test_crontab_runs_real_jobs_with_real_flags():
    submits = crontab_submits()
    assert len(submits) == 3
    for argv in submits:
        command, args, options = job_of(argv)
        assert Path(argv[0]).name == "spark-submit" and Path(argv[0]).is_file()
        assert (REPO / "jobs" / f"{command}.py").is_file()
        assert options[options.index("--py-files") + 1] == str(REPO / "dist" / "hermes_spark.zip")
        _check_cli([command, *args])
    assert [job_of(a)[0] for a in submits] == ["annotate", "stats", "optimize"]


def test_cron_submit_refuses_an_unknown_job_and_missing_spark(tmp_path):
    script = REPO / "scripts" / "cron_submit.sh"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HERMES_HOME": str(REPO)}
    done = subprocess.run(
        ["/bin/sh", str(script), "--dry-run", "nosuchjob"], env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "no job" in done.stderr
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "stats.py").write_text("")
    env["HERMES_HOME"] = str(tmp_path)  # no .venv/bin/spark-submit there
    done = subprocess.run(
        ["/bin/sh", str(script), "--dry-run", "stats"], env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "spark-submit" in done.stderr


def test_airflow_tasks_ship_delta_s3a_jars_and_a_packed_python():
    lock = [line.split() for line in (REPO / "conf" / "jars.lock").read_text().splitlines()]
    pinned = {f"{c.split(':')[1]}-{c.split(':')[2]}.jar" for c, _, _ in
              (row for row in lock if row and not row[0].startswith("#"))}  # fmt: skip
    for task in airflow_tasks(hermes_home=REPO):
        jars = [Path(j) for j in task["jars"].split(",")]
        names = {j.name for j in jars}
        assert names <= pinned, names - pinned
        assert {n.split("-")[0] for n in names} >= {"delta", "hadoop", "bundle"}
        assert any(n.startswith("delta-spark_") for n in names)
        assert all(j.parent == REPO / "build" / "jars" and j.is_file() for j in jars)
        conf = task["conf"]
        assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
        archive, alias = conf["spark.archives"].split("#")
        assert Path(archive).parent == REPO / "dist" and archive.endswith(".tar.gz")
        assert conf["spark.pyspark.python"] == f"./{alias}/bin/python"
