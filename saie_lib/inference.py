"""Discussion at inference time: individual, self-discussion, multi-agent discussion (Du et al. 2023) and the
compute-matched self-consistency baseline.

Every round is one batched generation call per (model, decoding) group, across examples and agents. Each
generation becomes a row {setting, id, agent, round, output, parsed, correct, parsed_strict, correct_strict, gold,
choices}; votes and analyses are computed from those rows (saie_lib.voting, saie_lib.discussion_analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .artifacts import stable_hash
from .discussion import DiscussionState, advance, draw_stances, partner_turn
from .generation import Decoding, generate, render_chat
from .parsing import grade
from .partners import Partner, Sampling
from .prompts import build_messages, other_agents_turns, self_review_turns
from .tasks import Example


@dataclass(frozen=True)
class Agent:
    """One discussant: a model (base or with an adapter) and how it decodes."""

    label: str
    model: Any
    tokenizer: Any
    decoding: Decoding


def call_seed(seed: int, *parts: Any) -> int:
    """A sampling seed for one generation call, derived from the run seed and where the call sits."""
    return int(stable_hash((seed, *parts)), 16) % 2**31


def answer_rows(setting: str, examples: Sequence[Example], outputs: Sequence[str], *, agent: int,
                round_index: int) -> list[dict[str, Any]]:
    rows = []
    for example, output in zip(examples, outputs):
        rows.append({"setting": setting, "id": example.id, "agent": agent, "round": round_index,
                     "output": output, **graded_fields(example.task, output, example.answer, example.choices),
                     "gold": example.answer, "choices": list(example.choices), "stance": None})
    return rows


def graded_fields(task: str, output: str, gold: str, choices: Sequence[str]) -> dict[str, Any]:
    """An inference row's scoring, as an evaluation sample's: the flexible parse (`parsed`, `correct`, which
    votes and analyses read) and the strict one (`parsed_strict`, `correct_strict`)."""
    answer, correct = grade(task, output, gold, choices=choices)
    strict, correct_strict = grade(task, output, gold, mode="strict", choices=choices)
    return {"parsed": answer.value, "correct": correct, "parsed_strict": strict.value, "correct_strict": correct_strict}


def generate_for_agents(agents: Sequence[Agent], conversations: Sequence[Sequence[list[dict]]], *, seed: int,
                        round_index: int, batch_size: int) -> list[list[str]]:
    """conversations[a][i] is agent a's chat for example i. Agents sharing a model and decoding are generated
    in one batched call; the result is outputs[a][i]."""
    groups: dict[tuple, list[int]] = {}
    for index, agent in enumerate(agents):
        groups.setdefault((id(agent.model), agent.decoding), []).append(index)
    outputs: list[list[str]] = [[] for _ in agents]
    for group_index, members in enumerate(groups.values()):
        first = agents[members[0]]
        prompts = [p for a in members for p in render_chat(first.tokenizer, conversations[a])]
        decoding = Decoding(**{**first.decoding.__dict__,
                               "seed": call_seed(seed, "round", round_index, "group", group_index)})
        texts = generate(first.model, first.tokenizer, prompts, decoding, batch_size=batch_size, progress=False)
        size = len(conversations[members[0]])
        for offset, a in enumerate(members):
            outputs[a] = texts[offset * size: (offset + 1) * size]
    return outputs


def individual(agent: Agent, examples: Sequence[Example], *, seed: int, batch_size: int = 8) -> list[dict]:
    """One answer per example: the same prompts and parsing as the foundation's evaluation."""
    outputs = generate_for_agents([agent], [[build_messages(e) for e in examples]], seed=seed, round_index=0,
                                  batch_size=batch_size)[0]
    return answer_rows("individual", examples, outputs, agent=0, round_index=0)


def first_answers_or_generate(agent: Agent, conversations: Sequence[list[dict]], first_answers: Sequence[str] | None,
                              *, seed: int, batch_size: int) -> list[str]:
    """Round 0 of a greedy setting: the question alone, so exactly `individual`'s call (same prompts, decoding,
    seed and batches); its outputs are reused when given instead of being generated again."""
    if first_answers is not None:
        if len(first_answers) != len(conversations):
            raise ValueError(f"first_answers has {len(first_answers)} answers for {len(conversations)} examples")
        return list(first_answers)
    return generate_for_agents([agent], [conversations], seed=seed, round_index=0, batch_size=batch_size)[0]


def self_discussion(agent: Agent, examples: Sequence[Example], *, rounds: int, seed: int, batch_size: int = 8,
                    first_answers: Sequence[str] | None = None) -> list[dict]:
    """Answer, then `rounds` times: critique the own latest answer and revise. Rounds 0..rounds recorded.
    `first_answers`: `individual`'s outputs for the same agent and examples, reused as round 0."""
    conversations = [build_messages(e) for e in examples]
    rows: list[dict] = []
    for round_index in range(rounds + 1):
        if round_index == 0:
            outputs = first_answers_or_generate(agent, conversations, first_answers, seed=seed, batch_size=batch_size)
        else:
            outputs = generate_for_agents([agent], [conversations], seed=seed, round_index=round_index,
                                          batch_size=batch_size)[0]
        rows += answer_rows("self_discussion", examples, outputs, agent=0, round_index=round_index)
        conversations = [c + self_review_turns(o) for c, o in zip(conversations, outputs)]
    return rows


def multi_agent(agents: Sequence[Agent], examples: Sequence[Example], *, rounds: int, seed: int,
                batch_size: int = 8) -> list[dict]:
    """Each agent answers independently; then for `rounds` rounds each reads the OTHER agents' answers from
    the previous round (never its own twice, never a later one) and revises."""
    conversations = [[build_messages(e) for e in examples] for _ in agents]
    rows: list[dict] = []
    for round_index in range(rounds + 1):
        outputs = generate_for_agents(agents, conversations, seed=seed, round_index=round_index,
                                      batch_size=batch_size)
        for a, texts in enumerate(outputs):
            rows += answer_rows("multi_agent", examples, texts, agent=a, round_index=round_index)
        conversations = [
            [conv + other_agents_turns(outputs[a][i], [outputs[b][i] for b in range(len(agents)) if b != a])
             for i, conv in enumerate(conversations[a])]
            for a in range(len(agents))
        ]
    return rows


def self_consistency(agent: Agent, examples: Sequence[Example], *, samples: int, seed: int,
                     batch_size: int = 8) -> list[dict]:
    """`samples` independent sampled answers per example (one batched call), to be majority-voted: the
    baseline that spends as many generations as the discussion it is compared with."""
    copies = [agent] * samples
    outputs = generate_for_agents(copies, [[build_messages(e) for e in examples]] * samples, seed=seed,
                                  round_index=0, batch_size=batch_size)
    return [row for s, texts in enumerate(outputs)
            for row in answer_rows("self_consistency", examples, texts, agent=s, round_index=0)]


def partner_discussion(agent: Agent, partner: Partner, examples: Sequence[Example], *, rounds: int, seed: int,
                       partner_sampling: Sampling, batch_size: int = 8,
                       first_answers: Sequence[str] | None = None) -> list[dict]:
    """The learner + partner pair at inference time: the model answers, a frozen partner remarks with a stance
    drawn half supportive, half adversarial (seeded), the model revises; `rounds` times. Round r's rows carry
    the stance and remark the model read, which is what robustness (sycophancy) is measured on."""
    state = DiscussionState(examples)
    outputs = first_answers_or_generate(agent, state.conversations, first_answers, seed=seed, batch_size=batch_size)
    rows = answer_rows("partner_discussion", examples, outputs, agent=0, round_index=0)
    for round_index in range(1, rounds + 1):
        stances = draw_stances("saie", len(examples), seed=seed, batch_index=0, round_index=round_index)
        remarks = partner_turn(partner, examples, outputs, stances, partner_sampling, sees_gold=False)
        advance(state, outputs, remarks)
        outputs = generate_for_agents([agent], [state.conversations], seed=seed, round_index=round_index,
                                      batch_size=batch_size)[0]
        revised = answer_rows("partner_discussion", examples, outputs, agent=0, round_index=round_index)
        for row, stance, remark in zip(revised, stances, remarks):
            row.update(stance=stance, remark=remark.text)
        rows += revised
    return rows
