"""Answer extraction: case tables (failures included), properties, and parity with every GSM8K train gold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saie_lib.parsing import INVALID, Parsed, extract_answer, is_correct, normalize_number

CSQA_CHOICES = ("bank", "library", "department store", "mall", "new york")

# (id, text, strict value, flexible value, flexible method)
NUMBER_CASES = [
    ("plain", "The answer is 42.", "42", "42", "answer_is"),
    ("negative", "so the answer is -3", "-3", "-3", "answer_is"),
    ("unicode_minus", "The answer is \u22127.", "-7", "-7", "answer_is"),
    ("thousands", "The answer is 1,234.", "1234", "1234", "answer_is"),
    ("millions", "The answer is 12,345,678", "12345678", "12345678", "answer_is"),
    ("dollar", "The answer is $1,234.50.", "1234.5", "1234.5", "answer_is"),
    ("dollar_negative", "The answer is $-5 and -$6 was wrong.", "-5", "-5", "answer_is"),
    ("decimal_zero", "The answer is 18.0", "18", "18", "answer_is"),
    ("decimal_trailing_zero", "The answer is 0.50.", "0.5", "0.5", "answer_is"),
    ("leading_dot", "The answer is .5", "0.5", "0.5", "answer_is"),
    ("percentage", "The answer is 50%.", "50", "50", "answer_is"),
    ("colon_bold", "**The answer is: $42**", "42", "42", "answer_is"),
    ("bold_number", "The answer is **7**.", "7", "7", "answer_is"),
    ("case_insensitive", "THE ANSWER IS 9", "9", "9", "answer_is"),
    ("last_answer_is_wins", "The answer is 3? No. The answer is 4.", "4", "4", "answer_is"),
    ("hashes", "5 + 3 = <<5+3=8>>8\n#### 8", "8", "8", "hashes"),
    ("hashes_thousands", "#### 1,600", "1600", "1600", "hashes"),
    ("sentence_period_not_decimal", "The answer is 5. Done", "5", "5", "answer_is"),
    ("boxed", r"So $x = \boxed{12}$.", None, "12", "boxed"),
    ("boxed_latex_dollar_comma", r"\boxed{\$1{,}234}", None, "1234", "boxed"),
    ("answer_colon", "Final answer: 17", None, "17", "answer_colon"),
    ("final_answer_is", "My final answer is $25.", None, "25", "answer_colon"),
    ("last_number", "She has 3 apples and buys 4, so 7 in total.", None, "7", "last_number"),
    ("last_number_comma_space", "The values are 3, 4", None, "4", "last_number"),
    ("subtraction_not_negative", "10 - 8 = 2 and 5-3", None, "3", "last_number"),
    ("no_number", "I am not sure", None, None, "none"),
    ("empty", "", None, None, "none"),
    ("answer_is_words", "The answer is forty-two.", None, None, "none"),
]

# (id, task, text, strict value, flexible value, flexible method)
LETTER_CASES = [
    ("plain", "commonsense_qa", "The answer is B.", "B", "B", "answer_is"),
    ("paren", "commonsense_qa", "The answer is (C).", "C", "C", "answer_is"),
    ("colon_bold", "commonsense_qa", "**The answer is: D**", "D", "D", "answer_is"),
    ("with_text", "commonsense_qa", "The answer is E: new york.", "E", "E", "answer_is"),
    ("last_wins", "commonsense_qa", "The answer is A? No, the answer is B.", "B", "B", "answer_is"),
    ("mmlu_plain", "mmlu", "Thinking... The answer is D.", "D", "D", "answer_is"),
    ("mmlu_rejects_e", "mmlu", "The answer is E.", None, None, "none"),
    ("mmlu_e_skipped", "mmlu", "The answer is C. Hmm, the answer is E.", "C", "C", "answer_is"),
    ("lowercase_letter", "commonsense_qa", "the answer is a good question", None, None, "none"),
    ("article_after_answer_is", "commonsense_qa", "The answer is A man with a hat.", None, None, "none"),
    ("letter_then_prose", "commonsense_qa", "The answer is C because it is dry.", "C", "C", "answer_is"),
    ("a_then_prose_is_article", "commonsense_qa", "The answer is A because it is dry.", None, None, "none"),
    ("answer_colon", "mmlu", "Answer: B", None, "B", "answer_colon"),
    ("final_answer_is", "mmlu", "My final answer is (A)", None, "A", "answer_colon"),
    ("paren_letter", "commonsense_qa", "I pick (D) because it fits.", None, "D", "paren_letter"),
    ("paren_outside_labels", "mmlu", "I pick (E) over (B).", None, "B", "paren_letter"),
    ("letter_line_dot", "mmlu", "Reasoning here.\nC. Paris", None, "C", "letter_line"),
    ("letter_line_paren", "mmlu", "Reasoning here.\nB) 42", None, "B", "letter_line"),
    ("letter_line_colon", "mmlu", "Reasoning here.\nA: yes", None, "A", "letter_line"),
    ("copied_choice_list_parens", "commonsense_qa", "(A) bank\n(B) library\n(C) park\n(D) mall\n(E) new york",
     None, None, "none"),
    ("copied_choice_list_lines", "mmlu", "A. 1\nB. 2\nC. 3\nD. 4", None, None, "none"),
    ("same_paren_letter_twice", "commonsense_qa", "(B) fits, so (B) it is.", None, "B", "paren_letter"),
    ("bare_article", "commonsense_qa", "A man walks into a bank.", None, None, "none"),
    ("article_start_of_line", "mmlu", "A cat.\nA dog is here", None, None, "none"),
    ("no_letter", "mmlu", "I am not sure", None, None, "none"),
]

# (id, text, flexible value, flexible method) with CSQA_CHOICES given
CHOICE_CASES = [
    ("unique", "People keep money at the bank.", "A", "choice_text"),
    ("case_insensitive", "Probably NEW YORK.", "E", "choice_text"),
    ("multiword", "the department store has one", "C", "choice_text"),
    ("ambiguous", "Either the bank or the library.", None, "none"),
    ("word_boundary", "The banker smalls", None, "none"),
    ("letter_beats_text", "It is a mall. The answer is A.", "A", "answer_is"),
    ("none", "No idea at all.", None, "none"),
]


def _table(cases):
    """pytest params from (id, *values) rows."""
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


@pytest.mark.parametrize(("text", "strict", "flexible", "method"), _table(NUMBER_CASES))
def test_numbers(text, strict, flexible, method):
    assert extract_answer("gsm8k", text, "strict").value == strict
    assert extract_answer("gsm8k", text) == Parsed(flexible, method)


@pytest.mark.parametrize(("task", "text", "strict", "flexible", "method"), _table(LETTER_CASES))
def test_letters(task, text, strict, flexible, method):
    assert extract_answer(task, text, "strict").value == strict
    assert extract_answer(task, text) == Parsed(flexible, method)


@pytest.mark.parametrize(("text", "value", "method"), _table(CHOICE_CASES))
def test_choice_text(text, value, method):
    assert extract_answer("commonsense_qa", text, choices=CSQA_CHOICES) == Parsed(value, method)
    if method == "choice_text":
        assert extract_answer("commonsense_qa", text, "strict", choices=CSQA_CHOICES) is INVALID
        assert extract_answer("commonsense_qa", text) is INVALID  # no choices given


@pytest.mark.parametrize(
    ("task", "text", "gold", "expected"),
    _table(
        [
            ("thousands", "gsm8k", "The answer is 1,234.", "1234", True),
            ("decimal_gold", "gsm8k", "The answer is 18.", "18.00", True),
            ("wrong", "gsm8k", "The answer is 17.", "18", False),
            ("invalid_never_correct", "gsm8k", "I am not sure", "0", False),
            ("lowercase_letter", "commonsense_qa", "The answer is b.", "B", False),
            ("gold_lowercase", "commonsense_qa", "The answer is (B).", " b ", True),
            ("outside_labels", "mmlu", "The answer is E.", "D", False),
            ("invalid_letter", "mmlu", "no idea", "A", False),
        ]
    ),
)
def test_is_correct(task, text, gold, expected):
    assert is_correct(task, text, gold) is expected


def test_is_correct_modes_and_choices():
    text = "The total is 7"
    assert is_correct("gsm8k", text, "7") and not is_correct("gsm8k", text, "7", mode="strict")
    assert is_correct("commonsense_qa", "at the mall", "D", choices=CSQA_CHOICES)


@pytest.mark.parametrize(
    ("task", "gold"), [("gsm8k", "seven"), ("gsm8k", ""), ("mmlu", "E"), ("commonsense_qa", "AB")]
)
def test_unparseable_gold_raises(task, gold):
    with pytest.raises(ValueError, match="gold"):
        is_correct(task, "The answer is 7.", gold)


def test_unknown_task_and_mode_raise():
    with pytest.raises(ValueError, match="unknown task"):
        extract_answer("nope", "The answer is 3.")
    with pytest.raises(ValueError, match="strict, flexible"):
        extract_answer("gsm8k", "The answer is 3.", mode="loose")


@pytest.mark.parametrize(
    ("template", "method"),
    _table(
        [
            ("answer_is_commas", "So the answer is {n:,}.", "answer_is"),
            ("answer_is_dollar", "The answer is: ${n:,}", "answer_is"),
            ("answer_is_bold", "The answer is **{n}**.", "answer_is"),
            ("hashes", "#### {n}", "hashes"),
            ("boxed", "Hence \\boxed{{{n}}}.", "boxed"),
            ("answer_colon", "Answer: {n:,}", "answer_colon"),
            ("last_number", "total {n:,}", "last_number"),
        ]
    ),
)
@given(n=st.one_of(st.integers(-(10**12), 10**12), st.decimals(-(10**6), 10**6, places=3)))
def test_number_formats_roundtrip(template, method, n):
    text = "Some working, e.g. 3 + 4 = 7. " + template.format(n=n)
    assert extract_answer("gsm8k", text) == Parsed(normalize_number(str(n)), method)


@given(text=st.text().filter(lambda t: not any(c.isdigit() for c in t)), gold=st.integers().map(str))
def test_no_digits_never_correct(text, gold):
    assert not is_correct("gsm8k", text, gold)
    assert extract_answer("gsm8k", text) is INVALID


@given(text=st.text(alphabet=st.characters(blacklist_characters="ABCDE")), gold=st.sampled_from("ABCD"))
def test_no_label_never_correct(text, gold):
    assert not is_correct("mmlu", text, gold)
    assert extract_answer("commonsense_qa", text) is INVALID


@given(
    text=st.text(),
    task=st.sampled_from(["gsm8k", "commonsense_qa", "mmlu"]),
    mode=st.sampled_from(["strict", "flexible"]),
)
def test_parse_never_raises(text, task, mode):
    parsed = extract_answer(task, text, mode, choices=CSQA_CHOICES)
    assert (parsed.value is None) == (parsed.method == "none")


def _data_dir() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SAIE_DATA_DIR", default))


def test_gsm8k_train_gold_parity():
    path = _data_dir() / "gsm8k" / "train.jsonl"
    if not path.exists():
        pytest.skip(f"GSM8K train data not found at {path} (set SAIE_DATA_DIR)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) == 7473
    mismatches = []
    for row in rows:
        gold = normalize_number(row["answer"].split("####")[-1])
        assert gold is not None, row["answer"]
        for mode in ("strict", "flexible"):
            if extract_answer("gsm8k", row["answer"], mode) != Parsed(gold, "hashes"):
                mismatches.append((mode, row["answer"][-60:]))
    assert not mismatches, mismatches[:5]
