"""Golden prompt strings: a whitespace change here must be deliberate (and bump PROMPT_VERSION)."""

from saie_lib.prompts import PROMPT_VERSION, build_messages, format_target
from saie_lib.tasks import Example

GSM = Example(id="g1", task="gsm8k", question="Tom has 3 apples and buys 4 more. How many? ",
              answer="7", rationale="3 + 4 = 7")
CSQA = Example(id="c1", task="commonsense_qa", question="Where do you keep milk?",
               choices=("fridge", "oven", "sink", "roof", "car"), answer="A", subject="milk")
MMLU = Example(id="m1", task="mmlu", question="2 + 2 = ?", choices=("3", "4", "5", "22"), answer="B",
               subject="elementary_mathematics")


def test_prompt_version_is_recorded_value():
    assert PROMPT_VERSION == "1"


def test_gsm8k_prompt_golden():
    assert build_messages(GSM) == [{"role": "user", "content": (
        'Solve the math problem. Think step by step, then finish with a line of the form "The answer is N." '
        "where N is a number.\n\nQuestion: Tom has 3 apples and buys 4 more. How many?"
    )}]


def test_commonsense_qa_prompt_golden():
    assert build_messages(CSQA)[0]["content"] == (
        'Answer the multiple-choice question. Think step by step, then finish with a line of the form '
        '"The answer is X." where X is one of A, B, C, D, E.\n\n'
        "Question: Where do you keep milk?\nChoices:\n(A) fridge\n(B) oven\n(C) sink\n(D) roof\n(E) car"
    )


def test_mmlu_prompt_golden_names_subject():
    assert build_messages(MMLU)[0]["content"] == (
        "Answer the multiple-choice question about elementary mathematics. Think step by step, then finish "
        'with a line of the form "The answer is X." where X is one of A, B, C, D.\n\n'
        "Question: 2 + 2 = ?\nChoices:\n(A) 3\n(B) 4\n(C) 5\n(D) 22"
    )


def test_target_is_rationale_then_answer_line():
    assert format_target(GSM) == "3 + 4 = 7\nThe answer is 7."
    assert format_target(CSQA) == "The answer is A."


def test_smollm2_chat_template_render_golden(tiny):
    from saie_lib.generation import render_chat

    _, tokenizer, _ = tiny
    rendered = render_chat(tokenizer, [build_messages(MMLU)])[0]
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert rendered.endswith("(D) 22<|im_end|>\n<|im_start|>assistant\n")
