"""The one registry where tasks differ: answer type, labels, splits, prompt wording, Hub ids."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One benchmark item, the same shape for every task."""

    id: str
    task: str
    question: str
    answer: str  # gold, normalised: canonical number for gsm8k, a letter for multiple choice
    choices: tuple[str, ...] = ()  # choice texts in label order (A, B, ...); empty for gsm8k
    rationale: str | None = None  # reference reasoning (GSM8K solution, CSQA CoS-E / ECQA); MMLU none
    subject: str | None = None  # MMLU subject, CSQA question concept


@dataclass(frozen=True)
class TaskSpec:
    name: str
    answer_type: str  # "number" or "letter"
    splits: tuple[str, ...]  # splits with gold labels
    train_split: str
    eval_split: str
    labels: tuple[str, ...] = ()  # choice labels for multiple choice
    unlabelled_splits: tuple[str, ...] = ()  # exist but have no gold answers
    hub_id: str = ""
    hub_config: str | None = None
    instruction: str = ""
    extra: dict = field(default_factory=dict)


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        name="gsm8k",
        answer_type="number",
        splits=("train", "test"),
        train_split="train",
        eval_split="test",
        hub_id="openai/gsm8k",
        hub_config="main",
        instruction=(
            "Solve the math problem. Think step by step, then finish with a line of the form "
            '"The answer is N." where N is a number.'
        ),
    ),
    "commonsense_qa": TaskSpec(
        name="commonsense_qa",
        answer_type="letter",
        splits=("train", "dev"),
        train_split="train",
        eval_split="dev",
        labels=("A", "B", "C", "D", "E"),
        unlabelled_splits=("test",),
        hub_id="tau/commonsense_qa",
        instruction=(
            "Answer the multiple-choice question. Think step by step, then finish with a line of the "
            'form "The answer is X." where X is one of A, B, C, D, E.'
        ),
    ),
    "mmlu": TaskSpec(
        name="mmlu",
        answer_type="letter",
        splits=("dev", "val", "test"),
        train_split="dev+val",  # no auxiliary_train here: train on dev + val, evaluate on test
        eval_split="test",
        labels=("A", "B", "C", "D"),
        hub_id="cais/mmlu",
        hub_config="all",
        instruction=(
            "Answer the multiple-choice question about {subject}. Think step by step, then finish "
            'with a line of the form "The answer is X." where X is one of A, B, C, D.'
        ),
    ),
}


def get_task(name: str) -> TaskSpec:
    """The task's spec; an unknown name raises ValueError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
