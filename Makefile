# govbank: `make demo` runs the daily job through Airflow on the embedded default
# (SQLite, a local landing folder, demo data); `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv

.PHONY: demo test lint venv bench clean airflow-standalone airflow-stop dashboard

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml tools/govbank_dev/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

venv: $(VENV)/.synced

demo: venv
	scripts/demo.sh

test: venv
	scripts/test.sh

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(VENV)/bin/python bench/bench_ingest.py $(BENCH_ARGS)

clean:
	rm -rf .local test-artifacts

airflow-standalone: venv
	scripts/airflow-standalone.sh

airflow-stop:
	scripts/airflow-stop.sh

dashboard: venv
	bash -c 'source scripts/env.sh && exec python -m govbank.dashboard'
