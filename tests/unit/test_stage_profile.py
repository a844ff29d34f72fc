"""The embedding stage's ResourceProfile: task cores (``model.task_cpus``) on cluster
masters, a GPU share where executors have GPUs, both in one profile; none on ``local``
masters or when no model runs."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from hermes_spark import coding
from hermes_spark.coding import Inputs, RunOptions, stage_profile
from hermes_spark.config import ModelConfig, load_config
from hermes_spark.errors import InvalidConfigError

CLUSTER = "spark://m:7077"


def _frame(master: str, executor_gpus: str | None = None) -> SimpleNamespace:
    conf = {"spark.master": master, "spark.executor.resource.gpu.amount": executor_gpus}
    return SimpleNamespace(sparkSession=SimpleNamespace(conf=SimpleNamespace(get=conf.get)))


def test_cluster_cpu_stage_asks_for_the_task_cores_only():
    profile = stage_profile(_frame(CLUSTER), RunOptions(task_cpus=2), Inputs())
    assert profile.taskResources["cpus"].amount == 2
    assert "gpu" not in profile.taskResources


def test_gpu_and_cores_go_into_one_profile():
    run = RunOptions(task_cpus=4, task_gpu_amount=0.5)
    profile = stage_profile(_frame(CLUSTER, executor_gpus="1"), run, Inputs())
    assert profile.taskResources["cpus"].amount == 4
    assert profile.taskResources["gpu"].amount == 0.5
    gpu_only = stage_profile(_frame(CLUSTER, executor_gpus="1"), RunOptions(), Inputs())
    assert set(gpu_only.taskResources) == {"gpu"}


def test_no_profile_without_cores_or_gpus():
    assert stage_profile(_frame(CLUSTER), RunOptions(), Inputs()) is None


def test_local_master_gets_no_profile_and_says_so_once(caplog):
    coding._note_local_task_cpus.cache_clear()
    with caplog.at_level(logging.INFO, logger="hermes_spark.coding"):
        for _ in range(2):
            assert stage_profile(_frame("local[2]"), RunOptions(task_cpus=2), Inputs()) is None
    noted = [r for r in caplog.records if "task_cpus" in r.getMessage()]
    assert len(noted) == 1 and "cluster masters" in noted[0].getMessage()


def test_given_vectors_and_tokens_run_no_model_and_get_no_profile():
    run = RunOptions(task_cpus=2)
    given = Inputs(embedding=True, tokens=True)
    assert stage_profile(_frame(CLUSTER, executor_gpus="1"), run, given) is None
    # vectors alone: the stage still tokenizes to count tokens, so it keeps the profile
    vectors = stage_profile(_frame(CLUSTER), run, Inputs(embedding=True))
    assert vectors.taskResources["cpus"].amount == 2


@pytest.mark.parametrize("bad", [0, -1, "x", True, 1.5])
def test_task_cpus_must_be_a_positive_integer(bad):
    with pytest.raises(InvalidConfigError, match="positive integer") as err:
        ModelConfig(task_cpus=bad)
    assert "model.task_cpus" in str(err.value)


def test_task_cpus_from_yaml_is_validated_and_carried(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  task_cpus: x\n")
    with pytest.raises(InvalidConfigError, match=r"model\.task_cpus"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  task_cpus: 3\n")
    assert RunOptions.from_config(load_config(good).model).task_cpus == 3
    assert RunOptions.from_config(ModelConfig()).task_cpus is None
