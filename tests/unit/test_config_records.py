"""A config converts into the library's records once, and no field is lost on the way:
``HermesEstimator.from_config`` and ``HermesModel.with_config``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hermes_spark import RunOptions
from hermes_spark.api import HermesEstimator, HermesModel
from hermes_spark.config import load_config
from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.codebook import fit_codebook
from hermes_spark.quantize.options import QuantizerOptions

MODEL = {"name": "fake", "revision": None, "dim": 8, "max_seq_length": 32, "batch_size": 64}


@pytest.fixture(scope="module")
def cfg():
    base = load_config("cluster-gpu")
    corpus = dataclasses.replace(base.corpus, text_col="body", tokens_col="toks", quality_col="q")
    return dataclasses.replace(base, corpus=corpus)


def test_with_config_carries_every_run_option_of_the_model_section(cfg) -> None:
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    codebook = fit_codebook(x, (4, 3, 2), seed=0, lst_dim=8, model=MODEL, n_iter=5)
    model = HermesModel(codebook).with_config(cfg)
    run_fields = {f.name for f in dataclasses.fields(model.run)}
    # the run record holds nothing the model section cannot set, and takes all of it
    assert run_fields <= {f.name for f in dataclasses.fields(cfg.model)}
    for name in run_fields:
        assert getattr(model.run, name) == getattr(cfg.model, name), name
    assert model.run.batch_size == 512 != HermesModel(codebook).run.batch_size
    assert (model.roles.text_col, model.roles.tokens_col, model.roles.quality_col) == (
        "body",
        "toks",
        "q",
    )
    assert model.codebook is codebook


def test_estimator_from_config_takes_every_field_a_section_names(cfg) -> None:
    est = HermesEstimator.from_config(cfg)
    sections = {"corpus": cfg.corpus, "fit": cfg.fit, "model": cfg.model}
    renamed = {"model": ("model", "name")}
    for f in dataclasses.fields(est):
        section, key = renamed.get(f.name, (None, f.name))
        owners = [s for s in sections.values() if key in {g.name for g in dataclasses.fields(s)}]
        if section:
            owners = [sections[section]]
        if f.name == "quantizer":
            assert est.quantizer == cfg.fit.quantizer_options()
            continue
        if f.name == "run":  # every run-side key of the model section, as one record
            assert est.run == RunOptions.from_config(cfg.model)
            continue
        assert owners, f"estimator field {f.name} has no config key"
        assert getattr(est, f.name) == getattr(owners[0], key), f.name
    assert est.run.batch_size == 512 and est.text_col == "body"
    assert est.model_config() == cfg.model  # the section round-trips through the estimator


def test_the_estimator_takes_its_run_as_one_record() -> None:
    assert HermesEstimator().run.batch_size == 64  # unset: the default batch size
    est = HermesEstimator(run=RunOptions(batch_size=256, device="cpu", sort_window=0))
    assert est.model_config().batch_size == 256 and est.model_config().sort_window == 0
    with pytest.raises(InvalidConfigError, match=r"model\.batch_size"):
        HermesEstimator(run=RunOptions(batch_size=0))  # validated as the config section is
    with pytest.raises(TypeError):
        HermesEstimator(batch_size=256)  # type: ignore[call-arg]  # no second declaration


def _declared(cls: type) -> set[str]:
    """The fields a dataclass declares itself (not those it inherits)."""
    return set(vars(cls).get("__annotations__", {}))


def test_each_run_and_quantizer_field_is_declared_once() -> None:
    from hermes_spark import api, config
    from hermes_spark.coding import RunOptions
    from hermes_spark.embedding import settings

    assert RunOptions is settings.RunOptions  # coding re-exports the one record
    records = [
        c
        for module in (config, settings, api)
        for c in vars(module).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == module.__name__
    ]
    # the executor-side merge (resolved values) and the estimator's flat parameters are
    # not config records
    records = [c for c in records if c not in (settings.ModelSettings, api.HermesEstimator)]
    for record, section in {
        RunOptions: config.ModelConfig,
        QuantizerOptions: config.FitConfig,
    }.items():
        names = {f.name for f in dataclasses.fields(record)}
        assert issubclass(section, record), section  # the section's flat keys are these
        assert names <= {f.name for f in dataclasses.fields(section)}, section
        for other in records:
            if other is not record:
                again = names & _declared(other)
                assert not again, f"{other.__name__} declares {sorted(again)} again"


def test_yaml_run_keys_survive_into_the_estimator_and_the_model(cfg) -> None:
    import yaml

    from hermes_spark.coding import RunOptions
    from hermes_spark.packaged_conf import resolve_config

    raw = yaml.safe_load(resolve_config("cluster-gpu").read_text())["model"]
    run_keys = {f.name for f in dataclasses.fields(RunOptions)}
    assert raw["batch_size"] == 512 and "batch_size" in run_keys
    for key, value in raw.items():  # every key of the file reads into the section as given
        assert getattr(cfg.model, key) == value, key
    run = RunOptions.from_config(cfg.model)
    assert type(run) is RunOptions
    assert {k: getattr(run, k) for k in run_keys} == {k: getattr(cfg.model, k) for k in run_keys}
    est = HermesEstimator.from_config(cfg)
    back = est.model_config()  # the estimator's run fields are the section's again
    for key in run_keys & {f.name for f in dataclasses.fields(est)}:
        assert getattr(back, key) == getattr(cfg.model, key), key
    assert (back.name, back.max_seq_length) == (cfg.model.name, cfg.model.max_seq_length)
    assert est.quantizer == cfg.fit.quantizer_options()
    assert type(est.quantizer) is QuantizerOptions


def test_section_defaults_and_unknown_keys_are_unchanged() -> None:
    from hermes_spark.config import DEFAULT_BATCH_SIZE, FitConfig, ModelConfig, _build

    assert ModelConfig().batch_size == DEFAULT_BATCH_SIZE == 64
    assert ModelConfig(batch_size=None).batch_size == 64  # a section always names one
    assert FitConfig().quantizer_options() == QuantizerOptions()
    assert (
        FitConfig(lst="none").quantizer_options().params() == QuantizerOptions(lst="none").params()
    )
    with pytest.raises(InvalidConfigError, match=r"unknown key\(s\) batch_sise.*batch_size"):
        _build("model", {"batch_sise": 8})
    with pytest.raises(InvalidConfigError, match=r"unknown key\(s\) rotaton.*rotation"):
        _build("fit", {"rotaton": "opq"})
    with pytest.raises(InvalidConfigError, match=r"fit\.rotation"):
        FitConfig(rotation="pq")
    with pytest.raises(InvalidConfigError, match=r"model\.task_cpus"):
        ModelConfig(task_cpus=0)
