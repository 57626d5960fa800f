"""Notes on the inference experiment's votes for the results page, read from its run dirs."""

from __future__ import annotations

from typing import Any

from .artifacts import read_json, read_jsonl, run_file, setting_samples
from .discussion_analysis import tie_breaks
from .summary import by_condition

VOTING_SETTINGS = ("multi_agent", "self_consistency")  # the inference settings whose answer is a majority vote


def tie_break_lines(marker: dict[str, Any]) -> list[str]:
    """How many final-round votes of each voting setting needed the seeded tie-break (`saie_lib.voting`), and in
    how many of those the gold was among the tied answers, so the draw decided whether the item was correct."""
    found: dict[str, list[str]] = {}
    for condition, runs in by_condition(marker).items():
        for run_dir in runs.values():
            seed = read_json(run_file(run_dir, "metrics"))["seed"]
            for setting in VOTING_SETTINGS:
                path = setting_samples(run_dir, setting)
                if path.is_file():
                    t = tie_breaks(read_jsonl(path), seed=seed)
                    found.setdefault(setting, []).append(f"{condition} {t['ties']} of {t['n']} "
                                                         f"({t['decisive']} decided)")
    if not found:
        return []
    return ["Final-round votes that needed the seeded tie-break (several answers shared the most votes; "
            "`saie_lib.voting`), per condition, and in brackets those where the gold was one of the tied answers, "
            "so the draw decided whether the item counted as correct: "
            + "; ".join(f"{setting}: {', '.join(parts)}" for setting, parts in found.items()) + ".", ""]
