"""The rule-based stance check on remarks as SmolLM2 writes them (taken from committed cpu-small transcripts),
and stance fidelity over transcript rows."""

import pytest

from saie_lib.stance import argued_answers, check_stance, fidelity, judgement

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
    ("The student's response is correct in the reasoning, but it's not the most accurate answer. The student's "
     "response is incorrect because it doesn't give an example.", "C", None, None),
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


def test_fidelity_per_stance_and_first_try():
    rows = [
        {"stance": "supportive", "stance_check": {}, "stance_holds": True},
        {"stance": "supportive", "stance_check": {}, "stance_holds": False},
        {"stance": "adversarial", "stance_check": {}, "stance_holds": True,
         "stance_tries": [{"holds": False}, {"holds": True}]},
        {"stance": "adversarial", "stance_check": {}, "stance_holds": True, "stance_tries": [{"holds": True}]},
        {"stance": "placebo", "stance_check": None, "stance_holds": None},
        {"stance": None, "stance_check": None},
    ]
    result = fidelity(rows)
    assert result["remarks"] == 4 and result["overall"] == 0.75 and result["first_try"] == 0.5
    assert result["supportive"] == {"remarks": 2, "holds": 0.5, "first_try": 0.5}
    assert result["adversarial"] == {"remarks": 2, "holds": 1.0, "first_try": 0.5}
    assert result["partner_tries"] == 5 and result["retried_remarks"] == 1
    assert fidelity([])["overall"] is None


def test_pooled_fidelity_weights_by_remarks_and_keeps_the_re_asks():
    from saie_lib.results_page import _fidelity_cell
    from saie_lib.stance import pooled_fidelity

    runs = [{"stance_fidelity": {"remarks": 30, "overall": 0.9, "first_try": 0.5, "stance_retries": 4}},
            {"stance_fidelity": {"remarks": 10, "overall": 0.5, "first_try": 0.3, "stance_retries": 4}},
            {"stance_fidelity": {"remarks": 0, "overall": None, "first_try": None, "stance_retries": 0}}]
    pooled = pooled_fidelity(runs)
    assert pooled["stance_fidelity"] == pytest.approx(0.8) and pooled["stance_first_try"] == pytest.approx(0.45)
    assert _fidelity_cell(pooled) == "0.80 (0.45) · ≤ 4 re-asks"
    assert pooled_fidelity(runs[2:]) == {"stance_fidelity": None, "stance_first_try": None, "stance_retries": None}
    legacy = pooled_fidelity([{"stance_fidelity": {"remarks": 4, "overall": 0.25, "first_try": 0.25}}])
    assert _fidelity_cell(legacy) == "0.25 (0.25)"  # runs checked after the fact record no re-asks
