import json

import pytest

from saie_lib.stages import evaluate
from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.config import load_config
from saie_lib.reporting import summary_rows, to_markdown, write_table
from saie_lib.plotting import plot_accuracy


@pytest.fixture
def cfg(data_dir, tmp_path):
    return load_config("eval-tiny", task="commonsense_qa", limit=3, data_dir=str(data_dir), results_root=str(tmp_path))


def test_run_writes_a_complete_record(cfg):
    out = evaluate.run_evaluation(cfg, progress=False)
    metrics = read_json(run_file(out, "metrics"))
    samples = read_jsonl(run_file(out, "samples"))
    env = read_json(run_file(out, "env"))
    config = read_json(run_file(out, "config"))
    assert metrics["n"] == len(samples) == 3
    assert metrics["split"] == "dev" and metrics["model_source"].startswith("tiny-random")
    assert {"id", "prompt_hash", "output", "parsed", "method", "gold", "correct"} <= set(samples[0])
    assert env["prompt_version"] == "1" and env["seed"] == 0 and "git_sha" in env
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
