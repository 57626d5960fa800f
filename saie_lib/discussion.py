"""One discussion round for a batch: the learner answers, a stance is drawn, the frozen partner remarks.

Everything is batched (one learner call and one partner call per round, plus one per stance re-ask) and every
turn becomes a transcript row. Each remark's stance is checked (saie_lib.stance); with `stance_retries` the
partner is re-asked, for the failing remarks of the batch together, until the remark holds its stance.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from .artifacts import stable_hash
from .conditions import PLACEBO, STANCES
from .parsing import grade, stated_answer
from .partners import IncompleteBatchError, Partner, Reply, Sampling
from .partners.scripted import is_scripted
from .prompts import PLACEBO_REMARK, build_messages, partner_messages, revision_turns
from .stance import StanceCheck, check_stance
from .tasks import Example

RETRY_TEMPERATURE = 0.7  # a re-ask samples (seed + attempt) at least this warm, so it can say something else


def draw_stances(policy: str, n: int, *, seed: int, batch_index: int, round_index: int) -> list[str | None]:
    """Stances for the n examples of one batch and round. `saie` splits them half and half (the odd one
    drawn), shuffled by a seed derived from (seed, batch, round) so a resumed run draws the same."""
    if policy == "none":
        return [None] * n
    if policy in STANCES or policy == PLACEBO:
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
    """Remarks for the examples that have a stance (one batched partner call; a scripted partner writes them),
    the fixed placebo remark where the stance is `placebo` (no call); None where there is none."""
    remarks: list[Any] = [Reply(PLACEBO_REMARK, 0, 0) if s == PLACEBO else None for s in stances]
    wanted = [i for i, s in enumerate(stances) if s in STANCES]
    if is_scripted(partner):  # written from the learner's answer: no messages, no call, never sees the gold
        replies = partner.remarks([examples[i] for i in wanted], [responses[i] for i in wanted],
                                  [stances[i] for i in wanted])
        return [replies[wanted.index(i)] if i in wanted else r for i, r in enumerate(remarks)]
    asked = [partner_messages(examples[i], responses[i], stances[i], sees_gold=sees_gold) for i in wanted]
    try:
        replies = partner.chat(asked, sampling) if asked else []
    except IncompleteBatchError as error:
        ids = [examples[wanted[i]].id for i in error.failed]
        raise IncompleteBatchError(f"no usable remark for example(s) {ids}: {error}", error.replies,
                                   error.failed) from error
    for i, reply in zip(wanted, replies):
        remarks[i] = reply
    return remarks


@dataclass
class CheckedRemarks:
    """A round's remarks, the stance check of each (None: no stance asked) and every try per example."""

    remarks: list[Any]
    checks: list[StanceCheck | None]
    tries: list[list[dict[str, Any]]]


def learner_answers(examples: Sequence[Example], responses: Sequence[str]) -> list[str | None]:
    """The answer each response states; None where it states none or was cut off before it."""
    return [stated_answer(e.task, r, choices=e.choices) for e, r in zip(examples, responses)]


def _check(example: Example, answer: str | None, reply: Any, response: str) -> StanceCheck:
    return check_stance(example.task, reply.text, answer, example.choices, learner_text=response)


def _try_record(attempt: int, reply: Any, check: StanceCheck | None, stance: str) -> dict[str, Any]:
    return {"try": attempt, "remark": reply.text if reply else None, "cache_hit": reply.cached if reply else None,
            "partner_tokens": (reply.prompt_tokens + reply.completion_tokens) if reply else 0,
            "stance_check": check.to_record() if check else None, "holds": bool(check and check.holds(stance)),
            **_cut_record(reply)}


def _cut_record(reply: Any) -> dict[str, int]:
    """{"remark_cut_chars": n} for a remark cut to the remark budget; {} for a whole one (and in older records)."""
    cut = getattr(reply, "cut_chars", 0) if reply is not None else 0
    return {"remark_cut_chars": cut} if cut else {}


def checked_remarks(partner: Partner, examples: Sequence[Example], responses: Sequence[str],
                    stances: Sequence[str | None], sampling: Sampling, *, sees_gold: bool,
                    retries: int = 0) -> CheckedRemarks:
    """The partner's remarks with their stance checks; up to `retries` re-asks (batched: all failing remarks
    of the round in one call), each a different request (attempt named in the prompt, sampling seed + attempt,
    at least RETRY_TEMPERATURE), until every remark holds its stance. The last usable try is the remark."""
    answers = learner_answers(examples, responses)
    remarks = partner_turn(partner, examples, responses, stances, sampling, sees_gold=sees_gold)
    checks = [_check(e, a, r, t) if s in STANCES else None
              for e, a, r, s, t in zip(examples, answers, remarks, stances, responses)]
    tries = [[_try_record(0, r, c, s)] if s in STANCES else [] for r, c, s in zip(remarks, checks, stances)]
    for attempt in range(1, 0 if is_scripted(partner) else retries + 1):  # a script says the same again
        failing = [i for i, c in enumerate(checks) if c is not None and not c.holds(stances[i])]
        if not failing:
            break
        asked = [partner_messages(examples[i], responses[i], stances[i], sees_gold=sees_gold, retry=attempt,
                                  learner_answer=answers[i]) for i in failing]
        warmer = dataclasses.replace(sampling, temperature=max(sampling.temperature, RETRY_TEMPERATURE),
                                     seed=sampling.seed + attempt)
        try:
            replies = dict(enumerate(partner.chat(asked, warmer)))
        except IncompleteBatchError as error:  # an unusable re-ask keeps the previous remark
            replies = error.replies
        for k, i in enumerate(failing):
            reply = replies.get(k)
            check = _check(examples[i], answers[i], reply, responses[i]) if reply is not None else None
            tries[i].append(_try_record(attempt, reply, check, stances[i]))
            if reply is not None:
                remarks[i], checks[i] = reply, check
    return CheckedRemarks(remarks, checks, tries)


def transcript_rows(examples: Sequence[Example], responses: Sequence[str], stances: Sequence[str | None],
                    remarks: Sequence[Any], *, step: int, batch_index: int, round_index: int,
                    checked: CheckedRemarks | None = None) -> list[dict]:
    """One row per example: the learner's response, its flexible parse (scored against the gold) and the answer
    it states (`stated`: None when it states none or was cut off); with `checked`, each remark's stance check,
    whether it holds its stance, and its tries when the partner was re-asked."""
    rows = []
    for i, (example, response, stance, reply) in enumerate(zip(examples, responses, stances, remarks)):
        answer, correct = grade(example.task, response, example.answer, choices=example.choices)
        from_partner = reply is not None and stance != PLACEBO
        row = {
            "step": step, "batch": batch_index, "round": round_index, "id": example.id,
            "learner": response, "parsed": answer.value, "gold": example.answer, "choices": list(example.choices),
            "stated": stated_answer(example.task, response, choices=example.choices),
            "correct": correct, "stance": stance,
            "remark": reply.text if reply else None, "cache_hit": reply.cached if from_partner else None,
            "partner_tokens": (reply.prompt_tokens + reply.completion_tokens) if from_partner else 0,
            "partner_cost_usd": reply.cost_usd if from_partner else None,
            **(_cut_record(reply) if from_partner else {}),
        }
        if checked is not None:
            check = checked.checks[i]
            row.update(stance_check=check.to_record() if check else None,
                       stance_holds=check.holds(stance) if check else None)
            if len(checked.tries[i]) > 1:
                row["stance_tries"] = checked.tries[i]
        rows.append(row)
    return rows


def advance(state: DiscussionState, responses: Sequence[str], remarks: Sequence[Any]) -> None:
    """Append the learner's response and the partner's remark to each conversation that got a remark."""
    for conversation, response, reply in zip(state.conversations, responses, remarks):
        if reply is not None:
            conversation.extend(revision_turns(response, reply.text))
