"""Majority vote over parsed answers, for multi-agent discussion and the self-consistency baseline.

A parsed answer is a normalised `str` or None (unparseable). None never wins and never counts as a vote:
it is recorded as an abstention, so a vote over mostly invalid answers still reports how many there were.
Ties are broken by a seeded rule that does not depend on the order the answers arrive in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .artifacts import stable_hash


@dataclass(frozen=True)
class Vote:
    """The outcome of one vote: `answer` is the winner (None = every answer was invalid, so abstain);
    `counts` maps each valid answer to its votes; `abstentions` counts the invalid answers; `tied` holds
    the answers that shared first place, sorted (one entry without a tie, several when a tie was broken)."""

    answer: str | None
    counts: dict[str, int]
    abstentions: int
    tied: tuple[str, ...]


def majority_vote(answers: Sequence[str | None], *, seed: int, key: str = "") -> Vote:
    """The most frequent valid answer among `answers`.

    Tie rule: the answers tied for first place are sorted, then one is picked with
    `random.Random(int(stable_hash((seed, key)), 16)).choice(tied)`. Sorting makes the winner independent
    of input order; the hash makes it reproducible across processes (no `hash()` salt); `key` (the example
    id) lets different examples break their ties independently under one seed.
    """
    stray = [a for a in answers if a is not None and not isinstance(a, str)]
    if stray:
        raise TypeError(f"answers must be str or None (parsed answers), got {stray[0]!r}")
    abstentions = sum(a is None for a in answers)
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return Vote(None, {}, abstentions, ())
    top = max(counts.values())
    tied = tuple(sorted(a for a, c in counts.items() if c == top))
    winner = tied[0] if len(tied) == 1 else random.Random(int(stable_hash((seed, key)), 16)).choice(tied)
    return Vote(winner, dict(sorted(counts.items())), abstentions, tied)


def vote_many(rows: Iterable[Mapping[str, Any]], *, seed: int) -> dict[str, Vote]:
    """One vote per example: rows (each with "id" and "parsed") are grouped by id, in first-seen order, and
    each group is voted with the id as tie-break key. The caller passes the rows of one round only."""
    groups: dict[str, list[str | None]] = {}
    for row in rows:
        groups.setdefault(row["id"], []).append(row["parsed"])
    return {example_id: majority_vote(answers, seed=seed, key=example_id) for example_id, answers in groups.items()}
