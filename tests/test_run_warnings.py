"""Loud degenerate runs (saie_lib.run_warnings): a run in which every answer is invalid, or no remark reached the
learner, finishes with a warning in its metrics, printed in the notebook's output and listed on the results page."""

import pytest

from saie_lib import run_lock
from saie_lib.artifacts import read_json, run_file, write_json
from saie_lib.config import EvalConfig, load_config
from saie_lib.run_warnings import degenerate_warnings

EVAL = {"n": 30, "invalid_rate": 0.2}
INFERENCE = {"n": 10, "settings": {"individual": {"final": {"invalid_rate": 0.1}},
                                   "multi_agent": {"final": {"invalid_rate": 1.0}}}}
CHALLENGE = {"n": 4, "tasks": {"gsm8k": {"n": 4, "adapter": None, **{
    kind: {"flexible": {"invalid": {"share": 1.0}}, "strict": {"invalid": {"share": 1.0}}}
    for kind in ("disagree", "agree")}}}}


@pytest.mark.parametrize("metrics, expected", [
    (EVAL, []),
    ({**EVAL, "invalid_rate": 1.0}, ["every answer was invalid (invalid_rate 1.0 over 30 examples)"]),
    (INFERENCE, ["setting multi_agent: every final-round answer was invalid"]),
    (CHALLENGE, ["task gsm8k: every final answer was invalid"]),
    ({**EVAL, "remark_policy": "saie", "partner": {"remarks": 0}}, ["every remark was empty"]),
    ({**EVAL, "remark_policy": "none", "partner": {"remarks": 0}}, []),  # no partner asked: nothing missing
    ({**EVAL, "remark_policy": "placebo", "partner": {"remarks": 0}}, []),
    ({**EVAL, "remark_policy": "adversarial", "partner": {"remarks": 12}}, []),
], ids=["fine", "all-invalid", "inference-setting", "challenge-task", "no-remark", "none", "placebo", "remarks"])
def test_degenerate_metrics_are_named(metrics, expected):
    found = degenerate_warnings(metrics)
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found))


def test_write_metrics_records_and_prints_the_warning_and_a_reuse_prints_it_again(tmp_path, capsys):
    from saie_lib.stages import open_run, write_metrics

    cfg = EvalConfig(results_root=str(tmp_path))
    out = tmp_path / "runs" / "baseline" / "gsm8k-run"
    assert open_run(out, cfg.identity(), cfg)
    with run_lock.hold(out):  # a run is only ever finished by the process that holds its lock
        write_metrics(out, cfg, {"n": 2, "invalid_rate": 1.0, "accuracy": 0.0})
    assert read_json(run_file(out, "metrics"))["warnings"][0].startswith("every answer was invalid")
    printed = capsys.readouterr().err
    assert printed.startswith("WARNING: run baseline/gsm8k-run: every answer was invalid") and printed.count("\n") == 1
    assert not open_run(out, cfg.identity(), cfg)  # finished: reused, and still loud
    assert capsys.readouterr().err == printed


def test_a_run_with_valid_answers_has_no_warnings_key(tmp_path, capsys):
    from saie_lib.stages import write_metrics

    cfg = EvalConfig(results_root=str(tmp_path))
    with run_lock.hold(tmp_path / "run"):
        write_metrics(tmp_path / "run", cfg, {"n": 2, "invalid_rate": 0.5})
    assert "warnings" not in read_json(run_file(tmp_path / "run", "metrics")) and capsys.readouterr().err == ""


def test_the_results_page_lists_the_warnings(tmp_path):
    from saie_lib.run_warnings import page_lines

    folder = tmp_path / "runs" / "tiny"
    for name, metrics in (("base-run", {"n": 2, "warnings": ["every answer was invalid"]}), ("none-run", {"n": 2})):
        write_json(run_file(folder / name, "metrics"), metrics)
    lines = page_lines([folder / "base-run", folder / "none-run", folder / "base-run", folder / "unfinished"])
    assert lines[0].startswith("**Warnings.**") and lines[2] == "- run tiny/base-run: every answer was invalid"
    assert len(lines) == 4 and page_lines([folder / "none-run"]) == []


@pytest.mark.slow
def test_a_model_whose_every_answer_is_invalid_finishes_loudly(data_dir, tmp_path, capsys):
    """The tiny random model writes no parseable answer: the run finishes (it is not redone), with a warning."""
    from saie_lib.stages.evaluate import run_evaluation

    cfg = load_config("eval-tiny", task="gsm8k", limit=2, data_dir=str(data_dir), results_root=str(tmp_path))
    metrics = read_json(run_file(run_evaluation(cfg, progress=False), "metrics"))
    assert metrics["invalid_rate"] == 1.0 and "every answer was invalid" in metrics["warnings"][0]
    assert "WARNING: run baseline/gsm8k-test-tiny-random-smollm2-" in capsys.readouterr().err
