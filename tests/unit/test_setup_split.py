"""The light setup: `make run` installs the runtime lock and the Delta jars only; the
development lock and the s3a jars come with `make test` (read from make's own plan)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
TEST_ONLY = {"moto", "selenium", "hypothesis", "ruff", "pytest", "venv-pack", "responses"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "-r ")):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _plan(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_only_the_runtime_lock_and_the_delta_jars():
    plan = _plan("run")
    assert "-r requirements.lock" in plan
    assert "requirements-dev.lock" not in plan
    assert re.search(r"setup-jars --role delta\b", plan)
    assert "--role s3" not in plan


def test_make_test_adds_the_development_lock_and_the_s3_jars():
    plan = _plan("test")
    assert "-r requirements-dev.lock" in plan
    assert re.search(r"setup-jars --role delta\b", plan)
    assert re.search(r"setup-jars --role s3\b", plan)


def test_the_runtime_lock_has_no_test_tools_and_the_dev_lock_builds_on_it():
    runtime = _pins(REPO / "requirements.lock")
    dev = _pins(REPO / "requirements-dev.lock")
    assert not TEST_ONLY & set(runtime), TEST_ONLY & set(runtime)
    assert set(dev) >= TEST_ONLY
    assert not set(runtime) & set(dev)  # one pin per package
    assert "-r requirements.lock" in (REPO / "requirements-dev.lock").read_text().splitlines()


def test_the_runtime_lock_pins_every_dependency_a_local_run_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["local"], *extras["demo"]]
    runtime = _pins(REPO / "requirements.lock")
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req.name} is declared but not in requirements.lock"
        assert req.specifier.contains(runtime[name], prereleases=True), (spec, runtime[name])


def test_the_compatibility_tier_runs_on_spark_4_0_with_its_own_delta_jars():
    from hermes_spark.jars import parse_lock

    plan = _plan("test-compat")
    assert "-r requirements-compat.lock" in plan
    assert "HERMES_JARS_LOCK=conf/jars-compat.lock" in plan
    assert ".venv-compat/bin/python -m pytest" in plan
    assert "make test-compat" in (REPO / ".ci" / "run").read_text()
    compat = _pins(REPO / "requirements-compat.lock")
    assert compat["pyspark"].startswith("4.0.")  # Databricks Runtime 17.3 LTS: Spark 4.0
    local = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ranges = {canonicalize_name(Requirement(r).name): Requirement(r) for r in
              local["optional-dependencies"]["local"]}  # fmt: skip
    for name, version in compat.items():
        assert ranges[name].specifier.contains(version), (name, version)
    jars = parse_lock((REPO / "conf" / "jars-compat.lock").read_text())
    spark = next(j for j in jars if j.artifact.startswith("delta-spark"))
    assert spark.artifact == "delta-spark_2.13" and spark.version.startswith("4.0.")
