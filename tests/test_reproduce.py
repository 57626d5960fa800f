"""`make reproduce` on the tiny profile: every experiment notebook and 90_figures_tables run under papermill,
finished experiments are skipped, an unfinished run is redone alone, and the summary comes from run dirs."""

import csv
import json
import re

import pytest

from saie_lib.experiments import CONDITIONS, EXPERIMENTS
from saie_lib.profiles import load_profile
from saie_lib.reproduce import main, reproduce
from saie_lib.summary import INFERENCE_CLAIMS, TRAINING_CLAIMS


@pytest.fixture(scope="module")
def reproduced(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    statuses = reproduce("tiny", data_dir=str(data_dir), results_root=root, progress=False)
    return root, statuses


def outputs(root):
    return {p.relative_to(root): p.read_bytes() for folder in ("tables", "figures") for p in (root / folder).iterdir()}


@pytest.mark.notebooks
@pytest.mark.slow
def test_every_experiment_notebook_runs_and_keeps_its_executed_copy(reproduced):
    root, statuses = reproduced
    assert statuses == {name: "ran" for name in EXPERIMENTS}
    for name, experiment in EXPERIMENTS.items():
        folder = root / "runs" / "tiny" / name
        executed = (folder / experiment.notebook).read_text()
        assert "Traceback" not in executed
        marker = json.loads((folder / "experiment.json").read_text())
        assert list(marker["conditions"]) == sorted(CONDITIONS)
        assert all((folder / run / "metrics.json").is_file() for run in marker["conditions"].values())
    assert "Traceback" not in (root / "runs" / "90_figures_tables.ipynb").read_text()
    log = [json.loads(line) for line in (root / "runs" / "tiny" / "reproduce_log.jsonl").read_text().splitlines()]
    cached = {row["experiment"]: row["remark_cache_entries_at_start"] for row in log}
    assert cached["math"] == 0 and cached["commonsense"] > 0  # a fresh cache, then math's remarks in it


@pytest.mark.notebooks
@pytest.mark.slow
def test_summary_tables_figures_and_readme(reproduced):
    root, _ = reproduced
    table = (root / "tables" / "tiny_conditions.csv").read_text().splitlines()
    assert table[0].startswith("experiment,task,condition,seeds,n,accuracy")
    assert [line.split(",")[2] for line in table[1:1 + len(CONDITIONS)]] == list(CONDITIONS)
    assert len(table) == 1 + 3 * len(CONDITIONS)
    assert {line.split(",")[3] for line in table[1:]} == {str(len(load_profile("tiny").seeds))}  # pooled seeds
    for name in ("tiny_conditions", "tiny_math", "tiny_math_training", "tiny_multiagent"):
        assert (root / "figures" / f"{name}.png").stat().st_size > 1000
    readme = (root / "README.md").read_text()
    assert "## Profile `tiny`" in readme and "Do the paper's findings hold" in readme
    assert "**What these records resolve.**" in readme and "- `tiny`: " in readme
    assert "Final-round votes that needed the seeded tie-break" in readme  # tiny's multi_agent votes
    assert "runs/tiny/commonsense/commonsense_qa-saie-" in readme
    with open(root / "tables" / "tiny_findings.csv", newline="") as handle:
        findings = list(csv.DictReader(handle))
    accuracy = [f for f in findings if f["measure"] == "accuracy"]
    compared = [c for c in TRAINING_CLAIMS if c[0] in CONDITIONS and c[1] in CONDITIONS]  # scripted: not in tiny
    assert len(accuracy) == 3 * len(compared) + 5 * len(INFERENCE_CLAIMS)  # per task; per inference setting
    assert all(float(f["p_holm"]) >= float(f["p_value"]) for f in findings)


@pytest.mark.notebooks
@pytest.mark.slow
def test_second_reproduce_skips_finished_experiments_and_rebuilds_identically(reproduced, data_dir):
    root, _ = reproduced
    before = outputs(root)
    assert main(["--profile", "tiny", "--data-dir", str(data_dir), "--results-root", str(root)]) == 0
    log = [json.loads(line) for line in (root / "runs" / "tiny" / "reproduce_log.jsonl").read_text().splitlines()]
    assert [row["status"] for row in log[-4:]] == ["skipped (all runs finished)"] * 4
    assert outputs(root) == before


@pytest.mark.notebooks
@pytest.mark.slow
def test_force_computes_finished_runs_again(reproduced, data_dir):
    from saie_lib.run_report import finished_runs

    root, _ = reproduced
    folder = root / "runs" / "tiny" / "math"
    before = finished_runs(folder)
    samples = {d.name: (d / "samples.jsonl").read_bytes() for d in before}
    statuses = reproduce("tiny", ["math"], data_dir=str(data_dir), results_root=root, summary=False, force=True,
                         progress=False)
    assert statuses == {"math": "ran"}
    log = [json.loads(line) for line in (root / "runs" / "tiny" / "reproduce_log.jsonl").read_text().splitlines()]
    assert log[-1]["status"] == "ran" and log[-1]["seconds"] > 0
    after = finished_runs(folder)
    assert set(after) == set(before) and all(after[d] != before[d] for d in before)  # every run computed again
    assert {d.name: (d / "samples.jsonl").read_bytes() for d in after} == samples  # deterministic on CPU


@pytest.mark.notebooks
@pytest.mark.slow
def test_an_unfinished_run_is_redone_alone(reproduced, data_dir):
    root, _ = reproduced
    folder = root / "runs" / "tiny" / "multidomain"
    marker = json.loads((folder / "experiment.json").read_text())
    saie_run = folder / marker["conditions"]["saie"]
    (saie_run / "metrics.json").unlink()
    untouched = (folder / marker["conditions"]["none"] / "metrics.json").read_bytes()
    statuses = reproduce("tiny", ["math", "multidomain"], data_dir=str(data_dir), results_root=root, summary=False,
                         progress=False)
    assert statuses == {"math": "skipped", "multidomain": "ran"}
    assert (saie_run / "metrics.json").is_file()
    assert (folder / marker["conditions"]["none"] / "metrics.json").read_bytes() == untouched


@pytest.mark.notebooks
@pytest.mark.slow
def test_two_reproduce_started_at_once_write_every_run_once(reproduced, data_dir, tmp_path):
    """`make reproduce` twice at once on one results folder (real processes): one runs the experiment, the other
    waits for it and skips it as finished; every run's records equal those of the reproduction run alone."""
    import subprocess
    import sys

    from conftest import REPO
    from run_records import run_records

    command = [sys.executable, "-m", "saie_lib.reproduce", "--profile", "tiny", "--experiments", "math",
               "--no-summary", "--data-dir", str(data_dir), "--results-root", str(tmp_path)]
    both = [subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    outputs = [process.communicate(timeout=1200) for process in both]
    assert [p.returncode for p in both] == [0, 0], [error[-2000:] for _, error in outputs]
    assert sorted(out.splitlines()[0] for out, _ in outputs) == ["math: ran", "math: skipped"]
    assert any("experiment " in error and "Waiting for it to finish" in error for _, error in outputs)
    alone, together = (root / "runs" / "tiny" / "math" for root in (reproduced[0], tmp_path))
    marker = json.loads((alone / "experiment.json").read_text())
    assert json.loads((together / "experiment.json").read_text()) == marker
    for seed, runs in marker["seeds"].items():
        for condition, name in runs.items():
            assert run_records(together / name) == run_records(alone / name), (seed, condition)


def test_inference_experiment_needs_its_training_runs(data_dir, tmp_path):
    from saie_lib.experiments import inference_configs
    from saie_lib.profiles import load_profile

    with pytest.raises(RuntimeError, match="11_commonsense_csqa"):
        inference_configs(load_profile("tiny"), data_dir=str(data_dir), results_root=str(tmp_path))


def test_unknown_experiment_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="known experiments"):
        reproduce("tiny", ["math", "chemistry"], results_root=tmp_path)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("lib", ["/opt/lib/libtcmalloc_minimal.so.4", ""])
def test_make_reproduce_preloads_the_allocator_it_is_given(lib):
    import shutil
    import subprocess
    from pathlib import Path

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]
    printed = subprocess.run(["make", "-n", "reproduce", f"MALLOC_LIB={lib}"], cwd=root, capture_output=True,
                             text=True, check=True).stdout
    line = next(text for text in printed.splitlines() if "saie_lib.reproduce" in text)
    assert line.startswith(f"LD_PRELOAD={lib} ") if lib else "LD_PRELOAD" not in line


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_profile_narrows_the_conditions_and_experiments_it_runs(data_dir, tmp_path):
    """`conditions` and `experiments` of a profile: only those are trained, discussed, recorded and tabled."""
    text = (load_profile("tiny").path.read_text().replace("seeds: 2 ", "seeds: 1 ")
            + "conditions: [saie, base, none]\nexperiments: [multiagent, commonsense]\n")
    path = load_profile("tiny").path.with_name("tiny-narrow.yaml")  # notebooks and the page find profiles by name
    path.write_text(text)
    root = tmp_path / "results"
    try:
        statuses = reproduce("tiny-narrow", data_dir=str(data_dir), results_root=root, progress=False)
    finally:
        path.unlink()
    assert statuses == {"commonsense": "ran", "multiagent": "ran"}
    for name in statuses:
        marker = json.loads((root / "runs" / "tiny-narrow" / name / "experiment.json").read_text())
        assert list(marker["conditions"]) == ["base", "none", "saie"]  # the canonical order, whatever the profile's
    assert sorted(p.name for p in (root / "runs" / "tiny-narrow").iterdir() if p.is_dir()) == sorted(statuses)
    page = (root / "README.md").read_text()
    assert "tiny-narrow" in page and "placebo" not in page.split("## Profile `tiny-narrow`")[1]


@pytest.mark.parametrize("line,field", [("conditions: [base, saie]", "lacks ['none']"),
                                        ("conditions: [base, none, saie, sarcastic]", "['sarcastic']"),
                                        ("experiments: [math, chemistry]", "'experiments'")])
def test_a_profile_naming_unknown_or_too_few_conditions_is_refused(tmp_path, line, field):
    path = tmp_path / "bad.yaml"
    path.write_text(load_profile("tiny").path.read_text() + line + "\n")
    with pytest.raises(ValueError, match=re.escape(field)):
        load_profile(str(path))


@pytest.mark.parametrize("target,module", [("demo", "saie_lib.demo"), ("reproduce", "saie_lib.reproduce")])
def test_make_passes_results_root_and_force_and_defaults_to_a_root_of_its_own(target, module):
    """`make demo` / `make reproduce` never write into the committed results/ unless RESULTS_ROOT says so."""
    import shutil
    import subprocess
    from pathlib import Path

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]

    def command(*variables):
        printed = subprocess.run(["make", "-n", target, *variables], cwd=root, capture_output=True, text=True,
                                 check=True).stdout
        return next(text for text in printed.splitlines() if module in text)

    assert "--results-root results-local" in command() and "--force" not in command()
    assert command("RESULTS_ROOT=/tmp/mine", "FORCE=1").endswith("--results-root /tmp/mine --force")
    assert "/results-local/" in (root / ".gitignore").read_text().splitlines()


def test_make_help_lists_the_commands():
    import shutil
    import subprocess
    from pathlib import Path

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "help"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, check=True).stdout
    assert all(f"make {t}" in printed for t in ("demo", "reproduce", "test", "test-fast", "lint", "install"))
    assert "RESULTS_ROOT=" in printed and "FORCE=1" in printed
