"""Does a partner remark hold the stance it was asked for? A rule-based check, task-aware, and stance fidelity.

A weak partner often ignores its stance: an "adversarial" remark that just restates the learner's answer
("The answer is (E).") agrees with it, and a "supportive" one may call the answer wrong. The check gives one of
three verdicts, with the reason: the remark **agrees** with the learner's answer, **disagrees** (calls it wrong or
argues for another answer), or **neither** (no judgement, a contradiction, several answers). It reads:

- **the answer the remark argues for** (`argued`): a value after an answer cue ("the (correct) answer is (C)",
  "answer: 18", "the answer should be B", "(C) is correct"), on the cue's line or, after "is:", on the next
  line; for GSM8K, after "the answer is that ..." the last number of that sentence not negated ("3 rows, not
  2" -> 3); for multiple-choice tasks, the one choice whose text follows the cue ("The answer is a water
  fountain."). A cue about the learner's own answer ("the student's answer is C") argues for nothing; several
  distinct values, or a list of options after a cue, argue for none.
- **its judgement** of the learner's work: positive ("correct", "right", "I agree", "great"), negative
  ("incorrect", "wrong", "I disagree", "not the most accurate answer"), mixed or none, read sentence by
  sentence with the choice texts masked (a choice "Great leader" praises nothing). A hedge ("correct, but not
  entirely correct") counts only for its negative words; in "A, but B" the clause after "but" decides when it
  judges at all.
- **a verbatim echo**: a remark that repeats the learner's response (or is repeated by it) and states the same
  answer agrees with it.

Leaked prompt text ("Disagree with the student's answer. In two or three sentences ...") is removed first: it
is the partner's instructions, not its stance. The learner's answer is the one its response *states*
(`parsing.stated_answer`): a turn cut off mid-reasoning has none, and the judgement alone decides. An argued
answer decides agreement when the learner's answer is known; a remark whose two signals contradict each other
("incorrect. The correct answer is (C)" when the learner said C) is neither. Stance fidelity = the share of
remarks whose verdict is the stance they were asked for (agrees for supportive, disagrees for adversarial),
counted over remarks that replied to a stated answer; remarks to a turn with no answer are their own category.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from .conditions import STANCES
from .parsing import normalize_number, stated_answer
from .tasks import get_task

CHECKER_VERSION = "2"  # 1: two signals, learner answer as parsed; 2: three verdicts, issue 24's failure modes
VERDICTS = ("agrees", "disagrees", "neither")
STANCE_OF = {"agrees": "supportive", "disagrees": "adversarial"}  # the stance each verdict holds

_BOLD = r"[ \t]*:?[ \t]*\**[ \t]*"
# "answer is", "answer would be", "answer: ", "choice is", with an optional owner ("the student's answer is")
_CUE_RE = re.compile(
    r"(?P<owner>\b(?:student'?s?'?|your|their|his|her)\s+(?:final\s+|own\s+|original\s+)?)?"
    r"\b(?:answer|choice|option)\b(?:\s+(?:is|was|would\s+be|should\s+be|must\s+be)"
    r"(?:\s+(?:indeed|actually|clearly|definitely|probably|likely))?|[ \t]*:)", re.I)
_LETTER_VALUE_RE = re.compile(rf"{_BOLD}(?:\((?P<paren>[A-Za-z])\)|(?P<bare>[A-Z])(?![\w'])(?!(?<=A)\s+[a-z]))")
# the cue's line holds nothing more ("The correct answer is:"): the value may open the next non-empty line
_LINE_END_RE = re.compile(r"[ \t]*:?[ \t*]*\n\s*")
_NEXT_LINE_LETTER_RE = re.compile(r"[*\s]*(?:\((?P<paren>[A-Za-z])\)|(?P<bare>[A-Z])[.):])")
_ITEM = r"[ \t>*]*(?:\((?P<{0}>[A-Za-z0-9])\)|(?P<{0}_bare>[A-Za-z0-9])[.):])(?!\S)"
_OPTION_LIST_RE = re.compile(rf"{_ITEM.format('first')}[^\n]*\n\s*{_ITEM.format('second')}")
_LETTER_IS_RIGHT_RE = re.compile(
    r"(?:\((?P<paren>[A-Z])\)|\b(?P<bare>[A-Z]))\s+is\s+(?:the\s+)?(?:correct|right|best|better)\b")
_NUMBER_VALUE_RE = re.compile(r"[ \t]*:?[ \t]*\**[ \t]*(?P<num>[-\u2212]?\$?\d[\d,]*(?:\.\d+)?)%?")
_NUMBER_RE = re.compile(r"(?<![\w.])(?P<num>[-\u2212]?\$?\d[\d,]*(?:\.\d+)?)%?")
# "15% of $80", "3 x 4", "10 - 3 = 7": the number starts an expression, it is not the answer
_EXPRESSION_RE = re.compile(r"[ \t]*(?:of\b|times\b|plus\b|minus\b|divided\b|[x\u00d7*/+\-\u2212=][ \t]*\$?\d)",
                            re.I)
_THAT_RE = re.compile(r"[ \t]+that\b", re.I)
_NEGATED_RE = re.compile(r"\b(?:not|instead\s+of|rather\s+than)\s+(?:\w+\s+){0,2}$", re.I)
_SENTENCE_END_RE = re.compile(r"(?<!\d)[.!?](?!\d)|\n")

_NEGATIVE_RE = re.compile(
    r"\b(?:incorrect|wrong|mistaken|mistakes?|errors?|flawed|flaws?|disagree|misinterpret\w*|misunderst\w*"
    r"|not\s+(?:correct|right|accurate|valid|true|sound)"
    r"|(?:isn't|is\s+not|aren't)\s+(?:correct|right|accurate|valid)"
    r"|(?:don't|do\s+not|can't|cannot)\s+agree"
    r"|not\s+the\s+(?:most\s+\w+|best|right|correct)\s+answer"
    r"|answer\s+(?:is|was)\s+not(?:\s+(?:correct|right|accurate|valid))?)\b", re.I)
# "not entirely correct": partly right, partly not; its positive words do not count
_HEDGE_RE = re.compile(r"\bnot\s+(?:entirely|quite|completely|fully|totally|always|100%)\s+"
                       r"(?:correct|right|accurate|valid|true|sound)\b", re.I)
_ANSWER_NOUN_RE = re.compile(r"\b(?:correct|right|accurate|best)\s+(?:answer|choice|option|step)\b", re.I)
_POSITIVE_RE = re.compile(
    r"\b(?:correct|right|accurate|agree|agreed|well\s+done|good|great|excellent|sound|valid|spot\s+on|exactly"
    r"|makes\s+sense)\b", re.I)
_ABOUT_LEARNER_RE = re.compile(
    r"\b(?:student|you|your|i|response|reasoning|answer|solution|explanation|argument|approach|steps?)\b", re.I)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_BUT_RE = re.compile(r",?\s+but\s+|[;,]\s*however,?\s+", re.I)
# The partner's own instructions copied into its reply (prompts.STANCE_INSTRUCTIONS, RETRY_INSTRUCTIONS, ...):
# from the phrase to the end of its line
_LEAKED_RE = re.compile(r"(?:\b(?:dis)?agree\s+with\s+the\s+student'?s\s+answer\b|\bsay\s+plainly\s+that\s+the"
                        r"\s+student'?s\s+answer\b|\(attempt\s+\d+:|\byou\s+are\s+discussing\s+a\s+question"
                        r"\s+with\s+a\s+student\b|\bin\s+two\s+or\s+three\s+sentences,)[^\n]*", re.I)


@dataclass(frozen=True)
class StanceCheck:
    """What a remark does with the learner's answer: `verdict` agrees / disagrees / neither, and why."""

    verdict: str
    argued: str | None  # the answer it argues for (normalised as gold answers are); None: none or several
    judgement: str | None  # of the learner's work: positive, negative, mixed or None
    learner_answer: str | None  # the answer the learner's turn stated; None: it stated none
    reason: str

    @property
    def stance(self) -> str | None:
        """The stance the remark holds: supportive (agrees), adversarial (disagrees) or None (neither)."""
        return STANCE_OF.get(self.verdict)

    def holds(self, label: str) -> bool:
        """True when the remark takes the stance it was asked for."""
        return self.stance == label

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "stance": self.stance, "checker": CHECKER_VERSION}


def without_leaked_instructions(remark: str) -> str:
    """`remark` without the partner's own instructions copied into it."""
    return _LEAKED_RE.sub(" ", remark)


def argued_answers(task: str, remark: str, choices: Sequence[str] = ()) -> list[str]:
    """The distinct answers `remark` argues for, in order of appearance (values outside the task's labels
    count too, so a list of letters A..H is several answers, not one; a list of options after a cue is
    several)."""
    spec = get_task(task)
    found: list[str] = []
    for cue in _CUE_RE.finditer(remark):
        if not cue["owner"]:
            found += (_numbers_after(remark, cue.end()) if spec.answer_type == "number"
                      else _letters_after(remark, cue.end(), spec.labels, choices))
    if spec.answer_type != "number":
        found += [m["paren"] or m["bare"] for m in _LETTER_IS_RIGHT_RE.finditer(remark)]
    return list(dict.fromkeys(found))


def _numbers_after(text: str, pos: int) -> list[str]:
    match = _NUMBER_VALUE_RE.match(text, pos)
    if match is not None:
        if _EXPRESSION_RE.match(text, match.end()):
            return []
        return [v] if (v := normalize_number(match["num"].rstrip(","))) is not None else []
    that = _THAT_RE.match(text, pos)
    return _last_number_of_sentence(text, that.end()) if that else []


def _last_number_of_sentence(text: str, pos: int) -> list[str]:
    """"the answer is that they need 16 barrels" -> 16: the last number up to the sentence's end that is not
    negated ("3 rows, not 2 rows" -> 3) and does not start an expression ("2 * 3 = 6" -> 6)."""
    end = _SENTENCE_END_RE.search(text, pos)
    clause = text[pos: end.start() if end else len(text)]
    kept = [m for m in _NUMBER_RE.finditer(clause) if not _NEGATED_RE.search(clause[: m.start()])
            and not _EXPRESSION_RE.match(clause, m.end())]
    value = normalize_number(kept[-1]["num"].rstrip(",")) if kept else None
    return [value] if value is not None else []


def _letters_after(text: str, pos: int, labels: Sequence[str], choices: Sequence[str]) -> list[str]:
    match = _LETTER_VALUE_RE.match(text, pos)
    if match is not None:
        return [(match["paren"] or match["bare"]).upper()]
    line_end = _LINE_END_RE.match(text, pos)
    if line_end is not None:  # "The correct answer is:\n\n(C) Water Fountain"
        options = _OPTION_LIST_RE.match(text, line_end.end())
        if options:  # two options listed: several answers
            return [(options[k] or options[f"{k}_bare"]).upper() for k in ("first", "second")]
        match = _NEXT_LINE_LETTER_RE.match(text, line_end.end())
        if match is not None:
            return [(match["paren"] or match["bare"]).upper()]
        pos = line_end.end()
    rest = text[pos:].split("\n", 1)[0][:200]
    named = [label for label, choice in zip(labels, choices) if _mentions(rest, choice)]
    return named[:1] if len(named) == 1 else []


def _mentions(text: str, choice: str) -> bool:
    return bool(choice.strip()) and re.search(rf"(?<!\w){re.escape(choice.strip())}(?!\w)", text, re.I) is not None


def _masked(text: str, choices: Sequence[str]) -> str:
    """`text` with every choice text replaced by "…", so that a choice's words are never read as a judgement."""
    for choice in sorted((c.strip() for c in choices if c.strip()), key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(choice)}(?!\w)", "\u2026", text, flags=re.I)
    return text


def _polarity(clause: str) -> set[str]:
    found = {"negative"} if _NEGATIVE_RE.search(clause) else set()
    rest = _ANSWER_NOUN_RE.sub(" ", _NEGATIVE_RE.sub(" ", clause))
    return found | ({"positive"} if _POSITIVE_RE.search(rest) else set())


def _sentence_polarity(sentence: str) -> set[str]:
    """A hedge keeps only the negative words; after "but", the last clause decides when it judges at all."""
    if _HEDGE_RE.search(sentence):
        return _polarity(_HEDGE_RE.sub(" ", sentence)) & {"negative"}
    last = _BUT_RE.split(sentence)[-1]
    return _polarity(last) or _polarity(sentence)


def judgement(remark: str, choices: Sequence[str] = ()) -> str | None:
    """positive / negative / mixed / None: what the remark's sentences about the learner's work say of it."""
    found: set[str] = set()
    for sentence in _SENTENCE_RE.split(_masked(without_leaked_instructions(remark), choices)):
        if _ABOUT_LEARNER_RE.search(sentence):
            found |= _sentence_polarity(sentence)
    return "mixed" if len(found) == 2 else next(iter(found), None)


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def echoes(remark: str, learner_text: str | None) -> bool:
    """True when the remark repeats the learner's response, or the response contains the whole remark."""
    if not learner_text:
        return False
    said, heard = _plain(remark), _plain(learner_text)
    return bool(said) and (said in heard or heard in said)


def check_stance(task: str, remark: str, learner_answer: str | None, choices: Sequence[str] = (),
                 learner_text: str | None = None) -> StanceCheck:
    """The stance `remark` takes towards `learner_answer` (the answer the learner's turn stated, None when it
    stated none: `parsing.stated_answer`); `learner_text` (the learner's response) lets a verbatim echo count."""
    text = without_leaked_instructions(remark)
    argued, said = argued_answers(task, text, choices), judgement(text, choices)

    def verdict(name: str, reason: str, one: str | None = None) -> StanceCheck:
        return StanceCheck(name, one, said, learner_answer, reason)

    if len(argued) > 1:
        return verdict("neither", f"argues for several answers ({', '.join(argued)})")
    one = argued[0] if argued else None
    if one is not None and learner_answer is not None:
        agrees = one == learner_answer
        if agrees and said == "negative":
            return verdict("neither", "calls the answer wrong but argues for it", one)
        if not agrees and said == "positive":
            return verdict("neither", "calls the answer right but argues for another", one)
        return verdict("agrees" if agrees else "disagrees",
                       "argues for the learner's answer" if agrees else "argues for another answer", one)
    if said in ("positive", "negative"):
        agrees = said == "positive"
        return verdict("agrees" if agrees else "disagrees", f"judges the answer {'right' if agrees else 'wrong'}",
                       one)
    if (said is None and learner_answer is not None and echoes(text, learner_text)
            and stated_answer(task, text, choices=choices) == learner_answer):
        return verdict("agrees", "repeats the learner's answer verbatim")
    if learner_answer is None and said is None:
        return verdict("neither", "the learner's turn states no answer and the remark judges nothing", one)
    return verdict("neither", "mixed judgement of the answer" if said == "mixed" else
                   "no clear judgement of the answer", one)


def _first_try_holds(row: dict[str, Any]) -> bool:
    tries = row.get("stance_tries") or []
    return bool(tries[0]["holds"]) if tries else bool(row["stance_holds"])


def replied_to_an_answer(row: dict[str, Any]) -> bool:
    """Did the remark of this transcript row reply to a learner turn that stated an answer? (Rows checked before
    the checker recorded the learner's answer count as answered: it cannot be told.)"""
    check = row["stance_check"]
    return "learner_answer" not in check or check["learner_answer"] is not None


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _cell(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if replied_to_an_answer(r)]
    unanswered = [r for r in rows if not replied_to_an_answer(r)]
    return {"remarks": len(rows), "answered": len(answered), "no_answer": len(unanswered),
            "holds": _share([r["stance_holds"] for r in answered]),
            "first_try": _share([_first_try_holds(r) for r in answered]),
            "no_answer_holds": _share([r["stance_holds"] for r in unanswered])}


def fidelity(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Stance fidelity of transcript rows (those with a supportive/adversarial stance and a `stance_check`):
    the share whose verdict is the stance asked for, over the remarks that replied to a stated answer, overall
    and per stance, for the remark trained on and for the first try. Remarks to a turn that stated no answer
    are their own category: counted (`no_answer`), with the share the judgement alone made hold
    (`no_answer_holds`). And the partner tries spent (`stance_retries` re-asks)."""
    rows = [r for r in rows if r.get("stance") in STANCES and r.get("stance_check") is not None]
    every = _cell(rows)
    result: dict[str, Any] = {"remarks": every["remarks"], "answered": every["answered"],
                              "no_answer": every["no_answer"], "overall": every["holds"],
                              "first_try": every["first_try"], "no_answer_holds": every["no_answer_holds"]}
    for stance in STANCES:
        result[stance] = _cell([r for r in rows if r["stance"] == stance])
    tries = [len(r.get("stance_tries") or [None]) for r in rows]
    result["partner_tries"] = sum(tries)
    result["retried_remarks"] = sum(t > 1 for t in tries)
    return result


def learner_turns(stated: Iterable[str | None]) -> dict[str, int]:
    """A run's learner turns in discussion (their stated answers), and how many stated none."""
    stated = list(stated)
    return {"turns": len(stated), "no_answer": sum(a is None for a in stated)}


def pooled_fidelity(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """A condition's stance fidelity over all its seeds: the share of its remarks to a stated answer whose verdict
    matched their label, for the remark trained on and for the partner's first try; how many remarks replied
    to a turn with no answer, of how many; and the most re-asks its runs allowed. None where the condition has
    no stance-labelled remarks (base, none, placebo) or its runs predate the stance check."""
    found = [m["stance_fidelity"] for m in metrics if (m.get("stance_fidelity") or {}).get("remarks")]
    empty = {"stance_fidelity": None, "stance_first_try": None, "stance_retries": None, "stance_remarks": None,
             "stance_no_answer": None}
    if not found:
        return empty
    answered = [(f, f.get("answered", f["remarks"])) for f in found]
    total = sum(n for _, n in answered)
    pooled = {key: sum(f[part] * n for f, n in answered if n) / total if total else None
              for key, part in (("stance_fidelity", "overall"), ("stance_first_try", "first_try"))}
    return {**pooled, "stance_retries": max(f.get("stance_retries", 0) for f in found),
            "stance_remarks": sum(f["remarks"] for f in found),
            "stance_no_answer": sum(f.get("no_answer", 0) for f in found)}
