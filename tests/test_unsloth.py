"""The Unsloth learner path. Importing Unsloth patches transformers/TRL for the whole process, so this tier
runs in its own environment: `make test-unsloth` (pytest -m gpu in .venv-unsloth). Skipped unless Unsloth is
installed and CUDA is present (or SAIE_TEST_UNSLOTH_CPU=1 allows Unsloth's CPU fallback)."""

import dataclasses
import importlib.util
import os

import pytest

pytestmark = pytest.mark.gpu


def _unsloth_usable() -> bool:
    import torch

    return importlib.util.find_spec("unsloth") is not None and (
        torch.cuda.is_available() or os.environ.get("SAIE_TEST_UNSLOTH_CPU") == "1")


@pytest.fixture(autouse=True)
def needs_unsloth():
    if not _unsloth_usable():
        pytest.skip("needs Unsloth (pip install -e '.[gpu]') and CUDA, or SAIE_TEST_UNSLOTH_CPU=1")


def test_auto_backend_picks_unsloth_on_cuda():
    from saie_lib.learner import choose_backend

    assert choose_backend("auto", "cuda") == "unsloth"
    assert choose_backend("auto", "cpu") == "peft"


@pytest.mark.slow
def test_unsloth_training_run_end_to_end(data_dir, tmp_path):
    from saie_lib.artifacts import read_json, run_file
    from saie_lib.config import TrainConfig, load_config
    from saie_lib.stages import train as trainer

    cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir), backend="unsloth",
                      device="auto", dtype="auto", results_root=str(tmp_path), remark_cache=str(tmp_path / "r.sqlite"))
    cfg = dataclasses.replace(cfg, model=os.environ.get("SAIE_TEST_UNSLOTH_MODEL", cfg.model))
    metrics = read_json(run_file(trainer.train(cfg, progress=False), "metrics"))
    assert metrics["backend"] == "unsloth" and metrics["steps"] == 7
    assert (run_file(tmp_path / "runs" / "saie" / metrics["run_id"], "adapter") / "adapter_config.json").exists()
