"""Checks shared by every task: non-empty question and choices, unique ids, and repeated rows.

A loaded split is a list of (Location, Example) pairs, so that a problem found across rows can name every
line involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from saie_lib.data.io import Location
from saie_lib.tasks import Example

Located = tuple[Location, Example]
DUPLICATE_ROW_POLICIES = ("count", "error")


def require_text(value: str, what: str, where: Location) -> str:
    """value, which must hold more than whitespace."""
    if not value.strip():
        raise where.error(f"empty {what}")
    return value


def require_choices(texts: Sequence, labels: Sequence[str], where: Location) -> tuple[str, ...]:
    """The choice texts, one non-empty string per label."""
    if not texts:
        raise where.error(f"no choices (expected {len(labels)}: {', '.join(labels)})")
    if len(texts) != len(labels):
        raise where.error(f"expected {len(labels)} choices ({', '.join(labels)}), got {len(texts)}")
    for label, text in zip(labels, texts):
        if not isinstance(text, str):
            raise where.error(f"choice {label} should be str, got {type(text).__name__}")
        require_text(text, f"text for choice {label}", where)
    return tuple(texts)


def both_places(first: Location, second: Location) -> str:
    """'lines 3 and 7' within one file, else both places in full ('a.csv, line 3 and b.csv, line 7')."""
    if (first.source, first.unit) == (second.source, second.unit):
        return f"{first.unit}s {first.line} and {second.line}"
    return f"{first} and {second}"


def check_unique_ids(located: list[Located]) -> list[Located]:
    """located, unchanged; raise DataFormatError naming both places if any example id appears twice."""
    seen: dict[str, Location] = {}
    for where, example in located:
        if example.id in seen:
            raise where.error(f"id {example.id!r} appears at {both_places(seen[example.id], where)}")
        seen[example.id] = where
    return located


@dataclass(frozen=True)
class DuplicateRow:
    """A row whose question, choices and gold answer repeat an earlier row's, under another id."""

    first_id: str
    repeat_id: str
    first: str  # "file, line N"
    repeat: str

    def as_dict(self) -> dict:
        return {"first_id": self.first_id, "repeat_id": self.repeat_id, "first": self.first, "repeat": self.repeat}


def content_key(example: Example) -> tuple:
    return example.question, example.choices


def find_duplicate_rows(located: Sequence[Located], policy: str = "count") -> tuple[DuplicateRow, ...]:
    """Rows repeating an earlier row's content. The same question and choices with another gold answer
    always raise; an exact repeat is returned (policy "count") or raises (policy "error")."""
    if policy not in DUPLICATE_ROW_POLICIES:
        raise ValueError(f"duplicate_rows must be one of {', '.join(DUPLICATE_ROW_POLICIES)}, got {policy!r}")
    seen: dict[tuple, Located] = {}
    repeats = []
    for where, example in located:
        first_where, first = seen.setdefault(content_key(example), (where, example))
        if first is example:
            continue
        places = both_places(first_where, where)
        if first.answer != example.answer:
            raise where.error(
                f"the same question and choices appear at {places} with different gold answers "
                f"({first.answer!r} under id {first.id!r}, {example.answer!r} under id {example.id!r})"
            )
        if policy == "error":
            raise where.error(f"ids {first.id!r} and {example.id!r} hold the same row, at {places}")
        repeats.append(DuplicateRow(first.id, example.id, str(first_where), str(where)))
    return tuple(repeats)


def count_repeats(examples: Sequence[Example]) -> int:
    """How many examples repeat the content of an earlier one in the list."""
    return len(examples) - len({content_key(example) for example in examples})
