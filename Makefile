# Every target installs what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA_ROOT ?= data
DEVICE    ?= auto
JOBS      ?= 1
RESULTS   ?= results
MATRIX    ?= cpu_mini
ARGS      ?=
RUN = $(PY) -m benchmarks run --data-root $(DATA_ROOT) --results $(RESULTS) --device $(DEVICE) --jobs $(JOBS) $(ARGS)
# Run a matrix, then draw its figures even if some run failed or diverged (exit 1: the
# plots report those runs); stop at once on bad input (exit 2). Keeps the runner's status.
# A dry run (--dry-run in ARGS) trains nothing, so there is nothing to plot: it only prints.
run_and_plot = $(RUN) $(1)$(if $(findstring --dry-run,$(ARGS)),,; s=$$?; [ $$s -eq 2 ] && exit 2; $(PY) -m plots $(1) --results $(RESULTS) || exit $$?; exit $$s)

.PHONY: install test test-slurm reproduce ablation-bank fair smoke cpu-mini plots leaderboard perf gpu-check flops clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# The SLURM launcher against a real single-node SLURM started on localhost for the tests
# (root; installs slurm-wlm and munge when missing). Not part of `make test`.
test-slurm: install
	@tests/slurm/ensure-slurm.sh
	$(PY) -m pytest -q tests/slurm

reproduce: install
	$(call run_and_plot,paper)

ablation-bank: install
	$(call run_and_plot,ablation_bank)

fair: install
	$(call run_and_plot,fair)

smoke: install
	$(PY) -m benchmarks prepare smoke-data --data-root $(DATA_ROOT)
	$(call run_and_plot,smoke)

cpu-mini: install
	$(PY) -m benchmarks prepare cifar10-5k --data-root $(DATA_ROOT)
	$(call run_and_plot,cpu_mini)

plots: install
	$(PY) -m plots $(MATRIX) --results $(RESULTS)

# $(RESULTS)/LEADERBOARD.md and leaderboard.png/.pdf from every matrix with finished runs
leaderboard: install
	$(PY) -m plots leaderboard --results $(RESULTS)

perf: install
	$(PY) -m benchmarks.perf --device $(DEVICE) $(ARGS)

# On a CUDA machine: CUDA-only tests, perf with each knob, one full epoch, matrix estimate
# for 1/2/4 jobs per GPU -> results/gpu-check.md. Without CUDA: one line, exit 2.
gpu-check: install
	$(PY) -m benchmarks.gpu_check --data-root $(DATA_ROOT) $(ARGS)

flops: install
	$(PY) -m benchmarks.flops $(ARGS)

clean-venv:
	rm -rf $(VENV)
