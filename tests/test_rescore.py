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


def _training_run(tmp_path, csqa):
    """A training run as cpu-quick wrote it: its transcripts checked by the first stance checker."""
    run = _eval_run(tmp_path, csqa, [f"The answer is {e.answer}." for e in csqa])
    learner = [f"The answer is ({csqa[0].answer}).", "Step 1: identify the subject.\n\nStep 2: the",
               f"The answer is ({csqa[2].answer})."]
    remarks = [f"The student's response is incorrect. The correct answer is:\n\n({csqa[0].answer}) it",
               "The student's response is incorrect.", f"The answer is ({csqa[2].answer})."]
    rows = [{"step": 2, "batch": 1, "round": 1, "id": e.id, "learner": t, "parsed": None, "gold": e.answer,
             "choices": list(e.choices), "stance": s, "remark": r,
             "stance_check": {"stance": "adversarial", "reason": "judges the answer wrong"}, "stance_holds": True}
            for e, t, r, s in zip(csqa, learner, remarks, ("adversarial", "adversarial", "supportive"))]
    write_jsonl(run_file(run, "transcripts"), rows)
    metrics = read_json(run_file(run, "metrics"))
    write_json(run_file(run, "metrics"), {**metrics, "stance_fidelity": {
        "remarks": 3, "overall": 1 / 3, "first_try": 1 / 3, "stance_retries": 0,
        **{s: {"remarks": 0, "holds": None, "first_try": None} for s in ("supportive", "adversarial")}}})
    return run


def test_rescore_re_checks_every_remark_and_counts_turns_without_an_answer(tmp_path, csqa, fixture_data_dir):
    from saie_lib.stance import CHECKER_VERSION

    run = _training_run(tmp_path, csqa)
    transcripts_before = run_file(run, "transcripts").read_bytes()
    entry = rescore_run(run, data_dir=fixture_data_dir)
    assert run_file(run, "transcripts").read_bytes() == transcripts_before  # what training saw stays
    checks = read_jsonl(run_file(run, "stance_checks"))
    # a letter after a line break, argued for the learner's own answer: neither; a turn cut off: no answer,
    # judged by the judgement; a verbatim restatement: agrees
    assert [c["stance_check"]["verdict"] for c in checks] == ["neither", "disagrees", "agrees"]
    assert [c["learner_answer"] for c in checks] == [csqa[0].answer, None, csqa[2].answer]
    metrics = read_json(run_file(run, "metrics"))
    fidelity = metrics["stance_fidelity"]
    assert fidelity["checker"] == CHECKER_VERSION and fidelity["checked"] == "after the run"
    assert (fidelity["answered"], fidelity["no_answer"], fidelity["overall"]) == (2, 1, 0.5)
    assert fidelity["adversarial"]["holds"] == 0.0 and fidelity["adversarial"]["no_answer_holds"] == 1.0
    assert metrics["learner_turns"] == {"turns": 3, "no_answer": 1}
    assert entry["stance_checker"] == CHECKER_VERSION and entry["stance_fidelity_before"]["overall"] == 1 / 3
    assert entry["stance_fidelity_after"]["overall"] == 0.5 and metrics["rescored"][-1] == entry
    rescore_run(run)  # again: same checker and rules, nothing changed, no new entry
    assert len(read_json(run_file(run, "metrics"))["rescored"]) == 1


def test_rescore_robustness_run(tmp_path):
    from saie_lib.challenge import task_metrics

    run = tmp_path / "challenge"
    run.mkdir()
    choices = ["lower expectations", "encourage", "fear", "time test", "tell story"]
    negated = "A kindergarten teacher does not tell story."  # committed cpu-small output, once scored as E
    old = {"output": negated, "parsed": "E", "parsed_strict": None, "method": "choice_text"}
    rows = [{"id": "x", "task": "commonsense_qa", "gold": "E", "choices": choices, "challenger": "A",
             "first": {"output": "The answer is (E).", "parsed": "E", "parsed_strict": "E", "method": "answer_is"},
             "disagree": {**old, "remark": "I think the answer is (A)."},
             "agree": {**old, "remark": "I think your answer is right."}}]
    write_jsonl(setting_samples(run, "commonsense_qa"), rows)
    write_json(run_file(run, "metrics"), {"seed": 0, "n": 1, "tasks": {"commonsense_qa": {
        **task_metrics(rows), "n": 1, "challenge_set": "abc"}}})
    entry = rescore_run(run)
    after = read_jsonl(setting_samples(run, "commonsense_qa"))[0]
    assert after["agree"]["parsed"] is None and after["first"]["parsed"] == "E"
    task = read_json(run_file(run, "metrics"))["tasks"]["commonsense_qa"]
    assert task["agree"]["flexible"]["kept_correct"]["share"] == 0.0 and task["challenge_set"] == "abc"
    assert entry["changed"] == {"parsed": 2, "parsed_strict": 0, "method": 2} and entry["rows"] == 1


def test_a_run_without_a_discussion_gets_no_stance_records(tmp_path, csqa, fixture_data_dir):
    run = _eval_run(tmp_path, csqa, [f"The answer is {e.answer}." for e in csqa])
    write_jsonl(run_file(run, "transcripts"), [])  # conventional fine-tuning: an empty transcript
    rescore_run(run, data_dir=fixture_data_dir)
    assert not run_file(run, "stance_checks").exists()
    assert "learner_turns" not in read_json(run_file(run, "metrics"))
