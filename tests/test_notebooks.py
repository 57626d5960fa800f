"""Notebooks run end to end under papermill with tiny parameters injected (the small mode lives in the library)."""

import json

import pytest
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


@pytest.mark.notebooks
@pytest.mark.slow
def test_baseline_notebook_runs_on_tiny_model(data_dir, tmp_path):
    import papermill

    papermill.execute_notebook(
        str(REPO / "notebooks" / "01_baseline_eval.ipynb"), str(tmp_path / "out.ipynb"),
        parameters={"recipe": "eval-tiny", "tasks": ["gsm8k", "mmlu"], "limit": 2, "data_dir": str(data_dir),
                    "results_root": str(tmp_path), "study": "smoke"},
        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
    )
    assert (tmp_path / "figures" / "smoke_accuracy.png").stat().st_size > 1000
    table = (tmp_path / "tables" / "smoke_accuracy.csv").read_text().splitlines()
    assert len(table) == 3 and table[1].startswith("gsm8k,test,tiny-random-smollm2")
    assert len(list((tmp_path / "runs" / "smoke").glob("*/metrics.json"))) == 2


@pytest.mark.notebooks
@pytest.mark.slow
def test_training_notebook_runs_on_tiny_model(data_dir, tmp_path):
    import papermill

    papermill.execute_notebook(
        str(REPO / "notebooks" / "02_train_saie.ipynb"), str(tmp_path / "out.ipynb"),
        parameters={"recipe": "train-tiny", "task": "gsm8k", "limit": 6, "eval_limit": 2, "data_dir": str(data_dir),
                    "results_root": str(tmp_path), "study": "smoke"},
        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
    )
    table = (tmp_path / "tables" / "smoke_gsm8k_conditions.csv").read_text().splitlines()
    assert [line.split(",")[3] for line in table[1:]] == ["base", "saie"]
    assert (tmp_path / "figures" / "smoke_gsm8k_saie_training.png").stat().st_size > 1000
    executed = (tmp_path / "out.ipynb").read_text()
    assert "remark" in executed and "Traceback" not in executed


@pytest.mark.notebooks
@pytest.mark.slow
def test_inference_notebook_runs_on_tiny_model(data_dir, tmp_path):
    import papermill

    papermill.execute_notebook(
        str(REPO / "notebooks" / "05_multiagent_inference.ipynb"), str(tmp_path / "out.ipynb"),
        parameters={"model": "tiny-random-smollm2", "task": "mmlu", "limit": 2, "agents": 2, "rounds": 1,
                    "max_new_tokens": 6, "device": "cpu", "data_dir": str(data_dir), "results_root": str(tmp_path),
                    "study": "smoke"},
        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
    )
    table = (tmp_path / "tables" / "smoke_mmlu_settings.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in table[1:]] == ["individual", "self_discussion", "multi_agent",
                                                         "self_consistency", "partner_discussion"]
    assert len(list((tmp_path / "figures").glob("smoke_mmlu_*.png"))) == 1
