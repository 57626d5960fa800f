"""Golden prompt strings: a whitespace change here must be deliberate (and bump PROMPT_VERSION)."""

import hashlib
import json

from saie_lib.prompts import (
    PROMPT_VERSION,
    STANCE_INSTRUCTIONS,
    build_messages,
    format_target,
    other_agents_turns,
    other_choice,
    partner_messages,
    revision_turns,
    self_review_turns,
)
from saie_lib.tasks import Example

GSM = Example(id="g1", task="gsm8k", question="Tom has 3 apples and buys 4 more. How many? ",
              answer="7", rationale="3 + 4 = 7")
CSQA = Example(id="c1", task="commonsense_qa", question="Where do you keep milk?",
               choices=("fridge", "oven", "sink", "roof", "car"), answer="A", subject="milk")
MMLU = Example(id="m1", task="mmlu", question="2 + 2 = ?", choices=("3", "4", "5", "22"), answer="B",
               subject="elementary_mathematics")


# PROMPT_VERSION -> fingerprint of every string saie_lib.prompts produces for the examples above. A prompt change
# fails here until PROMPT_VERSION is bumped and the new version's fingerprint added (old runs keep their version).
PROMPT_FINGERPRINTS = {"1": "a202b3ac71986a7b"}


def prompt_fingerprint() -> str:
    examples = (GSM, CSQA, MMLU)
    produced = [
        [build_messages(example) for example in examples],
        [format_target(example) for example in examples],
        [partner_messages(example, " The answer is 7. ", stance, sees_gold=sees_gold)
         for example in examples for stance in sorted(STANCE_INSTRUCTIONS) for sees_gold in (False, True)],
        revision_turns(" The answer is 7. ", " I disagree. "),
        self_review_turns(" The answer is 7. "),
        other_agents_turns(" The answer is 7. ", [" The answer is 8. ", "The answer is 9."]),
    ]
    return hashlib.sha256(json.dumps(produced, sort_keys=True).encode()).hexdigest()[:16]


def test_prompt_version_names_exactly_these_prompts():
    assert PROMPT_FINGERPRINTS.get(PROMPT_VERSION) == prompt_fingerprint(), (
        f"the prompts of PROMPT_VERSION {PROMPT_VERSION!r} changed: bump PROMPT_VERSION in saie_lib/prompts.py and "
        f"add {{new version: {prompt_fingerprint()!r}}} to PROMPT_FINGERPRINTS")


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


def test_adversarial_re_ask_names_another_option_on_choice_tasks():
    asks = [partner_messages(CSQA, "The answer is A.", "adversarial", sees_gold=False, retry=attempt,
                             learner_answer="A")[0]["content"] for attempt in (1, 2, 3)]
    named = [other_choice(CSQA, "A", attempt) for attempt in (1, 2, 3)]
    assert all(label in "BCDE" for label in named) and len(set(named)) == 3  # never the learner's; moves on
    assert all(f'"The answer is {label}."' in ask for ask, label in zip(asks, named))
    assert other_choice(CSQA, "A", 1) == other_choice(CSQA, "A", 1)  # fixed by id and attempt
    assert other_choice(GSM, "7", 1) is None and other_choice(MMLU, None, 1) is None
    gsm_ask = partner_messages(GSM, "The answer is 7.", "adversarial", sees_gold=False, retry=1, learner_answer="7")
    assert '"The answer is ..." naming a different answer' in gsm_ask[0]["content"]
    first = partner_messages(CSQA, "The answer is A.", "adversarial", sees_gold=False)[0]["content"]
    assert "Attempt" not in first and "The answer is" not in first.split("Disagree")[1]
