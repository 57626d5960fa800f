"""Does a partner remark hold the stance it was asked for? A rule-based check, task-aware, and stance fidelity.

A weak partner often ignores its stance: an "adversarial" remark that just restates the learner's answer
("The answer is (E).") agrees with it, and a "supportive" one may call the answer wrong. The check reads two
things from a remark and combines them:

- **the answer it argues for** (`argued`): a value after an answer cue ("the (correct) answer is (C)",
  "answer: 18", "the answer should be B", "(C) is correct"), or, for multiple-choice tasks, the one choice
  whose text follows the cue ("The answer is a water fountain."). A cue about the learner's own answer ("the
  student's answer is C") argues for nothing. Several distinct values ("The answer is (A) ... The answer is
  (B) ...") argue for none, and the remark's stance is unclear.
- **its judgement** of the learner's answer: positive ("correct", "right", "I agree", "great"), negative
  ("incorrect", "wrong", "not correct", "a mistake", "I disagree", "the answer is not D"), mixed or none.

An argued answer decides agreement when the learner's answer is known; the judgement decides it otherwise.
A remark whose two signals contradict each other ("incorrect. The correct answer is (C)" when the learner
said C) has no stance (None): it matches neither label. Stance fidelity = the share of remarks whose checked
stance equals the stance they were asked for.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from .conditions import STANCES
from .parsing import normalize_number
from .tasks import get_task

_BOLD = r"[ \t]*:?[ \t]*\**[ \t]*"
# "answer is", "answer would be", "answer: ", "choice is", with an optional owner ("the student's answer is")
_CUE_RE = re.compile(
    r"(?P<owner>\b(?:student'?s?'?|your|their|his|her)\s+(?:final\s+|own\s+|original\s+)?)?"
    r"\b(?:answer|choice|option)\b(?:\s+(?:is|was|would\s+be|should\s+be|must\s+be)"
    r"(?:\s+(?:indeed|actually|clearly|definitely|probably|likely))?|[ \t]*:)", re.I)
_LETTER_VALUE_RE = re.compile(rf"{_BOLD}(?:\((?P<paren>[A-Za-z])\)|(?P<bare>[A-Z])(?![\w'])(?!(?<=A)\s+[a-z]))")
_LETTER_IS_RIGHT_RE = re.compile(
    r"(?:\((?P<paren>[A-Z])\)|\b(?P<bare>[A-Z]))\s+is\s+(?:the\s+)?(?:correct|right|best|better)\b")
_NUMBER_VALUE_RE = re.compile(r"[ \t]*:?[ \t]*\**[ \t]*(?P<num>[-\u2212]?\$?\d[\d,]*(?:\.\d+)?)%?")
# "15% of $80", "3 x 4", "10 - 3 = 7": the number starts an expression, it is not the answer
_EXPRESSION_RE = re.compile(r"[ \t]*(?:of\b|times\b|plus\b|minus\b|divided\b|[x\u00d7*/+\-\u2212][ \t]*\$?\d)",
                            re.I)

_NEGATIVE_RE = re.compile(
    r"\b(?:incorrect|wrong|mistaken|mistakes?|errors?|flawed|flaws?|disagree|misinterpret\w*|misunderst\w*"
    r"|not\s+(?:entirely\s+|quite\s+|completely\s+|fully\s+)?(?:correct|right|accurate|valid|true|sound)"
    r"|(?:isn't|is\s+not|aren't)\s+(?:correct|right|accurate|valid)"
    r"|(?:don't|do\s+not|can't|cannot)\s+agree"
    r"|not\s+the\s+(?:most\s+\w+|best|right|correct)\s+answer"
    r"|answer\s+(?:is|was)\s+not(?:\s+(?:correct|right|accurate|valid))?)\b", re.I)
_ANSWER_NOUN_RE = re.compile(r"\b(?:correct|right|accurate|best)\s+(?:answer|choice|option|step)\b", re.I)
_POSITIVE_RE = re.compile(
    r"\b(?:correct|right|accurate|agree|agreed|well\s+done|good|great|excellent|sound|valid|spot\s+on|exactly"
    r"|makes\s+sense)\b", re.I)
_ABOUT_LEARNER_RE = re.compile(
    r"\b(?:student|you|your|i|response|reasoning|answer|solution|explanation|argument|approach|steps?)\b", re.I)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class StanceCheck:
    """What a remark does with the learner's answer. `stance`: supportive, adversarial or None (unclear)."""

    stance: str | None
    agrees: bool | None  # with the learner's answer; None: cannot tell
    argued: str | None  # the answer it argues for (normalised as gold answers are); None: none or several
    judgement: str | None  # of the learner's answer: positive, negative, mixed or None
    reason: str

    def holds(self, label: str) -> bool:
        """True when the remark takes the stance it was asked for."""
        return self.stance == label

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def argued_answers(task: str, remark: str, choices: Sequence[str] = ()) -> list[str]:
    """The distinct answers `remark` argues for, in order of appearance (values outside the task's labels
    count too, so a list of letters A..H is several answers, not one)."""
    spec = get_task(task)
    found: list[str] = []
    for cue in _CUE_RE.finditer(remark):
        if cue["owner"]:
            continue
        value = (_number_after(remark, cue.end()) if spec.answer_type == "number"
                 else _letter_after(remark, cue.end(), spec.labels, choices))
        if value is not None:
            found.append(value)
    if spec.answer_type != "number":
        found += [m["paren"] or m["bare"] for m in _LETTER_IS_RIGHT_RE.finditer(remark)]
    return list(dict.fromkeys(found))


def _number_after(text: str, pos: int) -> str | None:
    match = _NUMBER_VALUE_RE.match(text, pos)
    if match is None or _EXPRESSION_RE.match(text, match.end()):
        return None
    return normalize_number(match["num"].rstrip(","))


def _letter_after(text: str, pos: int, labels: Sequence[str], choices: Sequence[str]) -> str | None:
    match = _LETTER_VALUE_RE.match(text, pos)
    if match is not None:
        return (match["paren"] or match["bare"]).upper()
    rest = text[pos:].split("\n", 1)[0][:200]
    named = [label for label, choice in zip(labels, choices)
             if choice.strip() and re.search(rf"(?<!\w){re.escape(choice.strip())}(?!\w)", rest, re.I)]
    return named[0] if len(named) == 1 else None


def judgement(remark: str) -> str | None:
    """positive / negative / mixed / None: what the remark's sentences about the learner's work say of it."""
    negative = positive = False
    for sentence in _SENTENCE_RE.split(remark):
        if not _ABOUT_LEARNER_RE.search(sentence):
            continue
        negative |= bool(_NEGATIVE_RE.search(sentence))
        rest = _ANSWER_NOUN_RE.sub(" ", _NEGATIVE_RE.sub(" ", sentence))
        positive |= bool(_POSITIVE_RE.search(rest))
    if negative and positive:
        return "mixed"
    return "negative" if negative else "positive" if positive else None


def check_stance(task: str, remark: str, learner_answer: str | None, choices: Sequence[str] = ()) -> StanceCheck:
    """The stance `remark` takes towards `learner_answer` (the learner's parsed answer; None if it had none)."""
    argued = argued_answers(task, remark, choices)
    said = judgement(remark)
    if len(argued) > 1:
        return StanceCheck(None, None, None, said, f"argues for several answers ({', '.join(argued)})")
    one = argued[0] if argued else None
    if one is not None and learner_answer is not None:
        agrees = one == learner_answer
        if agrees and said == "negative":
            return StanceCheck(None, True, one, said, "calls the answer wrong but argues for it")
        if not agrees and said == "positive":
            return StanceCheck(None, False, one, said, "calls the answer right but argues for another")
        return StanceCheck("supportive" if agrees else "adversarial", agrees, one, said,
                           "argues for the learner's answer" if agrees else "argues for another answer")
    agrees = {"positive": True, "negative": False}.get(said or "")
    if agrees is None:
        return StanceCheck(None, None, one, said, "no clear judgement of the answer")
    return StanceCheck("supportive" if agrees else "adversarial", agrees, one, said,
                       f"judges the answer {'right' if agrees else 'wrong'}")


def _first_try_holds(row: dict[str, Any]) -> bool:
    tries = row.get("stance_tries") or []
    return bool(tries[0]["holds"]) if tries else bool(row["stance_holds"])


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def fidelity(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Stance fidelity of transcript rows (those with a supportive/adversarial stance and a `stance_check`):
    the share whose checked stance matches the label, overall and per stance, for the remark trained on and
    for the first try; and the partner tries spent (`stance_retries` re-asks)."""
    rows = [r for r in rows if r.get("stance") in STANCES and r.get("stance_check") is not None]
    result: dict[str, Any] = {"remarks": len(rows), "overall": _share([r["stance_holds"] for r in rows]),
                              "first_try": _share([_first_try_holds(r) for r in rows])}
    for stance in STANCES:
        subset = [r for r in rows if r["stance"] == stance]
        result[stance] = {"remarks": len(subset), "holds": _share([r["stance_holds"] for r in subset]),
                          "first_try": _share([_first_try_holds(r) for r in subset])}
    tries = [len(r.get("stance_tries") or [None]) for r in rows]
    result["partner_tries"] = sum(tries)
    result["retried_remarks"] = sum(t > 1 for t in tries)
    return result


def pooled_fidelity(metrics: list[dict[str, Any]]) -> dict[str, float | None]:
    """Share of a condition's remarks (all seeds) whose checked stance matched their label, for the remark trained
    on and for the partner's first try, and the most re-asks its runs allowed; None where the condition has no
    stance-labelled remarks (base, none, placebo) or its runs predate the stance check."""
    found = [m["stance_fidelity"] for m in metrics if (m.get("stance_fidelity") or {}).get("remarks")]
    remarks = sum(f["remarks"] for f in found)
    if not remarks:
        return {"stance_fidelity": None, "stance_first_try": None, "stance_retries": None}
    pooled = {key: sum(f[part] * f["remarks"] for f in found) / remarks
              for key, part in (("stance_fidelity", "overall"), ("stance_first_try", "first_try"))}
    return {**pooled, "stance_retries": max(f.get("stance_retries", 0) for f in found)}
