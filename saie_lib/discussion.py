"""One discussion round for a batch: the learner answers, a stance is drawn, the frozen partner remarks.

Everything is batched (one learner call and one partner call per round) and every turn becomes a
transcript row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from .artifacts import stable_hash
from .conditions import STANCES
from .parsing import grade
from .partners import IncompleteBatchError, Partner, Sampling
from .prompts import build_messages, partner_messages, revision_turns
from .tasks import Example


def draw_stances(policy: str, n: int, *, seed: int, batch_index: int, round_index: int) -> list[str | None]:
    """Stances for the n examples of one batch and round. `saie` splits them half and half (the odd one
    drawn), shuffled by a seed derived from (seed, batch, round) so a resumed run draws the same."""
    if policy == "none":
        return [None] * n
    if policy in STANCES:
        return [policy] * n
    if policy != "saie":
        raise ValueError(f"unknown remark_policy {policy!r}")
    rng = random.Random(stable_hash({"seed": seed, "batch": batch_index, "round": round_index}))
    stances = [STANCES[i % 2] for i in range(n)]
    if n % 2:
        stances[-1] = rng.choice(STANCES)
    rng.shuffle(stances)
    return stances


@dataclass
class DiscussionState:
    """The learner's side of each example's discussion so far (its chat history)."""

    examples: Sequence[Example]
    conversations: list[list[dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.conversations:
            self.conversations = [build_messages(e) for e in self.examples]


def partner_turn(partner: Partner, examples: Sequence[Example], responses: Sequence[str],
                 stances: Sequence[str | None], sampling: Sampling, *, sees_gold: bool) -> list[Any]:
    """Remarks for the examples that have a stance (one batched partner call); None where there is none."""
    wanted = [i for i, s in enumerate(stances) if s is not None]
    asked = [partner_messages(examples[i], responses[i], stances[i], sees_gold=sees_gold) for i in wanted]
    try:
        replies = partner.chat(asked, sampling) if asked else []
    except IncompleteBatchError as error:
        ids = [examples[wanted[i]].id for i in error.failed]
        raise IncompleteBatchError(f"no usable remark for example(s) {ids}: {error}", error.replies,
                                   error.failed) from error
    remarks: list[Any] = [None] * len(examples)
    for i, reply in zip(wanted, replies):
        remarks[i] = reply
    return remarks


def transcript_rows(examples: Sequence[Example], responses: Sequence[str], stances: Sequence[str | None],
                    remarks: Sequence[Any], *, step: int, batch_index: int, round_index: int) -> list[dict]:
    rows = []
    for example, response, stance, reply in zip(examples, responses, stances, remarks):
        answer, correct = grade(example.task, response, example.answer, choices=example.choices)
        rows.append({
            "step": step, "batch": batch_index, "round": round_index, "id": example.id,
            "learner": response, "parsed": answer.value, "gold": example.answer, "choices": list(example.choices),
            "correct": correct, "stance": stance,
            "remark": reply.text if reply else None, "cache_hit": reply.cached if reply else None,
            "partner_tokens": (reply.prompt_tokens + reply.completion_tokens) if reply else 0,
            "partner_cost_usd": reply.cost_usd if reply else None,
        })
    return rows


def advance(state: DiscussionState, responses: Sequence[str], remarks: Sequence[Any]) -> None:
    """Append the learner's response and the partner's remark to each conversation that got a remark."""
    for conversation, response, reply in zip(state.conversations, responses, remarks):
        if reply is not None:
            conversation.extend(revision_turns(response, reply.text))
