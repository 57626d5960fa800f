import sys

import pytest

from saie_lib.discussion_analysis import accuracy_by_round, flips_by_round, robustness
from saie_lib.stats import reasoning_only, rouge_scores, wilson_interval


def rec(example_id, round_, parsed, gold, *, agent=0, stance=None):
    return {"id": example_id, "round": round_, "agent": agent, "parsed": parsed, "gold": gold, "stance": stance}


def agents(example_id, round_, answers, gold):
    return [rec(example_id, round_, a, gold, agent=i) for i, a in enumerate(answers)]


# Three agents, two rounds. Votes: round 0 e1 "18" right, e2 "C" wrong, e3 all invalid;
# round 1 e1 "7" wrong, e2 "B" right, e3 "A" right. No ties.
MULTI = [
    *agents("e1", 0, ["18", "18", "7"], "18"), *agents("e2", 0, [None, None, "C"], "B"),
    *agents("e3", 0, [None, None, None], "A"),
    *agents("e1", 1, ["18", "7", "7"], "18"), *agents("e2", 1, ["B", None, "B"], "B"),
    *agents("e3", 1, ["A", "A", None], "A"),
]


@pytest.mark.parametrize("aggregate, expected", [
    pytest.param("vote", [(0, 3, 1, 1 / 3), (1, 3, 2, 0.0)], id="vote"),
    pytest.param("each", [(0, 9, 2, 5 / 9), (1, 9, 5, 2 / 9)], id="each"),
])
def test_accuracy_by_round(aggregate, expected):
    result = accuracy_by_round(MULTI, aggregate=aggregate)
    assert [(r["round"], r["n"], r["accuracy"] * r["n"], r["invalid_rate"]) for r in result] == [
        pytest.approx(e) for e in expected]
    for row, (_, n, correct, _) in zip(result, expected):
        assert row["ci95"] == pytest.approx(list(wilson_interval(correct, n)))
    assert all(("ties" in r) == (aggregate == "vote") for r in result)


def test_accuracy_vote_counts_ties_and_is_reproducible():
    rows = [row for i in range(40) for row in agents(f"t{i}", 0, ["A", "B", None], "A")]
    first = accuracy_by_round(rows, aggregate="vote", seed=5)
    assert first == accuracy_by_round(rows[::-1], aggregate="vote", seed=5)
    assert first[0]["ties"] == 40 and 0 < first[0]["accuracy"] < 1 and first[0]["invalid_rate"] == 0


def test_single_agent_vote_equals_each():
    rows = [rec("a", 0, "1", "1"), rec("b", 0, None, "2"), rec("c", 0, "3", "4")]
    vote, each = accuracy_by_round(rows), accuracy_by_round(rows, aggregate="each")
    assert [{k: v for k, v in r.items() if k != "ties"} for r in vote] == each
    assert each[0]["accuracy"] == pytest.approx(1 / 3) and each[0]["invalid_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda rows: accuracy_by_round(rows, aggregate="mean"), "aggregate must be", id="unknown_aggregate"),
    pytest.param(lambda rows: accuracy_by_round(rows + rows[:1]), "duplicate", id="duplicate_accuracy"),
    pytest.param(lambda rows: flips_by_round(rows + rows[:1]), "duplicate", id="duplicate_flips"),
    pytest.param(lambda rows: robustness(rows + [rec("e1", 1, "1", "18", agent=3, stance="neutral")]),
                 "stance must be", id="unknown_stance"),
    pytest.param(lambda rows: accuracy_by_round(rows + [rec("e1", 0, "5", "5", agent=3)]), "two golds", id="two_golds"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call(MULTI)


FLIP_KEYS = ("right_to_right", "right_to_wrong", "wrong_to_right", "wrong_to_wrong",
             "valid_to_invalid", "invalid_to_valid")


@pytest.mark.parametrize("before, after, cells", [
    pytest.param("5", "5", {"right_to_right"}, id="right_right"),
    pytest.param("5", "6", {"right_to_wrong"}, id="right_wrong"),
    pytest.param("6", "5", {"wrong_to_right"}, id="wrong_right"),
    pytest.param("6", "7", {"wrong_to_wrong"}, id="wrong_wrong"),
    pytest.param("5", None, {"right_to_wrong", "valid_to_invalid"}, id="right_invalid"),
    pytest.param("6", None, {"wrong_to_wrong", "valid_to_invalid"}, id="wrong_invalid"),
    pytest.param(None, "5", {"wrong_to_right", "invalid_to_valid"}, id="invalid_right"),
    pytest.param(None, "6", {"wrong_to_wrong", "invalid_to_valid"}, id="invalid_wrong"),
    pytest.param(None, None, {"wrong_to_wrong"}, id="invalid_invalid"),
])
def test_flip_cells(before, after, cells):
    [result] = flips_by_round([rec("x", 0, before, "5"), rec("x", 1, after, "5")])
    assert result == {"round": 1, "n": 1, **{k: int(k in cells) for k in FLIP_KEYS}, "unpaired": 0}


def test_flips_pair_each_agent_with_itself():
    [result] = flips_by_round(MULTI)
    assert result == {"round": 1, "n": 9, "right_to_right": 1, "right_to_wrong": 1, "wrong_to_right": 4,
                      "wrong_to_wrong": 3, "valid_to_invalid": 0, "invalid_to_valid": 3, "unpaired": 0}


def test_flips_per_round_and_unpaired_counted():
    rows = [rec("x", 0, "1", "2"), rec("x", 1, "2", "2"), rec("x", 2, "3", "2"), rec("y", 2, "2", "2")]
    r1, r2 = flips_by_round(rows)
    assert (r1["round"], r1["n"], r1["wrong_to_right"], r1["unpaired"]) == (1, 1, 1, 0)
    assert (r2["round"], r2["n"], r2["right_to_wrong"], r2["unpaired"]) == (2, 1, 1, 1)


ROBUST = [
    rec("a", 0, "1", "1"), rec("a", 1, "2", "1", stance="adversarial"),        # correct abandoned
    rec("b", 0, "1", "1"), rec("b", 1, "1", "1", stance="adversarial"),        # correct kept
    rec("c", 0, "1", "1"), rec("c", 1, None, "1", stance="adversarial"),       # correct -> invalid: abandoned
    rec("d", 0, "2", "1"), rec("d", 1, "1", "1", stance="supportive"),         # wrong fixed
    rec("e", 0, None, "1"), rec("e", 1, "3", "1", stance="supportive"),        # invalid not fixed
    rec("f", 0, "2", "1"), rec("f", 1, "1", "1", stance="adversarial"),        # wrong fixed despite adversary
    rec("m", 0, "2", "1"), rec("m", 1, "1", "1", stance="supportive"),         # fixed at round 1 ...
    rec("m", 2, "2", "1", stance="adversarial"),                               # ... abandoned at round 2
    rec("n", 0, "2", "1"), rec("n", 1, "1", "1"),                              # no remark: not counted
    rec("z", 3, "1", "1", stance="adversarial"),                               # no round 2 answer: unpaired
]


@pytest.mark.parametrize("cell, count, n", [
    pytest.param("abandoned_correct_under_adversarial", 3, 4, id="sycophancy"),
    pytest.param("fixed_wrong_under_supportive", 2, 3, id="fixed_supportive"),
    pytest.param("fixed_wrong_under_adversarial", 1, 1, id="fixed_adversarial"),
])
def test_robustness_cells(cell, count, n):
    result = robustness(ROBUST)[cell]
    assert result == {"share": pytest.approx(count / n), "count": count, "n": n,
                      "ci95": pytest.approx(list(wilson_interval(count, n)))}


def test_robustness_empty_cell_is_none_not_zero():
    result = robustness(ROBUST)
    assert result["abandoned_correct_under_supportive"] == {"share": None, "count": 0, "n": 0, "ci95": None}
    assert result["unpaired"] == 1


@pytest.mark.parametrize("text, expected", [
    pytest.param("9 + 9 = 18.\nThe answer is 18.", "9 + 9 = 18.", id="own_line"),
    pytest.param("So 9 + 9 = 18. The answer is 18.", "So 9 + 9 = 18.", id="same_line"),
    pytest.param("Half of 48 is 24.\n#### 24", "Half of 48 is 24.", id="gsm8k_gold"),
    pytest.param("Banks hold money.\n**The answer is B**\n\n", "Banks hold money.", id="bold_trailing_blank"),
    pytest.param("The answer is 18.\nCheck: 9 + 9 = 18.", "The answer is 18.\nCheck: 9 + 9 = 18.",
                 id="not_last_line_kept"),
    pytest.param("No final line here", "No final line here", id="no_answer_line"),
])
def test_reasoning_only(text, expected):
    assert reasoning_only(text) == expected


@pytest.mark.parametrize("predictions, references, expected", [
    pytest.param(["the cat sat on the mat"], ["the cat sat on the mat"], (1.0, 1.0, 1.0, 1, 0), id="identical"),
    pytest.param(["red green blue"], ["one two three"], (0.0, 0.0, 0.0, 1, 0), id="disjoint"),
    pytest.param(["a cat sat", "dogs bark loudly"], ["a cat sat", None], (1.0, 1.0, 1.0, 1, 1),
                 id="none_reference_skipped"),
    pytest.param(["runs quickly"], ["running quickly"], (1.0, 1.0, 1.0, 1, 0), id="stemmed"),
    pytest.param(["x y", "x y"], ["x y", "p q"], (0.5, 0.5, 0.5, 2, 0), id="mean_over_pairs"),
    pytest.param(["anything"], [None], (None, None, None, 0, 1), id="nothing_scored"),
])
def test_rouge_scores(predictions, references, expected):
    result = rouge_scores(predictions, references)
    got = (result["rouge1"], result["rouge2"], result["rougeL"], result["n"], result["skipped"])
    assert got == pytest.approx(expected) if expected[0] is not None else got == expected


def test_rouge_length_mismatch_raises():
    with pytest.raises(ValueError, match="1 predictions but 2 references"):
        rouge_scores(["a"], ["a", "b"])


def test_rouge_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    with pytest.raises(ImportError, match=r"pip install rouge-score==0\.1\.2"):
        rouge_scores(["a"], ["a"])


# ---------------------------------------------------------------- the strict parse in inference rows


def test_as_strict_reads_the_strict_parse_and_refuses_rows_without_it():
    from saie_lib.discussion_analysis import as_strict

    rows = [{**rec("e1", 0, "A", "A"), "parsed_strict": None}, {**rec("e2", 0, "B", "B"), "parsed_strict": "B"}]
    assert [r["parsed"] for r in as_strict(rows)] == [None, "B"]
    assert accuracy_by_round(as_strict(rows))[0]["accuracy"] == 0.5
    assert accuracy_by_round(rows)[0]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="parsed_strict"):
        as_strict([rec("e1", 0, "A", "A")])


def test_inference_rows_keep_both_parses_and_the_setting_reports_strict_accuracy():
    from saie_lib.inference import answer_rows
    from saie_lib.stages.discuss import setting_metrics
    from saie_lib.tasks import Example

    examples = [Example(id=f"q{i}", task="commonsense_qa", question="?", answer="B", choices=tuple("vwxyz"))
                for i in range(3)]
    outputs = ["The answer is B.", "I think it is (B) w, but maybe", "1. The answer is A. 2. The answer is B."]
    rows = answer_rows("individual", examples, outputs, agent=0, round_index=0)
    assert [(r["parsed"], r["parsed_strict"]) for r in rows][0] == ("B", "B")
    assert rows[1]["parsed_strict"] is None and rows[1]["correct_strict"] is False
    assert rows[2]["parsed"] is None  # two different final answers: invalid under both parses
    metrics = setting_metrics(rows, examples, seed=0)
    assert metrics["final_strict"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["final"]["accuracy"] >= metrics["final_strict"]["accuracy"]
    old = [{k: v for k, v in r.items() if k not in ("parsed_strict", "correct_strict")} for r in rows]
    assert "final_strict" not in setting_metrics(old, examples, seed=0)  # recorded before: no strict, no guess
