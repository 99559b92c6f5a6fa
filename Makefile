# Every target sets itself up: a missing .venv is created and the project installed into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo model bench bench-gpu clean airflow-venv

DEMO_OUT ?= out/demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check s2s_model pipeline s2s_cli tests benchmarks
	$(BIN)/ruff format --check s2s_model pipeline s2s_cli tests benchmarks
	$(BIN)/mypy s2s_model pipeline s2s_cli benchmarks tests

# Airflow 3 for tests/test_airflow.py (the shipped DAG under a real Airflow), in a virtualenv of
# its own, never mixed into .venv; every package pinned in deploy/airflow/requirements-test.txt.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_REQUIREMENTS := deploy/airflow/requirements-test.txt
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): $(AIRFLOW_REQUIREMENTS)
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -r $(AIRFLOW_REQUIREMENTS)
	touch $(AIRFLOW_STAMP)

test: lint $(AIRFLOW_STAMP)
	$(BIN)/pytest -q

# Summarize the bundled sample corpus with the bundled model on the local runner, then show rows.
demo: $(STAMP)
	$(BIN)/s2s summarize 'examples/debian/part-*' --id_field id --output $(DEMO_OUT) --overwrite
	$(BIN)/s2s show $(DEMO_OUT) --limit 8

# Rebuild the bundled model from the Debian corpus (at most 60 minutes on a 2-core CPU).
model: $(STAMP)
	bash recipes/debian-synopsis.sh

# Throughput and memory figures (never part of make test): tables on stdout, JSON and PNG
# under benchmarks/results/<date>/ (one folder per sitting; a second run the same day writes
# name-2.json). OpenNMT-py is timed too when ../shared/anchors/opennmt is set up.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.decode --rounds 2 --opennmt
	$(BIN)/python -m benchmarks.pipeline_bench
	$(BIN)/python -m benchmarks.sweeps
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.host_bench
	$(BIN)/python -m benchmarks.train_budget

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# What only a GPU can show (CUDA vs CPU agreement, bf16, GPU throughput, host syncs, a real
# out-of-memory, training): run on an NVIDIA GPU machine with a CUDA torch, no venv needed.
# Figures go to benchmarks/results/<date>/gpu.json; at most 8 minutes.
bench-gpu:
	PYTHONPATH=. python3 -m benchmarks.gpu
