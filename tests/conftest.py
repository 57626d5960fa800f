"""Shared fixtures. Two data folders: `data_dir` (the real data when found, else the tiny real-row fixtures in
tests/fixtures/data) for every pipeline test, and `real_data_dir` (skips without the real data) for the few
tests that assert real counts or scan whole real files. Every test runs in an environment cleaned of the
caller's settings (offline switches, SAIE_* variables, API keys), with results and the remark cache in
temporary folders."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"

# Read once, before the environment is cleaned: where the caller keeps the real data and built models.
CALLER_DATA_DIR = os.environ.get("SAIE_DATA_DIR")

# Variables that change what the library does and that no test should inherit from the caller's shell.
# SAIE_TEST_* are switches of the test command itself (e.g. `make test-unsloth`), so they stay.
CLEARED_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENAI_API_KEY",
                     "OPENAI_BASE_URL")
KEPT_SAIE_PREFIX = "SAIE_TEST_"


def find_data_dir() -> Path | None:
    """The original data files: the caller's SAIE_DATA_DIR, else ../shared/data beside the checkout."""
    candidate = Path(CALLER_DATA_DIR or REPO.parent / "shared" / "data")
    return candidate if (candidate / "gsm8k").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A data folder in the real layout: the real data when found, else the tiny fixtures (never skips)."""
    return find_data_dir() or FIXTURE_DATA


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data folder; skips without it. Only for tests of real counts or whole real files."""
    found = find_data_dir()
    if found is None:
        pytest.skip("real data not found: set SAIE_DATA_DIR to the folder holding gsm8k/, commonsense_qa/, mmlu/")
    return found


@pytest.fixture(scope="session")
def fixture_data_dir() -> Path:
    """The tiny fixtures, whether or not the real data is present (tests of the fixtures themselves)."""
    return FIXTURE_DATA


def _caller_models_dir() -> Path:
    from saie_lib.paths import cache_dir

    return cache_dir() / "models"


def _cache_dir_sharing_models(folder: Path, models: Path) -> Path:
    """A fresh SAIE_CACHE_DIR whose models/ is the caller's built-model cache (building SmolLM2's safetensors
    or the tiny model again per test would be slow), while the remark cache (<cache dir>/remarks.sqlite by
    default) is new and empty."""
    models.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models").symlink_to(models, target_is_directory=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def clean_session_environment(tmp_path_factory):
    """Session-wide (so that module- and session-scoped fixtures see it too): no offline switches, API keys or
    SAIE_* settings from the caller; results and the remark cache in temporary folders."""
    models = _caller_models_dir()
    patch = pytest.MonkeyPatch()
    for name in [*CLEARED_VARIABLES, *os.environ]:
        if name in CLEARED_VARIABLES or (name.startswith("SAIE_") and not name.startswith(KEPT_SAIE_PREFIX)):
            patch.delenv(name, raising=False)
    root = tmp_path_factory.mktemp("environment")
    patch.setenv("SAIE_RESULTS_DIR", str(root / "results"))
    patch.setenv("SAIE_CACHE_DIR", str(_cache_dir_sharing_models(root / "cache", models)))
    yield models
    patch.undo()


@pytest.fixture(autouse=True)
def clean_test_environment(clean_session_environment, tmp_path_factory, monkeypatch):
    """Each test: its own results folder and remark cache (the built models stay shared)."""
    root = tmp_path_factory.mktemp("environment")
    monkeypatch.setenv("SAIE_RESULTS_DIR", str(root / "results"))
    monkeypatch.setenv("SAIE_CACHE_DIR", str(_cache_dir_sharing_models(root / "cache", clean_session_environment)))


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer, info) of the random tiny Llama with SmolLM2's tokenizer."""
    from saie_lib.models import load_model

    return load_model("tiny-random-smollm2", device="cpu")
