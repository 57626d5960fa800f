"""Deterministic subsets: the same (limit, seed) always picks the same rows, returned in file order."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

Row = TypeVar("Row")


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None (all rows) or a positive integer, got {limit!r}")


def sample_rows(rows: Sequence[Row], limit: int | None, seed: int) -> list[Row]:
    """A seeded random sample of `limit` rows in their original order; all rows if limit is None or too big."""
    check_limit(limit)
    if limit is None or limit >= len(rows):
        return list(rows)
    chosen = random.Random(seed).sample(range(len(rows)), limit)
    return [rows[index] for index in sorted(chosen)]


def sample_stratified(
    rows: Sequence[Row], limit: int | None, seed: int, group_of: Callable[[Row], Hashable]
) -> list[Row]:
    """Like sample_rows, but drawn round-robin over the groups (visited in a seeded order, each group's
    rows shuffled by the seed), so that a small limit covers many groups."""
    check_limit(limit)
    if limit is None or limit >= len(rows):
        return list(rows)
    groups: dict[Hashable, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(group_of(row), []).append(index)
    rng = random.Random(seed)
    queues = list(groups.values())
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    longest = max(len(queue) for queue in queues)
    round_robin = [queue[turn] for turn in range(longest) for queue in queues if turn < len(queue)]
    return [rows[index] for index in sorted(round_robin[:limit])]
