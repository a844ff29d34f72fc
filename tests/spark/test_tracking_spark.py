"""MLflow runs of fit, plan, sample, export and evaluate, read back from a real local
tracking store with ``MlflowClient`` (the commands run through the CLI as a user runs
them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_clean_error, run_cli

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A file tracking store under tmp_path (no server), and no inherited run config."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 asks for the opt-in
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    yield uri
    mlflow.set_tracking_uri(None)


def _runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} in {uri}"
    return client, client.search_runs([exp.experiment_id])


def _config(tmp_path, uri: str) -> str:
    path = tmp_path / "mlflow.yaml"
    path.write_text(f"mlflow:\n  tracking_uri: {uri}\n")
    return str(path)


def test_plan_sample_and_export_each_log_a_run(shared_codes, tmp_path, capsys, store):
    data = shared_codes
    common = [
        "--config", _config(tmp_path, store), "--mlflow-experiment", "mix",
        "--table", data["codes"], "--stats", data["stats"], "--budget-tokens", "150000",
        "--weights", "unimax", "--stage2", "coverage", "--max-epochs", "3",
    ]  # fmt: skip
    code, _, err = run_cli(capsys, "plan", *common, "--out", str(tmp_path / "plan.json"))
    assert code == 0, err
    manifest = str(tmp_path / "manifest")
    page = tmp_path / "page.html"
    code, _, err = run_cli(capsys, "sample", *common, "--out", manifest, "--report", str(page))
    assert code == 0, err
    code, _, err = run_cli(
        capsys, "export", "--config", _config(tmp_path, store), "--mlflow-experiment", "mix",
        "--manifest", manifest, "--input", data["corpus"], "--out", str(tmp_path / "train"),
        "--embedding-col", "emb",
    )  # fmt: skip
    assert code == 0, err

    client, runs = _runs(store, "mix")
    by_command = {r.data.tags["hermes.command"]: r for r in runs}
    assert sorted(by_command) == ["export", "plan", "sample"]
    assert all(r.info.status == "FINISHED" for r in runs)

    sample = by_command["sample"]
    assert sample.data.params["weights"] == "unimax"
    assert sample.data.params["stage2"] == "coverage"
    assert float(sample.data.params["budget_tokens"]) == 150_000
    report = json.loads((tmp_path / "manifest_report.json").read_text())
    m = sample.data.metrics
    assert m["realized_tokens"] == pytest.approx(report["totals"]["realized_tokens"])
    assert m["unmet_tokens"] == pytest.approx(report["totals"]["unmet_tokens"])
    level = next(iter(report["entropy_bits"]))
    assert m[f"realized_entropy_bits_{level}"] == pytest.approx(
        report["entropy_bits"][level]["realized"]
    )
    assert m["max_repeats"] >= 1
    names = {a.path for a in client.list_artifacts(sample.info.run_id)}
    assert {"plan.json", "mixture_report.json", "report.html"} <= names
    local = mlflow.artifacts.download_artifacts(
        run_id=sample.info.run_id,
        artifact_path="mixture_report.json",
        tracking_uri=store,
        dst_path=str(tmp_path / "dl"),
    )
    logged = json.loads(Path(local).read_text())
    assert logged["totals"] == report["totals"]

    plan = by_command["plan"]
    assert plan.data.params["codebook_version"] == report["codebook_version"]
    assert "plan.json" in {a.path for a in client.list_artifacts(plan.info.run_id)}

    export = by_command["export"].data.metrics
    assert export["docs"] == report["totals"]["docs"]
    assert export["tokens"] > 0


def test_a_failed_command_is_a_failed_run(shared_codes, tmp_path, capsys, store):
    code, _, err = run_cli(
        capsys, "sample", "--config", _config(tmp_path, store), "--mlflow-experiment", "bad",
        "--table", shared_codes["codes"], "--out", str(tmp_path / "m"),
        "--budget-tokens", "1e15", "--weights", "unimax", "--stage2", "random",
    )  # fmt: skip
    assert code == 2, err
    _, runs = _runs(store, "bad")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_fit_logs_codebook_health_per_level(shared_codes, tmp_path, capsys, store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # the variable alone turns logging on
    code, _, err = run_cli(
        capsys, "fit", "--input", shared_codes["corpus"], "--embedding-col", "emb",
        "--out", str(tmp_path / "cb"), "--levels", "4,3", "--sample-size", "400",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "cb" / "fit_report.json").read_text())
    _, runs = _runs(store, "Default")
    (run,) = runs
    assert run.data.params["fit.levels"] == "4,3"
    assert run.data.params["codebook_version"] == report["codebook_version"]
    for stage in report["stages"]:
        k = stage["level"]
        assert run.data.metrics[f"relative_mse_L{k}"] == pytest.approx(stage["relative_mse"])
        assert run.data.metrics[f"dead_codes_L{k}"] == stage["dead_codes"]


def test_asking_for_mlflow_without_it_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    code, _, err = run_cli(
        capsys, "plan", "--mlflow-experiment", "x", "--stats", str(tmp_path / "nope"),
        "--budget-tokens", "1000",
    )  # fmt: skip
    assert_clean_error(code, err, "mlflow")
