"""The notebooks' sources stay in step: the three training notebooks are the same cells but for their experiment
(and its introduction), every Colab setup cell is the same cell, and committed notebooks carry no outputs."""

import json

import pytest

from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
TRAINING = ("10_math_gsm8k.ipynb", "11_commonsense_csqa.ipynb", "12_multidomain_mmlu.ipynb")
COLAB_MARK = "google.colab"


def _cells(name):
    return json.loads((NOTEBOOKS / name).read_text())["cells"]


def _source(cell):
    return "".join(cell["source"])


def _without_experiment_name(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith("EXPERIMENT = "))


def test_training_notebooks_differ_only_in_their_experiment():
    first, *others = [_cells(name) for name in TRAINING]
    for name, cells in zip(TRAINING[1:], others):
        assert len(cells) == len(first), name
        for index, (a, b) in enumerate(zip(first[1:], cells[1:]), start=1):  # cell 0 introduces the task
            assert a["cell_type"] == b["cell_type"], f"{name} cell {index}"
            assert _without_experiment_name(_source(a)) == _without_experiment_name(_source(b)), f"{name} cell {index}"


def test_each_training_notebook_names_its_own_experiment():
    from saie_lib.experiments import EXPERIMENTS

    for experiment in EXPERIMENTS.values():
        if experiment.is_training:
            sources = [_source(c) for c in _cells(experiment.notebook)]
            assert any(f'EXPERIMENT = "{experiment.name}"' in s for s in sources), experiment.notebook


def test_colab_setup_cells_are_one_cell():
    setups = {name.name: _source(c) for name in sorted(NOTEBOOKS.glob("*.ipynb")) for c in _cells(name.name)
              if c["cell_type"] == "code" and COLAB_MARK in _source(c)}
    assert len(setups) >= 4, sorted(setups)
    assert len(set(setups.values())) == 1, f"Colab setup cells differ: {sorted(setups)}"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_have_no_outputs(name):
    for cell in _cells(name):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, name
