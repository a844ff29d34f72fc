"""A config converts into the library's records once, and no field is lost on the way:
``HermesEstimator.from_config`` and ``HermesModel.with_config``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hermes_spark.api import HermesEstimator, HermesModel
from hermes_spark.config import load_config
from hermes_spark.quantize.codebook import fit_codebook

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
        assert owners, f"estimator field {f.name} has no config key"
        assert getattr(est, f.name) == getattr(owners[0], key), f.name
    assert est.batch_size == 512 and est.text_col == "body"
