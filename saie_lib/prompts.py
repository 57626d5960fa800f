"""Chat prompts per task, versioned. The wording lives in the task registry; the layout lives here.

Bump PROMPT_VERSION whenever a string produced here changes: every run records it. Models without a chat
template (Flan-T5) get the same messages as plain text (`render_plain`), versioned apart: their runs record
`prompt_version(plain=True)`, so the identities of chat-template runs never depend on the plain layout.
"""

from __future__ import annotations

import zlib
from typing import Any

from .conditions import STANCES
from .tasks import Example, get_task

PROMPT_VERSION = "1"
ANSWER_LINE = "The answer is {answer}."


def instruction(example: Example) -> str:
    template = get_task(example.task).instruction
    subject = (example.subject or "general knowledge").replace("_", " ")
    return template.format(subject=subject)


def question_block(example: Example) -> str:
    """The question, with lettered choices for multiple-choice tasks."""
    lines = [f"Question: {example.question.strip()}"]
    labels = get_task(example.task).labels
    if labels:
        lines.append("Choices:")
        lines += [f"({label}) {text}" for label, text in zip(labels, example.choices)]
    return "\n".join(lines)


def build_messages(example: Example) -> list[dict[str, str]]:
    """The chat messages asking the model to answer `example` (individual inference)."""
    return [{"role": "user", "content": f"{instruction(example)}\n\n{question_block(example)}"}]


def format_target(example: Example) -> str:
    """Reference response: the gold rationale (when there is one) then the answer line."""
    answer = ANSWER_LINE.format(answer=example.answer)
    rationale = (example.rationale or "").strip()
    return f"{rationale}\n{answer}" if rationale else answer


# --- Discussion (training and inference time) -------------------------------------------------------

STANCE_INSTRUCTIONS = {
    "supportive": (
        "Agree with the student's answer. In two or three sentences, say what is right in the reasoning and "
        "strengthen it with one more supporting point."
    ),
    "adversarial": (
        "Disagree with the student's answer. In two or three sentences, point at the weakest step of the "
        "reasoning and argue for a different answer."
    ),
}
# A stance_retries re-ask (attempt 2, 3, ...) adds this to the partner's request: the stance, said plainly,
# with the learner's parsed answer where it has one (an adversarial re-ask on a multiple-choice task names one
# other option to argue for). Only re-asks carry it: first requests are unchanged, so PROMPT_VERSION is too
# (re-asks exist only in runs with stance_retries > 0, which that field's identity already sets apart).
RETRY_INSTRUCTIONS = {
    "supportive": "Say plainly that the student's answer{answer} is right, and end with the line "
                  '"The answer is {same}"',
    "adversarial": "Say plainly that the student's answer{answer} is wrong, and end with the line "
                   '"The answer is {other}" naming a different answer.',
}
RETRY_NOTE = "(Attempt {attempt}: your previous remark did not take this stance.)"
# The placebo control's partner turn: the same place in the discussion, no stance and no partner call.
PLACEBO_REMARK = "Please read the question again and check your response before you give your final answer."
REVISION_REQUEST = (
    "Your discussion partner replied:\n{remark}\n\nReconsider the question in light of this remark and give your "
    'final response: reason step by step, then finish with a line of the form "The answer is ...".'
)


def partner_messages(example: Example, learner_response: str, stance: str, *, sees_gold: bool, retry: int = 0,
                     learner_answer: str | None = None) -> list[dict]:
    """What the frozen partner reads: the question, the learner's latest response, the stance to take. A
    re-ask (`retry` >= 1, see TrainConfig.stance_retries) states the stance plainly and names its attempt, so
    each re-ask is a different request (and a different remark-cache key)."""
    if stance not in STANCE_INSTRUCTIONS:
        raise ValueError(f"unknown stance {stance!r}; expected one of {', '.join(STANCES)}")
    parts = [
        "You are discussing a question with a student.",
        question_block(example),
        f"The student's response:\n{learner_response.strip()}",
        STANCE_INSTRUCTIONS[stance],
    ]
    if retry:
        answer = f" ({learner_answer})" if learner_answer is not None else ""
        other = other_choice(example, learner_answer, retry)
        parts.append(RETRY_INSTRUCTIONS[stance].format(answer=answer, same=_line_value(learner_answer),
                                                       other=_line_value(other)))
        parts.append(RETRY_NOTE.format(attempt=retry + 1))
    if sees_gold:
        parts.append(f"(For your reference only, the correct answer is {example.answer}.)")
    return [{"role": "user", "content": "\n\n".join(parts)}]


def _line_value(answer: str | None) -> str:
    return f"{answer}." if answer is not None else "..."


def other_choice(example: Example, learner_answer: str | None, attempt: int) -> str | None:
    """For a re-asked adversarial remark on a multiple-choice task: one option other than the learner's to
    argue for, fixed by the example id and the attempt (each attempt names the next one). None for open-ended
    answers (GSM8K) and where the learner gave no answer."""
    labels = [label for label in get_task(example.task).labels or () if label != learner_answer]
    if learner_answer is None or not labels:
        return None
    return labels[(zlib.crc32(str(example.id).encode()) + attempt) % len(labels)]


def revision_turns(learner_response: str, remark: str) -> list[dict[str, str]]:
    """The learner's own response and the partner's remark, appended to the learner's conversation."""
    return [
        {"role": "assistant", "content": learner_response.strip()},
        {"role": "user", "content": REVISION_REQUEST.format(remark=remark.strip())},
    ]


SELF_REVIEW_REQUEST = (
    "Review your previous response critically: check every step for mistakes. Then give your final response: "
    'reason step by step, then finish with a line of the form "The answer is ...".'
)
OTHER_AGENTS_REQUEST = (
    "These are the latest responses from other agents to the same question:\n\n{others}\n\nUse their reasoning "
    "as additional advice: examine your response and theirs step by step, then give your updated response, "
    'finishing with a line of the form "The answer is ...".'
)


def self_review_turns(response: str) -> list[dict[str, str]]:
    """Self-discussion: the model's own response, then the request to critique and revise it."""
    return [{"role": "assistant", "content": response.strip()}, {"role": "user", "content": SELF_REVIEW_REQUEST}]


def other_agents_turns(response: str, others: list[str]) -> list[dict[str, str]]:
    """Multi-agent discussion (Du et al. 2023): the agent's response, then the other agents' latest ones."""
    listed = "\n\n".join(f"Agent {i + 1}: {text.strip()}" for i, text in enumerate(others))
    return [{"role": "assistant", "content": response.strip()},
            {"role": "user", "content": OTHER_AGENTS_REQUEST.format(others=listed)}]


# --- Plain rendering: the same messages for tokenizers without a chat template (e.g. Flan-T5) ---------

PLAIN_RENDERING_VERSION = "1"  # bump when render_plain's layout changes; only runs that use it record it
PLAIN_RESPONSE_CUE = "Response:"
PLAIN_ROLES = ("system", "user", "assistant")


def prompt_version(plain: bool = False) -> str:
    """The prompt version a run records: PROMPT_VERSION for chat-template models (unchanged), and with the
    plain rendering's version added for models without a template."""
    return f"{PROMPT_VERSION}+plain{PLAIN_RENDERING_VERSION}" if plain else PROMPT_VERSION


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_plain(messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
    """Messages as plain text: system and user turns as they are, the model's own turns after a "Response:"
    line, a blank line between turns and, for generation, a last "Response:" line that cues the answer. So a
    conversation with an answer appended renders as the prompt followed by exactly the answer's text."""
    unknown = sorted({m["role"] for m in messages} - set(PLAIN_ROLES))
    if unknown:
        raise ValueError(f"plain rendering: unknown role(s) {unknown}; expected {', '.join(PLAIN_ROLES)}")
    turns = [f"{PLAIN_RESPONSE_CUE}\n{m['content']}" if m["role"] == "assistant" else m["content"]
             for m in messages]
    if add_generation_prompt:
        turns.append(f"{PLAIN_RESPONSE_CUE}\n")
    return "\n\n".join(turns)
