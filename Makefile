# Two entry points: `make demo` and `make test`. Each builds its own virtual environment on first use;
# `make test-fast` (the suite without its slow tests) and `make lint` (ruff check + format check) are for editing.
# A user who already has torch (e.g. a CUDA build) in the Python that runs make keeps it: the venv then
# sees the system site-packages. Otherwise the CPU build torch==2.13.0 is pinned before anything else, so
# that no dependency can pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hydra-wm-installed
LINTED := hydra_wm tests benchmarks scripts

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
		echo "using the torch already installed for $(PYTHON)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m hydra_wm demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# The suite without the tests marked `slow` (parity runs, the largest end-to-end runs): for the edit-test loop.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

bench: $(STAMP)
	$(PY) benchmarks/dit_forward.py

clean:
	rm -rf $(VENV) .pytest_cache
