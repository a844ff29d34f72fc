"""The Databricks bundle against the Databricks CLI's own bundle JSON schema, and the
settings a Unity Catalog workspace needs (security mode, schema/volume, run_as, alerts).

The schema fixture is ``bundle/schema/jsonschema.json`` of databricks/cli at commit
7bbe285, four commits after the v1.13.0 tag (what ``databricks bundle schema`` of that
tree prints). ``databricks bundle validate`` runs too when the
CLI is on PATH (docs/deploy.md says how to get it); otherwise that test skips.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.scheduling_defs import SCHEDULING, bundle

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "databricks_bundle_schema.json"


def _schema() -> dict:
    # Go's regexp \p{L} / \p{N} classes, rewritten for Python's re (same sets)
    raw = FIXTURE.read_text()
    raw = raw.replace(r"[\\p{L}\\p{N}]", r"[^\\W_]").replace(r"\\p{L}", r"[^\\W\\d_]")
    return json.loads(raw)


def _leaves(errors) -> list[str]:
    """Every innermost error (a oneOf reports its branches' errors as context)."""
    out = []
    for e in errors:
        out += _leaves(e.context) if e.context else [f"{list(e.absolute_path)}: {e.message[:200]}"]
    return out


def _errors(spec: dict) -> list[str]:
    return _leaves(jsonschema.Draft7Validator(_schema()).iter_errors(spec))


def _clusters(spec: dict) -> dict[str, dict]:
    return {
        f"{name}/{c['job_cluster_key']}": c["new_cluster"]
        for name, job in spec["resources"]["jobs"].items()
        for c in job["job_clusters"]
    }


def test_bundle_matches_the_cli_schema():
    assert _errors(bundle()) == []


def test_the_schema_catches_a_wrong_bundle():
    spec = copy.deepcopy(bundle())
    cluster = spec["resources"]["jobs"]["hermes_fit"]["job_clusters"][0]["new_cluster"]
    cluster["data_security_mode"] = "GPU_FRIENDLY"  # not a mode
    spec["resources"]["jobs"]["hermes_fit"]["max_concurent_runs"] = 1  # typo
    errors = _errors(spec)
    assert any("data_security_mode" in e for e in errors), errors
    assert any("max_concurent_runs" in e for e in errors), errors


def test_every_cluster_has_a_unity_catalog_security_mode():
    for name, cluster in _clusters(bundle()).items():
        mode = cluster.get("data_security_mode")
        assert mode in {"SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED"}, (name, mode)


def test_stats_runs_on_a_cpu_cluster_annotate_on_the_gpu_one():
    job = bundle()["resources"]["jobs"]["hermes_nightly_annotate"]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    by_task = {t["task_key"]: clusters[t["job_cluster_key"]] for t in job["tasks"]}
    assert "-gpu-" in by_task["annotate"]["spark_version"]
    assert "-gpu-" not in by_task["stats"]["spark_version"]


def test_bundle_creates_the_schema_and_volume_its_jobs_write():
    spec = bundle()
    variables = {k: v["default"] for k, v in spec["variables"].items()}
    (schema,) = spec["resources"]["schemas"].values()
    assert schema["name"] == "${var.schema}" and schema["catalog_name"] == "${var.catalog}"
    (volume,) = spec["resources"]["volumes"].values()
    catalog, name = variables["catalog"], variables["schema"]
    assert volume["catalog_name"] == "${var.catalog}"
    assert variables["codebook"].startswith(f"/Volumes/{catalog}/{name}/{volume['name']}/")
    for table in ("codes_table", "stats_table"):
        assert variables[table].startswith(f"{catalog}.{name}."), variables[table]


def test_prod_runs_as_a_principal_and_alerts_on_failure():
    prod = bundle()["targets"]["prod"]
    assert prod["run_as"]["service_principal_name"]
    for name in bundle()["resources"]["jobs"]:
        assert prod["resources"]["jobs"][name]["email_notifications"]["on_failure"], name


@pytest.mark.skipif(
    shutil.which("databricks") is None,
    reason="the Databricks CLI is not on PATH (docs/deploy.md: building it)",
)
def test_databricks_bundle_validate():
    # needs a workspace profile: validate resolves the workspace it deploys to
    done = subprocess.run(
        ["databricks", "bundle", "validate", "-t", "dev", "-o", "json"],
        cwd=SCHEDULING,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
