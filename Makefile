# hermes-spark — every target sets itself up: a fresh clone needs only python3.11 and Java 17.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-unit test-spark test-fast bench bench-scale lint clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/hermes run --config conf/demo.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

# Tiers: unit (no Spark), spark, model (real embedding model), cluster, drills.
test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-spark: $(STAMP)
	$(PY) -m pytest -q tests/spark

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not model and not cluster"

bench: $(STAMP)
	$(PY) bench/bench_annotate.py
	$(PY) bench/bench_rvq.py
	$(PY) bench/bench_sample.py

# Does each job's cost follow its work? SCALE=1 gives the issue's table sizes (docs/scale.md).
SCALE ?= 0.1
bench-scale: $(STAMP)
	$(PY) bench/bench_scale.py --scale $(SCALE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) out spark-warehouse .pytest_cache
