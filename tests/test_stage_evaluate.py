import csv
import json

import pytest
from conftest import REPO

from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.config import load_config
from saie_lib.plotting import plot_accuracy
from saie_lib.prompts import PROMPT_VERSION
from saie_lib.reporting import SUMMARY_COLUMNS, summary_rows, to_markdown, write_table
from saie_lib.stages import evaluate


@pytest.fixture
def cfg(data_dir, tmp_path):
    return load_config("eval-tiny", task="commonsense_qa", limit=3, data_dir=str(data_dir), results_root=str(tmp_path))


@pytest.mark.slow
def test_run_writes_a_complete_record(cfg):
    out = evaluate.run_evaluation(cfg, progress=False)
    metrics = read_json(run_file(out, "metrics"))
    samples = read_jsonl(run_file(out, "samples"))
    env = read_json(run_file(out, "env"))
    config = read_json(run_file(out, "config"))
    assert metrics["n"] == len(samples) == 3
    assert metrics["split"] == "dev" and metrics["model_source"].startswith("tiny-random")
    assert {"id", "prompt_hash", "output", "parsed", "method", "gold", "correct"} <= set(samples[0])
    assert env["prompt_version"] == PROMPT_VERSION and env["seed"] == 0 and "git_sha" in env
    assert env["data_source"] == config["config"]["data_dir"] == "$SAIE_DATA_DIR"  # portable: no machine path
    assert config["config"]["results_root"] == "." and config["config"]["limit"] == 3
    assert not run_file(out, "samples_partial").exists()


def test_identical_finished_run_is_not_redone(cfg, monkeypatch):
    out = evaluate.run_evaluation(cfg, progress=False)
    before = run_file(out, "metrics").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr("saie_lib.stages.evaluate.evaluate", fail)
    monkeypatch.setattr("saie_lib.models.load_model", fail)
    assert evaluate.run_evaluation(cfg, progress=False) == out
    assert run_file(out, "metrics").stat().st_mtime_ns == before


def test_different_seed_is_a_different_run(cfg):
    import dataclasses

    assert evaluate.eval_run_dir(cfg) != evaluate.eval_run_dir(dataclasses.replace(cfg, seed=1))


@pytest.mark.slow
def test_tables_and_figure_from_run_dirs(cfg, tmp_path):
    runs = evaluate.run_evaluations(cfg, ["gsm8k", "commonsense_qa"], progress=False)
    rows = summary_rows(runs)
    assert [r["task"] for r in rows] == ["gsm8k", "commonsense_qa"]
    csv_path, md_path = write_table(rows, "demo", tmp_path)
    assert csv_path.read_text().splitlines()[0].startswith("task,split,model")
    assert md_path.read_text().count("\n") == 4
    png = plot_accuracy(rows, "demo", results_root=tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "|" in to_markdown([json.loads(json.dumps(r)) for r in rows])


def test_summary_table_of_the_committed_runs(tmp_path):
    """Fast (no model): the committed evaluation and training records, tabulated; every number comes from the
    run's metrics.json, and the CSV and Markdown hold one line per run."""
    runs = sorted(p.parent for p in (REPO / "results" / "runs").rglob("metrics.json")
                  if "settings" not in read_json(p) and "tasks" not in read_json(p))  # inference and robustness
    # runs have their own tables
    assert len(runs) >= 10
    rows = summary_rows(runs)
    for row, run in zip(rows, runs):
        metrics = read_json(run_file(run, "metrics"))
        assert (row["task"], row["n"], row["accuracy"]) == (metrics["task"], metrics["n"], metrics["accuracy"])
        assert row["ci95_low"] <= row["accuracy"] <= row["ci95_high"] and row["run"].endswith(run.name)
    csv_path, md_path = write_table(rows, "committed", tmp_path)
    with csv_path.open() as handle:
        table = list(csv.DictReader(handle))
    assert [list(r) for r in table] == [list(SUMMARY_COLUMNS)] * len(rows)
    assert [r["run"] for r in table] == [r["run"] for r in rows]
    assert md_path.read_text().count("\n") == len(rows) + 2
