import importlib.util
import os
from pathlib import Path

# A stray model-hub call must fail fast: tests never download anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = FIXTURES / "hm_world"
ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """A script of the checkout (`scripts/NAME.py`, `benchmarks/NAME.py`: not part of the package) as a module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"_script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is ~2x faster than two on a busy 2-core machine, and results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
