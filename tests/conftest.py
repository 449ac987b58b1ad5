import os
from pathlib import Path

# A stray model-hub call must fail fast: tests never download anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = FIXTURES / "hm_world"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
