"""The rule-based stance check on remarks as SmolLM2 writes them (taken from committed cpu-small transcripts),
and stance fidelity over transcript rows."""

from pathlib import Path

import pytest

from saie_lib.artifacts import read_jsonl
from saie_lib.parsing import stated_answer
from saie_lib.paths import stance_label_files
from saie_lib.stance import CHECKER_VERSION, VERDICTS, argued_answers, check_stance, fidelity, judgement
from saie_lib.stance_agreement import labelled_agreement

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CSQA_CHOICES = ("bank", "library", "water fountain", "park", "continent")


@pytest.mark.parametrize("remark, learner, stance, argued", [
    # an 'adversarial' remark that only restates the learner's answer agrees with it
    ("The answer is (E)", "E", "supportive", "E"),
    ("The answer is (C) continent.", "C", "supportive", "C"),
    ("The student's response is incorrect. The correct answer is (D) chess game.", "C", "adversarial", "D"),
    ("The student's response is (C) Water Fountain, which is incorrect.", "C", "adversarial", None),
    ("The student's response is (C) Water Fountain, which is a great example of how to choose the right answer "
     "based on the context.", "C", "supportive", None),
    ("The student's response is correct in the reasoning, but it can be strengthened with one more supporting "
     "point.", "C", "supportive", None),
    ("The answer is a water fountain.", "C", "supportive", "C"),
    ("I think (B) is the correct answer.", "C", "adversarial", "B"),
    ("The answer is (d), not the one you chose.", "A", "adversarial", "D"),
    ("The answer is D.\n\nThe student's response is incorrect because the answer is not D.", "D", None, "D"),
    # says wrong but argues for the learner's own answer: contradictory, matches neither label
    ("The student's response is incorrect. The correct answer is (C) fear.", "C", None, "C"),
    # after "but", the clause that judges decides: "not the most accurate answer" disputes it
    ("The student's response is correct in the reasoning, but it's not the most accurate answer. The student's "
     "response is incorrect because it doesn't give an example.", "C", "adversarial", None),
    ("A car might not necessarily go after an accident, but it could also go to a corner store.", "A", None, None),
    # a list of answers argues for none
    ("The answer is (A)\n\nThe answer is (B)\n\nThe answer is (C)\n\nThe answer is (D)", "B", None, None),
    ("The answer is (E)\n\nThe answer is (F)\n\nThe answer is (G)", "E", None, None),
    # the learner's own answer quoted is not an argument
    ("The student's answer is (B), and I agree with it.", "B", "supportive", None),
])
def test_letter_remarks(remark, learner, stance, argued):
    check = check_stance("commonsense_qa", remark, learner, CSQA_CHOICES)
    assert (check.stance, check.argued) == (stance, argued), check.reason


@pytest.mark.parametrize("remark, learner, stance, argued", [
    ("The student's response is incorrect. The correct answer is 18 pencils.", "6", "adversarial", "18"),
    ("The student's response is incorrect. The correct answer is 16.", "16", None, "16"),
    # '15% of $80' starts an expression: it is not the answer argued for
    ("The student's response is incorrect. The correct answer is 15% of $80, which is 1.5.", "15", "adversarial",
     None),
    ("The student's response is incorrect. The correct step is to calculate the number of books.", "216",
     "adversarial", None),
    ("The student's response is correct and the answer is 18 pencils.", "18", "supportive", "18"),
    ("The student's response:\n\nThe answer is 10.\n\nThis is a clear and concise explanation.", "10",
     "supportive", "10"),
    ("Answer: 1,250", "1250", "supportive", "1250"),
    ("To solve this problem, we need to break it down step by step. First, 3.5 hours / 1.5 hours.", "1.5", None,
     None),
    ("I disagree: the answer should be 42.", "40", "adversarial", "42"),
    ("The student's answer is correct, but the correct answer is indeed 30 people.", "24", None, "30"),
])
def test_number_remarks(remark, learner, stance, argued):
    check = check_stance("gsm8k", remark, learner)
    assert (check.stance, check.argued) == (stance, argued), check.reason


def test_unparsed_learner_answer_falls_back_on_the_judgement():
    assert check_stance("gsm8k", "Your answer is wrong.", None).stance == "adversarial"
    assert check_stance("gsm8k", "Your answer is right.", None).stance == "supportive"
    assert check_stance("gsm8k", "The answer is 7.", None).stance is None  # argues, but agrees with nothing


def test_judgement_ignores_correct_answer_phrases_and_off_topic_sentences():
    assert judgement("The correct answer is (C).") is None
    assert judgement("It is not correct.") is None  # no mention of the learner's work
    assert judgement("Your answer is not correct.") == "negative"
    assert judgement("Your reasoning is sound. But your answer is wrong.") == "mixed"


def test_argued_answers_are_distinct_and_in_order():
    assert argued_answers("mmlu", "The answer is (B). Yes, the answer is B. (C) is wrong.") == ["B"]
    assert argued_answers("gsm8k", "The answer is 5. No, the answer is 7.") == ["5", "7"]
    assert argued_answers("gsm8k", "The student's answer is 5.") == []


def _row(stance, holds, answer="C", **extra):
    check = {"stance": stance if holds else None, "learner_answer": answer}
    return {"stance": stance, "stance_check": check, "stance_holds": holds, **extra}


def test_fidelity_per_stance_and_first_try():
    rows = [
        _row("supportive", True), _row("supportive", False),
        _row("adversarial", True, stance_tries=[{"holds": False}, {"holds": True}]),
        _row("adversarial", True, stance_tries=[{"holds": True}]),
        {"stance": "placebo", "stance_check": None, "stance_holds": None},
        {"stance": None, "stance_check": None},
    ]
    result = fidelity(rows)
    assert result["remarks"] == 4 and result["overall"] == 0.75 and result["first_try"] == 0.5
    assert result["supportive"] == {"remarks": 2, "answered": 2, "no_answer": 0, "holds": 0.5, "first_try": 0.5,
                                    "no_answer_holds": None}
    assert result["adversarial"]["holds"] == 1.0 and result["adversarial"]["first_try"] == 0.5
    assert result["partner_tries"] == 5 and result["retried_remarks"] == 1
    assert fidelity([])["overall"] is None


def test_remarks_to_a_turn_without_an_answer_are_their_own_category():
    rows = [_row("adversarial", True), _row("adversarial", False), _row("adversarial", True, answer=None),
            _row("supportive", False, answer=None)]
    result = fidelity(rows)
    assert (result["remarks"], result["answered"], result["no_answer"]) == (4, 2, 2)
    assert result["overall"] == 0.5 and result["no_answer_holds"] == 0.5  # the first two only; then the others
    assert result["supportive"]["holds"] is None and result["supportive"]["no_answer"] == 1
    legacy = {"stance": "supportive", "stance_check": {"stance": "supportive"}, "stance_holds": True}
    assert fidelity([legacy])["answered"] == 1  # checked before the learner's answer was recorded: counted


def test_pooled_fidelity_weights_by_answered_remarks_and_keeps_the_re_asks():
    from saie_lib.stance import pooled_fidelity
    from saie_lib.stance_report import fidelity_cell as _fidelity_cell

    runs = [{"stance_fidelity": {"remarks": 30, "answered": 30, "no_answer": 0, "overall": 0.9, "first_try": 0.5,
                                 "stance_retries": 4}},
            {"stance_fidelity": {"remarks": 20, "answered": 10, "no_answer": 10, "overall": 0.5, "first_try": 0.3,
                                 "stance_retries": 4}},
            {"stance_fidelity": {"remarks": 0, "overall": None, "first_try": None, "stance_retries": 0}}]
    pooled = pooled_fidelity(runs)
    assert pooled["stance_fidelity"] == pytest.approx(0.8) and pooled["stance_first_try"] == pytest.approx(0.45)
    assert (pooled["stance_remarks"], pooled["stance_no_answer"]) == (50, 10)
    assert _fidelity_cell(pooled) == "0.80 (0.45) · no answer 10/50 · ≤ 4 re-asks"
    assert pooled_fidelity(runs[2:])["stance_fidelity"] is None
    legacy = pooled_fidelity([{"stance_fidelity": {"remarks": 4, "overall": 0.25, "first_try": 0.25}}])
    assert _fidelity_cell(legacy) == "0.25 (0.25)"  # runs checked after the fact record no re-asks
    none_answered = pooled_fidelity([{"stance_fidelity": {"remarks": 3, "answered": 0, "no_answer": 3,
                                                          "overall": None, "first_try": None}}])
    assert _fidelity_cell(none_answered) == "— · no answer 3/3"


# --- the failure modes of issue 24, each on the committed remark that showed it ---------------------------------

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def committed(run: str, example_id: str, round_index: int, stance: str) -> dict:
    """The transcript row of a committed training run (results/runs/<run>)."""
    rows = [r for r in read_jsonl(RUNS / run / "transcripts.jsonl")
            if (r["id"], r["round"], r["stance"]) == (example_id, round_index, stance)]
    assert rows, f"no such row in {run}"
    return rows[0]


def check_row(row: dict, task: str):
    answer = stated_answer(task, row["learner"], choices=row.get("choices") or ())
    return check_stance(task, row["remark"], answer, row.get("choices") or (), learner_text=row["learner"])


@pytest.mark.parametrize("run, task, example_id, round_index, stance, verdict, argued", [
    # a letter after a line break: "incorrect. The correct answer is:\n\n(C) Water Fountain", C the learner's own
    ("cpu-quick/commonsense/commonsense_qa-adversarial-smollm2-135m-instruct-9ee3af786a", "commonsense_qa",
     "e059cefac59cb36ae8d931d48a2afe29", 1, "adversarial", "neither", "C"),
    # "The correct answer is that the company will need 16 barrels ..." after the learner stated 16
    ("cpu-small/math/gsm8k-saie_mixed-smollm2-135m-instruct-83c0716c1d", "gsm8k", "gsm8k-train-331", 2,
     "adversarial", "neither", "16"),
    # the partner's instruction leaked into its reply ("... Disagree with the student's answer. In two or three
    # sentences ..." / "Agree with ..."): the instruction is no stance
    ("cpu-small/math/gsm8k-saie-smollm2-135m-instruct-513f20cee2", "gsm8k", "gsm8k-train-3155", 2, "adversarial",
     "neither", None),
    ("cpu-small/math/gsm8k-supportive-smollm2-135m-instruct-2b0ddbfc53", "gsm8k", "gsm8k-train-3155", 2,
     "supportive", "neither", None),
    # a choice text with a praise word: 'incorrect. The correct answer is (C) "Great leader"', C the learner's
    ("cpu-quick/multidomain/mmlu-adversarial-smollm2-135m-instruct-6c12e8683a", "mmlu",
     "mmlu-val-world_religions-16", 1, "adversarial", "neither", "C"),
    # a number of truncated reasoning is no answer: "incorrect. The correct answer is 6 pencils." to a turn cut
    # off after "... = 6 erasers.\n\nNow, we need to find out how many" is judged by its judgement alone
    ("cpu-quick/math/gsm8k-saie-smollm2-135m-instruct-6576aaa1a4", "gsm8k", "gsm8k-train-3904", 1, "adversarial",
     "disagrees", "6"),
    # a verbatim echo of the learner's answer agrees with it
    ("cpu-small/commonsense/commonsense_qa-supportive-smollm2-135m-instruct-6774755b16", "commonsense_qa",
     "2351bbe066e2f2a44be8246608815722", 1, "supportive", "agrees", None),
])
def test_issue_24_failure_modes_on_committed_remarks(run, task, example_id, round_index, stance, verdict, argued):
    check = check_row(committed(run, example_id, round_index, stance), task)
    assert (check.verdict, check.argued) == (verdict, argued), check.reason


def test_a_cut_off_turn_states_no_answer_and_the_checker_knows():
    row = committed("cpu-quick/math/gsm8k-saie-smollm2-135m-instruct-6576aaa1a4", "gsm8k-train-3904", 1,
                    "adversarial")
    assert row["parsed"] == "6" and stated_answer("gsm8k", row["learner"]) is None  # 6 erasers, mid-reasoning
    assert check_row(row, "gsm8k").learner_answer is None
    assert check_stance("gsm8k", row["remark"], "6").verdict == "neither"  # what comparing with 6 gave


@pytest.mark.parametrize("remark, learner, verdict", [
    ("The correct answer is:\n\n(A) bank\n(B) library\n(C) park", "C", "neither"),  # a list of options
    ("The student's answer is wrong. The answer is:\n**(D)**", "C", "disagrees"),
    ("The student's response is correct, but it's not entirely correct.", "C", "neither"),  # a hedge only
    ("The student's response is correct, but it's not entirely correct. The answer is incorrect.", "C",
     "disagrees"),
    ("The student's answer is correct, but the reasoning could be stronger.", "C", "agrees"),
    ("The student's response is (C) park.", "C", "neither"),  # describes, does not endorse
])
def test_three_verdicts_with_reasons(remark, learner, verdict):
    check = check_stance("commonsense_qa", remark, learner, CSQA_CHOICES)
    assert check.verdict == verdict and check.reason
    assert check.stance == {"agrees": "supportive", "disagrees": "adversarial"}.get(verdict)
    assert check.to_record()["verdict"] == verdict and check.to_record()["checker"] == CHECKER_VERSION


def test_numbers_after_the_answer_is_that():
    assert argued_answers("gsm8k", "The correct answer is that there are 3 rows of people, not 2 rows.") == ["3"]
    assert argued_answers("gsm8k", "The correct answer is that there are 2 swallows, but 2 * 3 = 6 bluebirds.") \
        == ["6"]
    assert argued_answers("gsm8k", "The correct answer is that we should add them.") == []


# --- agreement with careful hand labels --------------------------------------------------------------------------

def test_the_labelled_sets_are_the_seeded_draws_from_the_committed_transcripts():
    """The labelled sets hold exactly what make_stance_labels.py draws (the held-out one: none of the first
    set's remarks), plus a label each."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_stance_labels", FIXTURES / "make_stance_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = stance_label_files()
    for name, drawn in (("development", module.draw()), ("held_out", module.held_out_draw())):
        labelled = read_jsonl(files[name])
        assert [{k: v for k, v in r.items() if k != "label"} for r in labelled] == drawn
        assert {r["label"] for r in labelled} <= set(VERDICTS)
    first = {(r["remark"], r["learner"]) for r in read_jsonl(files["development"])}
    assert not first & {(r["remark"], r["learner"]) for r in read_jsonl(files["held_out"])}


@pytest.mark.parametrize("name, n", [("development", 90), ("held_out", 60)])
def test_the_checker_agrees_with_the_hand_labels(name, n):
    """Cohen's kappa of the checker's verdicts against the hand labels: at least 0.8 (issue 24's target), on the
    set its rules were fixed with and on the held-out set labelled after."""
    agreement = labelled_agreement(stance_label_files()[name])
    assert agreement["n"] == n and agreement["kappa"] >= 0.8, agreement


def test_kappa_is_chance_corrected():
    from saie_lib.stats import cohen_kappa

    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0  # half agree: what chance gives
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None and cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="two labels per item"):
        cohen_kappa(["a"], [])


def test_the_committed_page_states_the_agreement_computed_from_the_labelled_sets():
    page = (Path(__file__).resolve().parents[1] / "results" / "README.md").read_text(encoding="utf-8")
    held = labelled_agreement(stance_label_files()["held_out"])
    dev = labelled_agreement(stance_label_files()["development"])
    assert f"On the {held['n']} held-out remarks" in page and f"Cohen's kappa {held['kappa']:.2f}" in page
    assert f"(kappa {dev['kappa']:.2f})" in page
