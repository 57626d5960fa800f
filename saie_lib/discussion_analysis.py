"""Analysis of inference-time discussion: accuracy per round, answer flips, robustness to remarks.

Every function reads per-round records, one per example, round and agent:
`{"id": str, "round": int, "agent": int, "parsed": str | None, "gold": str, "stance": str | None}`.
Round 0 holds the initial answers. The stance on a round-r record is the remark the model read after its
round r-1 answer and before writing its round-r answer ("supportive", "adversarial", or None for no remark).
A record is correct when `parsed` is not None and equals `gold`; an invalid answer is never correct, so
"wrong" below always includes invalid answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .conditions import STANCES
from .stats import wilson_interval
from .voting import vote_many

Row = Mapping[str, Any]
AGGREGATES = ("vote", "each")
# Robustness cells: name -> (stance, correct at r-1); the share counted is of answers whose correctness
# changed at r (a correct answer abandoned, or a wrong one fixed).
ROBUSTNESS_CELLS = {
    "abandoned_correct_under_adversarial": ("adversarial", True),
    "fixed_wrong_under_adversarial": ("adversarial", False),
    "abandoned_correct_under_supportive": ("supportive", True),
    "fixed_wrong_under_supportive": ("supportive", False),
}
FLIP_CELLS = ("right_to_right", "right_to_wrong", "wrong_to_right", "wrong_to_wrong",
              "valid_to_invalid", "invalid_to_valid")


def _correct(row: Row) -> bool:
    """Correct means a valid answer equal to the gold; None (unparseable) is never correct."""
    return row["parsed"] is not None and row["parsed"] == row["gold"]


def _grade(row: Row) -> str:
    return "right" if _correct(row) else "wrong"


def _index(rows: Iterable[Row]) -> dict[tuple[str, int, int], Row]:
    """Rows keyed by (id, round, agent). A duplicate key would double-count and two golds for one id would
    make a vote's correctness ambiguous, so both raise ValueError."""
    index: dict[tuple[str, int, int], Row] = {}
    golds: dict[str, str] = {}
    for row in rows:
        key = (row["id"], row["round"], row["agent"])
        if key in index:
            raise ValueError(f"duplicate record for (id, round, agent) = {key}")
        if golds.setdefault(row["id"], row["gold"]) != row["gold"]:
            raise ValueError(f"example {row['id']!r} has two golds: {golds[row['id']]!r} and {row['gold']!r}")
        index[key] = row
    return index


def _rate(count: int, n: int) -> dict[str, Any]:
    """A share with its count, n and 95% Wilson CI; with n = 0 the share and CI are None, not 0."""
    if n == 0:
        return {"share": None, "count": 0, "n": 0, "ci95": None}
    return {"share": count / n, "count": count, "n": n, "ci95": list(wilson_interval(count, n))}


def accuracy_by_round(rows: Iterable[Row], *, aggregate: str = "vote", seed: int = 0) -> list[dict[str, Any]]:
    """Per round: n, accuracy, 95% Wilson CI and invalid rate.

    `aggregate="vote"` scores one answer per example, the majority vote of its agents' valid answers
    (invalid if every agent was invalid; `ties` counts examples whose vote needed the seeded tie-break);
    `aggregate="each"` scores every agent's answer on its own. With one agent the two agree.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    index = _index(rows)
    results = []
    for round_ in sorted({r for _, r, _ in index}):
        round_rows = [row for (_, r, _), row in index.items() if r == round_]
        if aggregate == "each":
            scored, ties = round_rows, None
        else:
            gold = {row["id"]: row["gold"] for row in round_rows}
            votes = vote_many(round_rows, seed=seed)
            scored = [{"parsed": v.answer, "gold": gold[i]} for i, v in votes.items()]
            ties = sum(len(v.tied) > 1 for v in votes.values())
        n, correct = len(scored), sum(map(_correct, scored))
        results.append({
            "round": round_, "n": n, "accuracy": correct / n, "ci95": list(wilson_interval(correct, n)),
            "invalid_rate": sum(row["parsed"] is None for row in scored) / n,
            **({"ties": ties} if ties is not None else {}),
        })
    return results


def tie_breaks(rows: Iterable[Row], *, seed: int = 0) -> dict[str, int]:
    """The final round's votes: examples (`n`), those whose vote needed the seeded tie-break (`ties`), and those
    among them where the gold was one of the tied answers, so the draw decided whether the vote was correct
    (`decisive`)."""
    rows = list(rows)
    last = max(row["round"] for row in rows)
    final = [row for row in rows if row["round"] == last]
    gold = {row["id"]: row["gold"] for row in final}
    votes = vote_many(final, seed=seed)
    tied = {i: v.tied for i, v in votes.items() if len(v.tied) > 1}
    return {"n": len(votes), "ties": len(tied), "decisive": sum(gold[i] in t for i, t in tied.items())}


def as_strict(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The rows with `parsed` set to their strict parse (`parsed_strict`), so every analysis here can be read
    under the strict parse too. A row without `parsed_strict` raises ValueError (no silent flexible fallback)."""
    out = []
    for row in rows:
        if "parsed_strict" not in row:
            raise ValueError(f"row {row.get('id')!r} (round {row.get('round')}) has no 'parsed_strict' field: it was "
                             "recorded before inference rows kept the strict parse")
        out.append({**row, "parsed": row["parsed_strict"]})
    return out


def _pairs(index: Mapping[tuple[str, int, int], Row]) -> tuple[list[tuple[Row, Row]], list[Row]]:
    """(round r-1 record, round r record) for every example and agent, r >= 1, in (id, round, agent) order;
    and the round-r records with no round r-1 record to compare with (left out, but counted by callers)."""
    pairs, unpaired = [], []
    for (example_id, round_, agent), row in sorted(index.items()):
        if round_ > 0:
            previous = index.get((example_id, round_ - 1, agent))
            if previous is None:
                unpaired.append(row)
            else:
                pairs.append((previous, row))
    return pairs, unpaired


def flips_by_round(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Per round r >= 1, how each (example, agent) answer changed from round r-1 to round r.

    The four correctness cells (`right_to_right`, `right_to_wrong`, `wrong_to_right`, `wrong_to_wrong`)
    partition the n pairs, invalid counting as wrong; `valid_to_invalid` and `invalid_to_valid` count
    validity changes on top of them. `unpaired` counts round-r records with no round r-1 record.
    """
    pairs, unpaired = _pairs(_index(rows))
    results = []
    for round_ in sorted({row["round"] for _, row in pairs} | {row["round"] for row in unpaired}):
        round_pairs = [(before, after) for before, after in pairs if after["round"] == round_]
        cells = dict.fromkeys(FLIP_CELLS, 0)
        for before, after in round_pairs:
            cells[f"{_grade(before)}_to_{_grade(after)}"] += 1
            if (before["parsed"] is None) != (after["parsed"] is None):
                cells["invalid_to_valid" if before["parsed"] is None else "valid_to_invalid"] += 1
        results.append({"round": round_, "n": len(round_pairs), **cells,
                        "unpaired": sum(row["round"] == round_ for row in unpaired)})
    return results


def robustness(rows: Iterable[Row]) -> dict[str, Any]:
    """How answers respond to the partner's remark, over all rounds r >= 1 that carry a stance.

    `abandoned_correct_under_adversarial` is the share of (correct at r-1, adversarial remark) that are not
    correct at r: sycophancy. `fixed_wrong_under_supportive` is the share of (wrong at r-1, supportive)
    that are correct at r; the mirror cells complete the 2x2. Each cell is `{"share", "count", "n", "ci95"}`
    and a cell with n = 0 has share and ci95 None. `unpaired` counts stance records with no round r-1 answer.
    """
    pairs, unpaired = _pairs(_index(rows))
    unknown = {row["stance"] for row in [after for _, after in pairs] + unpaired} - {*STANCES, None}
    if unknown:
        raise ValueError(f"stance must be one of {STANCES} or None, got {sorted(map(str, unknown))}")
    result: dict[str, Any] = {}
    for name, (stance, was_correct) in ROBUSTNESS_CELLS.items():
        cell = [after for before, after in pairs if after["stance"] == stance and _correct(before) == was_correct]
        changed = sum(_correct(after) != was_correct for after in cell)
        result[name] = _rate(changed, len(cell))
    result["unpaired"] = sum(row["stance"] is not None for row in unpaired)
    return result
