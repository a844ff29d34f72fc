"""Every shipped GPU config leaves the GPU to the embedding stage alone: the stage-level
ResourceProfile switches on and no app-wide task amount hands each stage a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hermes_spark.coding import wants_stage_gpu
from hermes_spark.config import load_config
from hermes_spark.embedding.device import embedding_resource_profile

ROOT = Path(__file__).resolve().parents[2]
TASK = "spark.task.resource.gpu.amount"
EXECUTOR = "spark.executor.resource.gpu.amount"


def _bundle_gpu_clusters() -> list[tuple[str, dict[str, str]]]:
    bundle = yaml.safe_load((ROOT / "conf/scheduling/databricks.yml").read_text())
    out = []
    for name, job in bundle["resources"]["jobs"].items():
        for cluster in job.get("job_clusters", []):
            new = cluster["new_cluster"]
            if "gpu" in new["spark_version"]:
                conf = dict(new.get("spark_conf", {}))
                # a Databricks GPU node type gives executors its GPU; the runtime sets it
                conf.setdefault(EXECUTOR, "1")
                out.append((f"{name}/{cluster['job_cluster_key']}", conf))
    return out


def _shipped() -> list[tuple[str, dict[str, str]]]:
    cfg = load_config("cluster-gpu")
    return [("conf/cluster-gpu.yaml", dict(cfg.spark.conf)), *_bundle_gpu_clusters()]


@pytest.mark.parametrize(("name", "conf"), _shipped(), ids=[n for n, _ in _shipped()])
def test_only_the_embedding_stage_takes_a_gpu(name, conf):
    stage = load_config("cluster-gpu").model.task_gpu_amount
    assert wants_stage_gpu(conf.get(EXECUTOR), conf.get(TASK), "spark://m:7077", stage), name
    profile = embedding_resource_profile(stage)
    assert profile.taskResources["gpu"].amount == stage
    app_wide = conf.get(TASK)  # what every other stage's task asks for
    assert app_wide is None or float(app_wide) < stage, f"{name}: {TASK}={app_wide}"


def test_the_bundle_has_gpu_clusters_to_check():
    assert len(_bundle_gpu_clusters()) >= 2


@pytest.mark.parametrize(
    ("executor", "task", "master", "expected"),
    [
        ("1", None, "spark://m:7077", True),
        ("1", "0.125", "yarn", True),
        ("1", "1", "spark://m:7077", False),  # every stage already holds a GPU
        (None, None, "spark://m:7077", False),  # no executor GPUs
        ("1", None, "local[4]", False),  # local masters have no stage scheduling
    ],
)
def test_wants_stage_gpu(executor, task, master, expected):
    assert wants_stage_gpu(executor, task, master, 1.0) is expected
