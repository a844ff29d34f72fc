# hermes-spark — every target sets itself up: a fresh clone needs only python3.11 and Java 17.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup jars run test test-unit test-spark test-browser test-fast bench bench-scale lint clean dist env-pack

setup: $(STAMP) jars

# JVM jars (native Delta, s3a) pinned with sha256 in conf/jars.lock, fetched once with mvn.
JARS_DIR := build/jars
JARS_STAMP := $(JARS_DIR)/.fetched

jars: $(JARS_STAMP)

$(JARS_STAMP): conf/jars.lock scripts/fetch_jars.sh
	sh scripts/fetch_jars.sh conf/jars.lock $(JARS_DIR)
	touch $(JARS_STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: setup
	$(VENV)/bin/hermes run --config conf/demo.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

# Tiers: unit (no Spark), spark, model (real embedding model), cluster, drills.
test-unit: setup
	$(PY) -m pytest -q tests/unit

test-spark: setup
	$(PY) -m pytest -q tests/spark

test-browser: setup
	$(PY) -m pytest -q tests/browser

test-fast: setup
	$(PY) -m pytest -q tests -m "not model and not cluster"

bench: setup
	$(PY) bench/bench_annotate.py
	$(PY) bench/bench_gpu.py
	$(PY) bench/bench_rvq.py
	$(PY) bench/bench_sample.py

# The wheel (pip install on nodes / Databricks library) and the --py-files zip, into dist/.
dist: $(STAMP)
	$(PY) scripts/build_dist.py dist

# The executors' Python for spark.archives (conf/scheduling/airflow_dag.py, docs/deploy.md):
# a fresh venv with the wheel and its pinned runtime dependencies, packed by venv-pack into
# dist/hermes_env.tar.gz. Nodes need the same base Python (python3.11) at the same path.
EXEC_VENV := build/exec-venv
env-pack: dist
	rm -rf $(EXEC_VENV) && $(PYTHON) -m venv $(EXEC_VENV)
	$(EXEC_VENV)/bin/pip install --quiet -c requirements.lock dist/hermes_spark-*.whl
	$(VENV)/bin/venv-pack -p $(EXEC_VENV) -o dist/hermes_env.tar.gz --force

# Does each job's cost follow its work? SCALE=1 gives the issue's table sizes (docs/scale.md).
SCALE ?= 0.1
bench-scale: setup
	$(PY) bench/bench_scale.py --scale $(SCALE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out spark-warehouse .pytest_cache
