"""A partner whose stance holds by construction (config `partner: scripted`): no model, no generation.

It reads the answer the learner's turn states (`parsing.stated_answer`, the checker's reading) and writes:

- **supportive**: restates that answer and endorses it ("Your answer, (C) water fountain, is right. ... The
  answer is (C)."); to a turn that states none, it endorses the reasoning so far;
- **adversarial**: disputes it and argues for a different answer: for multiple choice another option, drawn by
  seed among the labels other than the learner's; for GSM8K a different number (the learner's, or the last
  number of its unfinished working, moved by a seeded offset), naming a step of the learner's working as the
  wrong one when there is one.

It never reads the gold answer, so an argued answer equals the gold no more often than chance (a drawn option
is the gold in 1 of the k - 1 options other than a wrong learner's). The draw is fixed by (seed, example id,
the learner's response), so a resumed run writes the same remarks. Separates "the stance matters" from "the
partner is weak": same discussion-shaped training, with remarks that always hold their stance.
"""

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import Any, Sequence

from ..artifacts import stable_hash
from ..parsing import normalize_number, stated_answer
from ..tasks import Example, get_task
from . import Messages, PartnerError, Reply, Sampling

SCRIPT_VERSION = "1"  # bump when a template, the draw or the offsets change: it is part of the model_id
NUMBER_OFFSETS = (1, 2, 3, 4, 5, 10)  # the argued number: the learner's moved by one of these, up or down
SUPPORT = "Your answer, {shown}, is right: the reasoning that leads to it holds. The answer is {line}."
SUPPORT_NO_ANSWER = ("Your reasoning so far is right and on the right track; carry it through to the end and "
                     "state the result.")
DISPUTE = "Your answer, {shown}, is wrong: {why} I disagree. The answer is {line}."
DISPUTE_NO_ANSWER = "Your response is wrong: {why} The answer is {line}."
WHY_CHOICE = "{other} fits the question better."
WHY_STEP = "the step {step} is a mistake."
WHY_NO_STEP = "the last step of your working is a mistake."
# a step of the learner's working: "8 * 2 = 16", "$30 - $3 = $27"
_STEP_RE = re.compile(r"\$?\d[\d,]*(?:\.\d+)?\s*[-+*/x\u00d7\u00f7]\s*\$?\d[\d,]*(?:\.\d+)?(?:\s*[-+*/x\u00d7\u00f7]\s*"
                      r"\$?\d[\d,]*(?:\.\d+)?)*\s*=\s*\$?\d[\d,]*(?:\.\d+)?")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class ScriptedPartner:
    """Writes each remark from the learner's stated answer and the stance; `remarks` is how it is asked."""

    scripted = True
    calls_made = 0  # no partner call is ever made, nothing is cached
    hits = 0

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model_id = f"scripted:v{SCRIPT_VERSION}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        raise PartnerError("the scripted partner writes remarks from the example and the learner's response "
                           "(ScriptedPartner.remarks), not from chat messages")

    def remarks(self, examples: Sequence[Example], responses: Sequence[str], stances: Sequence[str]) -> list[Reply]:
        return [Reply(scripted_remark(e, r, s, self.seed), 0, 0) for e, r, s in zip(examples, responses, stances)]


def _rng(seed: int, example: Example, response: str) -> random.Random:
    return random.Random(int(stable_hash((seed, example.task, example.id, response, SCRIPT_VERSION)), 16))


def scripted_remark(example: Example, response: str, stance: str, seed: int = 0) -> str:
    """The remark of `stance` on `response` to `example` (its gold answer is never read)."""
    answer = stated_answer(example.task, response, choices=example.choices)
    if stance == "supportive":
        if answer is None:
            return SUPPORT_NO_ANSWER
        return SUPPORT.format(shown=_shown(example, answer), line=_line(example, answer))
    if stance != "adversarial":
        raise ValueError(f"the scripted partner takes a stance: supportive or adversarial, not {stance!r}")
    rng = _rng(seed, example, response)
    if get_task(example.task).answer_type == "number":
        other, why = _other_number(response, answer, rng), _disputed_step(response)
    else:
        other = _other_option(example, answer, rng)
        why = WHY_CHOICE.format(other=_shown(example, other))
    template = DISPUTE if answer is not None else DISPUTE_NO_ANSWER
    return template.format(shown=_shown(example, answer) if answer is not None else "", why=why,
                           line=_line(example, other))


def _shown(example: Example, answer: str) -> str:
    """An answer as a reader sees it: "(C) water fountain", or the number."""
    labels = get_task(example.task).labels
    if not labels:
        return answer
    text = example.choices[labels.index(answer)] if answer in labels[: len(example.choices)] else ""
    return f"({answer}) {text}".strip()


def _line(example: Example, answer: str) -> str:
    return f"({answer})" if get_task(example.task).labels else answer


def _other_option(example: Example, answer: str | None, rng: random.Random) -> str:
    labels = [label for label in get_task(example.task).labels[: len(example.choices)] if label != answer]
    return rng.choice(labels)


def _other_number(response: str, answer: str | None, rng: random.Random) -> str:
    """A number other than the learner's: its answer (or the last number it wrote, or 0) moved by an offset."""
    numbers = [n for m in _NUMBER_RE.finditer(response) if (n := normalize_number(m.group(0))) is not None]
    base = Decimal(answer if answer is not None else numbers[-1] if numbers else "0")
    offset = rng.choice(NUMBER_OFFSETS) * rng.choice((-1, 1))
    if base >= 0 > base + offset:
        offset = -offset
    other = normalize_number(str(base + offset))
    if other is None or other == answer:  # cannot happen (offsets are non-zero)
        raise AssertionError(f"scripted partner: no number other than {answer!r}")
    return other


def _disputed_step(response: str) -> str:
    steps = _STEP_RE.findall(response)
    return WHY_STEP.format(step=" ".join(steps[-1].split())) if steps else WHY_NO_STEP


def is_scripted(partner: Any) -> bool:
    """True for a partner that writes scripted remarks (asked with `remarks`, never re-asked)."""
    return bool(getattr(partner, "scripted", False))
