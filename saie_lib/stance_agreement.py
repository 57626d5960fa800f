"""How far the stance checker (`saie_lib.stance`) agrees with a careful reader: its verdicts on hand-labelled
committed remarks (tests/fixtures/stance_labels.jsonl: remark, learner response, the answer it stated, task, the
stance asked for, and a label agrees / disagrees / neither given by reading, before the checker's verdict was
seen), as raw agreement and Cohen's kappa, overall and per task, and the stance fidelity each would report on the
labelled remarks that replied to a stated answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import read_jsonl
from .conditions import STANCES
from .stance import VERDICTS, check_stance
from .stats import cohen_kappa

WANTED = {"supportive": "agrees", "adversarial": "disagrees"}  # the verdict a remark of each stance should get


def checker_verdict(row: dict[str, Any]) -> str:
    return check_stance(row["task"], row["remark"], row["learner_answer"], row["choices"],
                        learner_text=row["learner"]).verdict


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    bad = [i + 1 for i, r in enumerate(rows) if r.get("label") not in VERDICTS]
    if bad:
        raise ValueError(f"{path}: line(s) {bad[:5]} have no label from {list(VERDICTS)}")
    return rows


def agreement(labels: list[str], verdicts: list[str]) -> dict[str, Any]:
    n = len(labels)
    return {"n": n, "agree": sum(a == b for a, b in zip(labels, verdicts)), "kappa": cohen_kappa(labels, verdicts)}


def labelled_agreement(path: str | Path) -> dict[str, Any]:
    """The checker against the hand labels of `path`: agreement and kappa overall and per task; per asked stance,
    the fidelity by hand and by the checker over the remarks that replied to a stated answer."""
    rows = read_labelled(path)
    verdicts = [checker_verdict(r) for r in rows]
    result = agreement([r["label"] for r in rows], verdicts)
    result["tasks"] = {task: agreement([r["label"] for r in rows if r["task"] == task],
                                       [v for r, v in zip(rows, verdicts) if r["task"] == task])
                       for task in sorted({r["task"] for r in rows})}
    result["fidelity"] = {}
    for stance in STANCES:
        chosen = [(r, v) for r, v in zip(rows, verdicts) if r["asked"] == stance and r["learner_answer"] is not None]
        result["fidelity"][stance] = {
            "remarks": len(chosen),
            "hand": sum(r["label"] == WANTED[stance] for r, _ in chosen) / len(chosen) if chosen else None,
            "checker": sum(v == WANTED[stance] for _, v in chosen) / len(chosen) if chosen else None}
    return result
