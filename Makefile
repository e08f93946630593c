# pfn-transformers: `make help` lists the targets.
# TORCH_SPEC is the one place the torch build is chosen: the CPU wheel by default;
# a GPU user sets e.g. `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=
MUTANTS_ARGS ?=
# The peer benchmark's own environment: automl/PFNs never enters .venv or the test suite.
PEER_VENV ?= .venv-peer
PFNS_SPEC ?= pfns==0.4.2

.DEFAULT_GOAL := help
.PHONY: help install docs test test-slow test-all test-cuda test-mutants lint format bench bench-quality bench-user bench-peer bench-ablation bench-openmp bench-step-worth bench-finetune bench-scaling bench-context-split bench-gpu bench-ops bench-paper train clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/pfn: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,docs,launchers,sweeps,export,sklearn]"
	touch $(BIN)/pfn

install: $(BIN)/pfn ## Create .venv and install torch ($(TORCH_SPEC)) and the project, editable, with dev tools, the docs tools, launchers, the Optuna sweeper, ONNX export and scikit-learn

test: $(BIN)/pfn ## Run the default test suite (installs first if needed)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-slow: $(BIN)/pfn ## Run the slow-marked tests (DDP, long training, wheel build)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

test-all: $(BIN)/pfn ## Run every test this machine can, slow ones included (not the cuda ones)
	$(BIN)/pytest -q -m "not cuda" $(PYTEST_ARGS)

test-cuda: $(BIN)/pfn ## Run the cuda-marked tests (a GPU machine, torch with CUDA: see TORCH_SPEC)
	$(BIN)/pytest -q -m cuda $(PYTEST_ARGS)

test-mutants: $(BIN)/pfn ## Mutation check: inject each known break, run the tests aimed at it, fail if one survives
	$(PY) tools/mutation_check.py $(MUTANTS_ARGS)

docs: $(BIN)/pfn ## Build the documentation site (docs/, MkDocs Material) into site/ with --strict; benchmark tables come from benchmarks/results/*.json
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: $(BIN)/pfn ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/pfn ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/pfn ## Speed: train step (fp32/bf16/compiled) vs nn.TransformerEncoder at batch 32 and 512, sampling, end-to-end GP, KV-cached generation, CLI, cached contexts
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_context_cache.py

bench-quality: $(BIN)/pfn ## Quality benchmark: train each task, paired excess NLL against the exact posterior
	$(PY) benchmarks/bench_quality.py

bench-user: $(BIN)/pfn ## Quality through plain user classes (generate only), issue-8 settings, vs exact posteriors
	$(PY) benchmarks/bench_user_priors.py

$(PEER_VENV)/bin/python: pyproject.toml
	test -x $@ || $(PYTHON) -m venv $(PEER_VENV)
	$@ -m pip install -q --upgrade pip
	$@ -m pip install -q $(TORCH_SPEC)
	$@ -m pip install -q $(PFNS_SPEC) -e .
	touch $@

bench-peer: $(PEER_VENV)/bin/python ## Peer benchmark: ours vs automl/PFNs (pfns, pinned in PFNS_SPEC, own .venv-peer) on the same data, equal steps and equal time
	$(PEER_VENV)/bin/python benchmarks/bench_peer.py

bench-scaling: $(PEER_VENV)/bin/python ## Long contexts: step time, datasets/s and peak memory against S (64..2,048) vs nn.TransformerEncoder and automl/PFNs, plus the Figure-4a GP at S=512 (DEVICE=cuda for a GPU)
	$(PEER_VENV)/bin/python benchmarks/bench_scaling.py --quality --device $(or $(DEVICE),cpu)

bench-context-split: $(BIN)/pfn ## context_split "all" (ours) vs "random" (automl/PFNs' recipe) on the GP at S=256 and 1,024, equal wall time
	$(PY) benchmarks/bench_context_split.py

bench-gpu: $(BIN)/pfn ## GPU (about 5 min of one H100/H200): step table eager/compiled with cold and warm compile, end-to-end pfn train, training=gpu after 60/180 s, peer, cost vs S (DEVICE=cpu QUICK=1: the code paths on CPU)
	$(PY) benchmarks/bench_gpu.py --device $(or $(DEVICE),cuda) $(if $(QUICK),--quick)

VARIANTS ?= 1,5
bench-paper: $(BIN)/pfn ## The PFN paper's Figure 4b on CPU: GP with hyperpriors, PFN vs MLE-II vs true hyperparameters vs exact, n = 1..30 (VARIANTS=cond: the conditioned model) -> benchmarks/results/paper.json, paper.png
	$(PY) benchmarks/bench_paper.py --variants $(VARIANTS)

bench-ops: $(BIN)/pfn ## Operators per Example-1 step at batch 4 (the CPU proxy for a launch-bound GPU step): default, adamw and nn.TransformerEncoder, top ops, CPU s/step, and the lean-step commits' ablation
	$(PY) benchmarks/bench_ops.py --ablation

bench-ablation: $(BIN)/pfn ## Ablation of the continuous defaults (MLP decoder, joint encoder, tail floor, Muon), alone and combined, on the same batches
	$(PY) benchmarks/bench_ablation.py

bench-step-worth: $(BIN)/pfn ## Example-1 size: the default recipe against the earlier one at equal wall time (does the slower step pay?)
	$(PY) benchmarks/bench_step_worth.py

bench-openmp: $(BIN)/pfn ## OpenMP waiting policies (the CLI's GOMP_SPINCOUNT vs spin vs passive), idle and with one core busy
	$(PY) benchmarks/bench_openmp.py

bench-finetune: $(BIN)/pfn ## Fine-tuning a linear-prior PFN on the polynomial prior vs training from scratch at the same budget, with forgetting
	$(PY) benchmarks/bench_finetune.py

train: $(BIN)/pfn ## The main job: train the default PFN with the CLI and evaluate it
	$(BIN)/pfn train

clean: ## Remove caches and build output (keeps .venv and outputs/)
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache
