# Set-up, tests and checks. `make demo` and `make test` are all a new user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-vllm test demo check format test-packages clean

install: $(VENV)/.installed

# torch goes first and pinned: the CPU build on CPU-only machines, the CUDA build on GPU machines.
# Everything else is pinned by constraints.txt so every install resolves the same versions.
# lmms-eval (the VLM capability engine of `vlguard utility`) goes in without its dependency list, which
# pins wandb (protobuf<7) and pulls a torchvision that cannot load beside the CPU torch; vlguard uses
# neither, and the `utility` extra holds what it does use. It goes last: pip then warns about the rest.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,utility]"
	$(PY) -m pip install -q -c constraints.txt --no-deps lmms-eval
	touch $@

# The vllm backend (CUDA GPUs), in its own environment: vLLM 0.33.0 pins torch 2.14.0 and transformers<5.21,
# which constraints.txt excludes, so pip resolves this one from pyproject.toml alone (a CUDA torch, GBs).
VLLM_VENV ?= .venv-vllm
install-vllm:
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[vllm]"

# Debian packages some tests need (Chromium, FreeFont); those tests skip with a reason without them.
test-packages:
	@bash scripts/install_test_packages.sh

test: install test-packages
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/vlguard demo

check: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests bench scripts
	$(VENV)/bin/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
