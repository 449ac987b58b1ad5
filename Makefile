# Two entry points: `make demo` and `make test`. Each builds its own virtual environment on first use.
# A user who already has torch (e.g. a CUDA build) in the Python that runs make keeps it: the venv then
# sees the system site-packages. Otherwise the CPU build torch==2.13.0 is pinned before anything else, so
# that no dependency can pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hydra-wm-installed

.PHONY: demo test lint bench clean

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

lint: $(STAMP)
	$(PY) -m ruff check hydra_wm tests benchmarks scripts

bench: $(STAMP)
	$(PY) benchmarks/dit_forward.py

clean:
	rm -rf $(VENV) .pytest_cache
