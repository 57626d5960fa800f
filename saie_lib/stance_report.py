"""The results page's stance section: how often the partner's remarks held the stance asked for (per task and
condition, the remarks to a learner turn with no answer counted apart), how many learner turns stated no answer,
and how far the checker that reads the stances agrees with careful hand labels (computed from the labelled
sets, `saie_lib.stance_agreement`)."""

from __future__ import annotations

from typing import Any, Callable

from .conditions import ALL_CONDITIONS, STANCES
from .paths import stance_label_files
from .stance import CHECKER_VERSION
from .stance_agreement import labelled_agreement


def pivot(rows: list[dict[str, Any]], columns: list[str], value: Callable[[dict[str, Any]], str]) -> list[str]:
    """A task x condition Markdown table."""
    lines = ["| task | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = {r["condition"]: r for r in rows if r["task"] == task}
        lines.append(f"| {task} | " + " | ".join(value(cells[c]) if c in cells else "" for c in columns) + " |")
    return lines


def fidelity_cell(row: dict[str, Any]) -> str:
    retries = row.get("stance_retries") or 0
    share = "—" if row["stance_fidelity"] is None else f"{row['stance_fidelity']:.2f} ({row['stance_first_try']:.2f})"
    unanswered = row.get("stance_no_answer") or 0
    return (share + (f" · no answer {unanswered}/{row['stance_remarks']}" if unanswered else "")
            + (f" · ≤ {retries:.0f} re-asks" if retries else ""))


def _turns_cell(row: dict[str, Any]) -> str:
    return f"{row['learner_turns_no_answer']}/{row['learner_turns']}"


def fidelity_lines(training: list[dict[str, Any]]) -> list[str]:
    """Stance fidelity per condition, the learner turns without an answer, and the checker's agreement."""
    held = [r for r in training if r.get("stance_remarks")]
    if not held:
        return []
    columns = [c for c in ALL_CONDITIONS if any(r["condition"] == c for r in held)]
    lines = ["Stance fidelity: the share of the partner's remarks whose stance, as the rule-based checker "
             f"(`saie_lib/stance.py`, version {CHECKER_VERSION}) reads it, is the stance asked for: agrees with the "
             "learner's answer (supportive), disagrees with it or argues for another (adversarial). Counted over the "
             "remarks that replied to a learner turn that stated an answer (the remark trained on; the partner's "
             "first try in brackets, before any `stance_retries` re-ask); the remarks to a turn that stated none "
             "(cut off, or unparseable) are their own category, counted after \"no answer\"; then the re-asks the "
             "runs allowed, if any. Runs recorded before this checker were re-checked with it (`saie_lib.rescore`).",
             ""] + pivot(held, columns, fidelity_cell) + [""]
    turns = [r for r in training if r.get("learner_turns")]
    if turns:
        lines += ["Learner turns in discussion that stated no answer (`parsing.stated_answer`: a turn cut off at "
                  "`learner_max_new_tokens` before its answer, or with none that parses), of all its turns "
                  "(first answers and revisions' inputs), per task and condition:", ""]
        lines += pivot(turns, [c for c in ALL_CONDITIONS if any(r["condition"] == c for r in turns)], _turns_cell)
        lines += [""]
    return lines + agreement_lines()


def agreement_lines() -> list[str]:
    """The checker against the hand-labelled remarks: kappa on the set its rules were fixed with and on the
    held-out set, and the fidelity each would report on the held-out remarks."""
    files = stance_label_files()
    if not all(path.is_file() for path in files.values()):
        return []
    found = {name: labelled_agreement(path) for name, path in files.items()}
    dev, held = found["development"], found["held_out"]
    per_task = ", ".join(f"{task} {a['kappa']:.2f}" for task, a in held["tasks"].items() if a["kappa"] is not None)
    fidelity = "; ".join(f"{stance} {f['hand']:.2f} by hand vs {f['checker']:.2f} by the checker ({f['remarks']} "
                         f"remarks)" for stance, f in held["fidelity"].items() if f["remarks"] and stance in STANCES)
    return [f"How far the checker agrees with a careful reader: committed remarks drawn at random (seeded, balanced "
            f"across tasks and asked stances), each labelled agrees / disagrees / neither by reading it, before "
            f"seeing the checker's verdict (`tests/fixtures/stance_labels*.jsonl`). On the {held['n']} held-out "
            f"remarks, labelled after the checker's rules were settled, its verdict matches the label on "
            f"{held['agree']} (Cohen's kappa {held['kappa']:.2f}; per task {per_task}); on the {dev['n']} remarks "
            f"its rules were fixed with, {dev['agree']} (kappa {dev['kappa']:.2f}). Fidelity on the held-out remarks "
            f"that replied to a stated answer: {fidelity}.", ""]
