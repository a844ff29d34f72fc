# hermes-spark — every target sets itself up: a fresh clone needs only python3.11 and Java 17.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HERMES := $(VENV)/bin/hermes-spark
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-run jars jars-delta jars-s3 run test test-compat test-unit test-spark \
	test-browser test-fast bench bench-scale lint clean dist env-pack

# Two parts, each with its own stamp: `make run` needs only the runtime (requirements.lock
# and the Delta jars, a few MB); `make test` adds the development lock (moto, selenium,
# hypothesis, ruff, ...) and the s3a jars (~700 MB).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

setup-run: $(RUN_STAMP) jars-delta

setup: $(DEV_STAMP) jars

# JVM jars pinned with sha256 in conf/jars.lock, fetched once by `hermes-spark setup-jars`
# (the command pip users run: it fetches into ~/.cache/hermes-spark/jars instead).
JARS_DIR := build/jars

jars: jars-delta jars-s3

jars-delta: $(JARS_DIR)/.fetched-delta
jars-s3: $(JARS_DIR)/.fetched-s3

$(JARS_DIR)/.fetched-%: conf/jars.lock $(RUN_STAMP)
	$(HERMES) setup-jars --role $* --dir $(JARS_DIR)
	touch $@

$(RUN_STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): requirements-dev.lock $(RUN_STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.lock
	touch $(DEV_STAMP)

run: setup-run
	$(HERMES) run --config conf/demo.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q --durations=30 tests

# Compatibility tier: the API, annotate, stats, sample and export tests on the Spark that
# Databricks Runtime 17.3 LTS ships (pyspark 4.0.1 of requirements-compat.lock, with the
# Delta 4.0 jars of conf/jars-compat.lock). .venv-compat holds only those packages and
# reads everything else from .venv (a .pth file), so it costs one pyspark download.
COMPAT := .venv-compat
COMPAT_STAMP := $(COMPAT)/.installed
COMPAT_JARS := build/jars-compat
COMPAT_TESTS := tests/spark/test_api.py tests/spark/test_annotate_modes.py \
	tests/spark/test_export_spark.py::test_export_rows_equal_sum_of_repeats
COMPAT_ENV := HERMES_JARS_LOCK=conf/jars-compat.lock HERMES_JARS_DIR=$(COMPAT_JARS)

$(COMPAT_STAMP): requirements-compat.lock $(DEV_STAMP)
	test -x $(COMPAT)/bin/python || $(PYTHON) -m venv $(COMPAT)
	$(PY) -c "import site; print('import site; site.addsitedir(%r)' % site.getsitepackages()[0])" \
		> $$($(COMPAT)/bin/python -c "import site; print(site.getsitepackages()[0])")/zz_hermes_base.pth
	$(COMPAT)/bin/python -m pip install --quiet --no-deps -r requirements-compat.lock
	touch $(COMPAT_STAMP)

$(COMPAT_JARS)/.fetched: conf/jars-compat.lock $(RUN_STAMP)
	$(COMPAT_ENV) $(HERMES) setup-jars --role delta --dir $(COMPAT_JARS)
	touch $@

test-compat: $(COMPAT_STAMP) $(COMPAT_JARS)/.fetched
	$(COMPAT_ENV) $(COMPAT)/bin/python -m pytest -q -p no:cacheprovider $(COMPAT_TESTS)

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
dist: $(DEV_STAMP)
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

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(COMPAT) out spark-warehouse .pytest_cache
