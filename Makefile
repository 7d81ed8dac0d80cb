# Every target installs what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA_ROOT ?= data
DEVICE    ?= auto
JOBS      ?= 1
MATRIX    ?= cpu_mini
ARGS      ?=
RUN = $(PY) -m benchmarks run --data-root $(DATA_ROOT) --device $(DEVICE) --jobs $(JOBS) $(ARGS)

.PHONY: install test reproduce ablation-bank fair smoke cpu-mini plots perf clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

reproduce: install
	$(RUN) paper
	$(PY) -m plots paper

ablation-bank: install
	$(RUN) ablation_bank
	$(PY) -m plots ablation_bank

fair: install
	$(RUN) fair
	$(PY) -m plots fair

smoke: install
	$(RUN) smoke
	$(PY) -m plots smoke

cpu-mini: install
	$(PY) -m benchmarks prepare cifar10-5k --data-root $(DATA_ROOT)
	$(RUN) cpu_mini
	$(PY) -m plots cpu_mini

plots: install
	$(PY) -m plots $(MATRIX)

perf: install
	$(PY) -m benchmarks.perf --device $(DEVICE) $(ARGS)

clean-venv:
	rm -rf $(VENV)
