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


def _setup_cells():
    return {name.name: _source(c) for name in sorted(NOTEBOOKS.glob("*.ipynb")) for c in _cells(name.name)
            if c["cell_type"] == "code" and COLAB_MARK in _source(c)}


def test_every_notebook_has_one_colab_setup_cell_differing_only_in_needs_gpu():
    setups = _setup_cells()
    assert set(setups) == {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    without = {"\n".join(line for line in text.splitlines() if not line.startswith("NEEDS_GPU = "))
               for text in setups.values()}
    assert len(without) == 1, "Colab setup cells differ beyond NEEDS_GPU"
    for name, text in setups.items():
        assert f"NEEDS_GPU = {name in GPU_NOTEBOOKS}  #" in text, name
        assert "RESULTS_ON_DRIVE = True  #" in text, name  # 13 and 20 need 10-12's adapters: Drive keeps them


def test_colab_setup_cell_explains_an_unreachable_repository(monkeypatch, tmp_path):
    """On Colab (faked), a clone that fails says which fields to check, not a bare CalledProcessError."""
    import subprocess
    import sys
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 128, "", "fatal: repository 'https://github.com/you/your-fork.git/' not found"))
    cell = _setup_cells()["10_math_gsm8k.ipynb"]
    with pytest.raises(RuntimeError, match=r"git clone failed: fatal: repository .* not found\nCheck SAIE_REPO"):
        exec(cell, {})


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_have_no_outputs(name):
    for cell in _cells(name):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, name


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_parameter_guard_lists_exactly_the_notebooks_parameters(name):
    import ast

    import papermill

    guards = [_source(c) for c in _cells(name) if _source(c).startswith("refuse_unknown_parameters(")]
    assert len(guards) == 1, name
    known = ast.literal_eval(ast.parse(guards[0]).body[0].value.keywords[0].value)
    assert tuple(known) == tuple(papermill.inspect_notebook(str(NOTEBOOKS / name)))


def test_guard_refuses_a_misspelt_parameter_and_accepts_the_real_ones():
    from saie_lib.notebook_runner import refuse_unknown_parameters

    before = {"display", "EXPERIMENT"}
    namespace = {**dict.fromkeys(before), "_i3": "", "profile": "x", "data_dir": None, "proflie": "cpu-small"}
    with pytest.raises(ValueError, match=r"\['proflie'\].*\['data_dir', 'profile', 'results_root'\]"):
        refuse_unknown_parameters(namespace, before, ("profile", "data_dir", "results_root"))
    del namespace["proflie"]
    refuse_unknown_parameters(namespace, before, ("profile", "data_dir", "results_root"))


@pytest.mark.notebooks
def test_papermill_run_with_a_misspelt_parameter_fails_naming_it(tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="results_rot"):
        papermill.execute_notebook(str(NOTEBOOKS / "90_figures_tables.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"results_rot": str(tmp_path)}, cwd=str(NOTEBOOKS),
                                   progress_bar=False, kernel_name="python3")


GPU_NOTEBOOKS = ("10_math_gsm8k.ipynb", "11_commonsense_csqa.ipynb", "12_multidomain_mmlu.ipynb",
                 "13_robustness.ipynb", "20_multiagent_inference.ipynb")


def _colab_field(name):
    import re

    setup = next(_source(c) for c in _cells(GPU_NOTEBOOKS[0]) if COLAB_MARK in _source(c))
    return re.search(rf'^{name} = "([^"]+)"', setup, re.M).group(1)


def test_readme_badges_open_the_repository_the_setup_cell_clones():
    import re

    repo = _colab_field("SAIE_REPO").removeprefix("https://github.com/").removesuffix(".git")
    ref = _colab_field("SAIE_REF")
    badges = re.findall(r"colab\.research\.google\.com/github/([^)\s]+?)/blob/([^/]+)/notebooks/(\S+?\.ipynb)",
                        (REPO / "README.md").read_text())
    assert {name for *_, name in badges} == {p.name for p in NOTEBOOKS.glob("*.ipynb")}  # every notebook
    assert {(path, branch) for path, branch, _ in badges} == {(repo, ref)}


@pytest.mark.parametrize("name", GPU_NOTEBOOKS)
def test_gpu_notebooks_ask_colab_for_a_gpu(name):
    metadata = json.loads((NOTEBOOKS / name).read_text())["metadata"]
    assert metadata["accelerator"] == "GPU" and metadata["colab"]["gpuType"]


def test_readme_reads_in_three_minutes():
    """What it is, the paper, the commands, what you get, a picture and where things are come before "Details",
    in under ~1,500 words; the GGUF-dequantised weights are named; LICENSE and CITATION.cff exist."""
    import yaml

    readme = (REPO / "README.md").read_text()
    first = readme.split("\n## Details\n")[0]
    assert len(first.split()) < 1500
    assert "arxiv.org/abs/2311.08107" in first and "![" in first and "## Three commands" in first
    assert "dequantised from its Q4_1 GGUF" in first and "What has run on a GPU" in first
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["license"] == "MIT" and "2311.08107" in str(citation["references"])
    assert "the saie authors" in (REPO / "LICENSE").read_text()
