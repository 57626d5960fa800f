"""Chat prompts per task, versioned. The wording lives in the task registry; the layout lives here.

Bump PROMPT_VERSION whenever a string produced here changes: every run records it.
"""

from __future__ import annotations

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
