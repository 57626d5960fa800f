import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    """The original data files: env SAIE_DATA_DIR, else ../shared/data beside the checkout."""
    candidate = Path(os.environ.get("SAIE_DATA_DIR") or REPO.parent / "shared" / "data")
    return candidate if (candidate / "gsm8k").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = find_data_dir()
    if found is None:
        pytest.skip("real data not found: set SAIE_DATA_DIR to the folder holding gsm8k/, commonsense_qa/, mmlu/")
    return found


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer, info) of the random tiny Llama with SmolLM2's tokenizer."""
    from saie_lib.models import load_model

    return load_model("tiny-random-smollm2", device="cpu")
