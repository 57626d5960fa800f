"""Re-scoring committed runs with today's parser: rows gain the choices they were scored with, metrics are
recomputed by the functions that wrote them, the run's identity (config.json) is untouched."""

from __future__ import annotations

import json

import pytest

from saie_lib.artifacts import read_json, read_jsonl, run_file, setting_samples, write_json, write_jsonl
from saie_lib.data import load_task
from saie_lib.discussion_analysis import accuracy_by_round
from saie_lib.evaluation import compute_metrics, score_sample
from saie_lib.inference import answer_rows
from saie_lib.parsing import RULES_VERSION
from saie_lib.rescore import main, rescore_run

HEDGE = "1. The answer is A.\n2. The answer is B.\n3. The answer is C.\n4. The answer is D.\n5. The answer is E."


@pytest.fixture()
def csqa(fixture_data_dir):
    return list(load_task("commonsense_qa", "dev", data_dir=fixture_data_dir))[:3]


def _old_rows(examples, outputs):
    """Rows as the first parser wrote them: no choices, and the hedge graded as its last letter."""
    rows = []
    for example, output in zip(examples, outputs):
        row = score_sample(example, "p", output)
        del row["choices"]
        if output == HEDGE:
            correct = example.answer == "E"
            row.update(parsed="E", parsed_strict="E", method="answer_is", correct=correct, correct_strict=correct)
        rows.append(row)
    return rows


def _eval_run(tmp_path, examples, outputs):
    run = tmp_path / "run"
    run.mkdir()
    rows = _old_rows(examples, outputs)
    write_jsonl(run_file(run, "samples"), rows)
    write_json(run_file(run, "metrics"), {**compute_metrics(rows), "task": "commonsense_qa", "split": "dev",
                                          "seed": 0, "run_id": "run"})
    write_json(run_file(run, "config"), {"identity": {"task": "commonsense_qa"}})
    return run


def test_rows_carry_the_choices_they_were_scored_with(csqa):
    assert score_sample(csqa[0], "p", "The answer is A.")["choices"] == list(csqa[0].choices)
    rows = answer_rows("individual", csqa[:1], ["The answer is A."], agent=0, round_index=0)
    assert rows[0]["choices"] == list(csqa[0].choices)


def test_rescore_eval_run(tmp_path, csqa, fixture_data_dir):
    outputs = [HEDGE, f"The answer is {csqa[1].answer}.", f"It is the {csqa[2].choices[0]}."]
    run = _eval_run(tmp_path, csqa, outputs)
    config_before = run_file(run, "config").read_bytes()
    entry = rescore_run(run, data_dir=fixture_data_dir)
    rows = read_jsonl(run_file(run, "samples"))
    assert [r["choices"] for r in rows] == [list(e.choices) for e in csqa]
    assert (rows[0]["parsed"], rows[0]["method"], rows[0]["correct"]) == (None, "conflicting_answers", False)
    assert rows[2]["method"] == "choice_text"  # needed the choices read back from the data files
    metrics = read_json(run_file(run, "metrics"))
    assert {k: metrics[k] for k in compute_metrics(rows)} == compute_metrics(rows)
    assert metrics["invalid_rate_strict"] == pytest.approx(2 / 3)
    assert metrics["run_id"] == "run" and run_file(run, "config").read_bytes() == config_before
    assert entry["parser_rules"] == RULES_VERSION and entry["rows"] == 3
    assert entry["changed"]["parsed_strict"] == 1 and metrics["rescored"] == [entry]
    assert set(entry) >= {"git_sha", "git_dirty", "date"}


def test_rescoring_twice_changes_nothing_more(tmp_path, csqa, fixture_data_dir):
    run = _eval_run(tmp_path, csqa, [HEDGE] * 3)
    rescore_run(run, data_dir=fixture_data_dir)
    first = run_file(run, "metrics").read_text()
    assert rescore_run(run)["changed"] == dict.fromkeys(["parsed_strict", "parsed", "method", "correct_strict",
                                                         "correct"], 0)  # choices stored: no data needed
    assert len(read_json(run_file(run, "metrics"))["rescored"]) == 1
    assert json.loads(first)["accuracy"] == read_json(run_file(run, "metrics"))["accuracy"]


def test_missing_id_or_data_is_a_clear_error(tmp_path, csqa, fixture_data_dir, monkeypatch):
    run = _eval_run(tmp_path, csqa, ["The answer is A."] * 3)
    rows = read_jsonl(run_file(run, "samples"))
    write_jsonl(run_file(run, "samples"), [{**rows[0], "id": "no-such-id"}, *rows[1:]])
    with pytest.raises(ValueError, match="no-such-id"):
        rescore_run(run, data_dir=fixture_data_dir)
    monkeypatch.delenv("SAIE_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="SAIE_DATA_DIR"):
        rescore_run(run)
    with pytest.raises(ValueError, match="finished run"):
        rescore_run(tmp_path)


def test_rescore_inference_run(tmp_path, csqa, fixture_data_dir, capsys):
    run = tmp_path / "inference"
    run.mkdir()
    outputs = [HEDGE, f"The answer is {csqa[1].answer}.", "The answer is\n(A) x\n(B) y"]
    rows = answer_rows("individual", csqa, outputs, agent=0, round_index=0)
    for row in rows:  # as the first parser wrote them: last letter wins, no choices
        del row["choices"]
        row["parsed"] = {HEDGE: "E", outputs[2]: "A"}.get(row["output"], row["parsed"])
    write_jsonl(setting_samples(run, "individual"), rows)
    old = accuracy_by_round(rows)
    write_json(run_file(run, "metrics"), {"task": "commonsense_qa", "seed": 0, "n": 3, "settings": {
        "individual": {"by_round": old, "final": old[-1], "flips": [], "rouge": {"n": 3}}}})
    assert main([str(run), "--data-dir", str(fixture_data_dir)]) == 0
    assert "changed" in capsys.readouterr().out
    metrics = read_json(run_file(run, "metrics"))
    final = metrics["settings"]["individual"]["final"]
    assert final["invalid_rate"] == pytest.approx(2 / 3) and final["accuracy"] == pytest.approx(1 / 3)
    assert metrics["settings"]["individual"]["rouge"] == {"n": 3}
    assert metrics["rescored"][0]["changed"]["parsed"] == sum(o != outputs[1] for o in outputs)
    assert [r["parsed"] for r in read_jsonl(setting_samples(run, "individual"))] == [None, csqa[1].answer, None]
