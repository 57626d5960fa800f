"""Answer extraction: compiled module-level regexes, a named invalid sentinel, strict and flexible modes.

Strict accepts only the format our prompts ask for ("The answer is N." / "The answer is X.") plus GSM8K's
gold "#### N" line; flexible falls back to looser rules, tried in a fixed order, and records which rule
matched in `Parsed.method`. The task registry decides numbers vs letters and the valid labels.

Scoring cannot be gamed by hedging: a response whose matches of the rule that fires name more than one
distinct answer ("The answer is A. ... The answer is D.") is invalid with method "conflicting_answers", and
an answer cue followed by an enumerated list ("The answer is\n(A) x\n(B) y") is invalid with method
"option_list", in both modes. The same answer stated twice stays valid. RULES_VERSION names this rule set;
re-scored records carry it (saie_lib.rescore).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from saie_lib.tasks import get_task

MODES = ("strict", "flexible")
RULES_VERSION = "3"  # 1: last match wins; 2: conflicting answers and option lists invalid, "(d)" after the cue;
# 3: a bare letter response, quotes after the cue, "1 + 1 = 2" read as 2, one-line option lists, "Q: ... A:"
# dialogue markers and negated choice texts (issue 24)

_NUMBER_CLEAN_RE = re.compile(r"[,\s$€£%]")

# A number: optional sign and "$" in either order (no sign right after a word or ")", so "3-2" ends in 2,
# not -2); thousands groups only as exact groups of three ("1,234" is one number, "3, 4" and "3,4" are two);
# decimals, where a sentence-ending period is not a decimal point ("5." is 5) and ".5" is 0.5; optional "%".
_SIGN = r"(?:(?<![\w)])[-\u2212]\$?|\$[-\u2212]?)?"
_DIGITS = r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<!\d)\.\d+)"
_NUM = rf"(?P<num>{_SIGN}{_DIGITS}%?)"
_BOLD = r"\s*:?\s*\**\s*[\"'\u201c\u2018]?"  # optional ":", markdown bold and an opening quote before the answer

_NUMBER_RE = re.compile(_NUM, re.ASCII)
_STRICT_NUMBER_RE = re.compile(rf"(?:(?P<hashes>####)|\bthe\s+answer\s+is){_BOLD}{_NUM}", re.I | re.ASCII)
_BOXED_NUMBER_RE = re.compile(rf"\\boxed\{{\s*(?:\\?\$)?{_NUM}\s*(?:\\%)?\s*\}}", re.ASCII)
_ANSWER_NUMBER_RE = re.compile(rf"\banswer\b(?:\s+is\b)?{_BOLD}{_NUM}", re.I | re.ASCII)
_FALLBACK_NUMBER_RULES = (  # flexible mode, in order, after the strict rule
    ("boxed", _BOXED_NUMBER_RE),
    ("answer_colon", _ANSWER_NUMBER_RE),
    ("last_number", _NUMBER_RE),
)
_LATEX_THOUSANDS_RE = re.compile(r"(?<=\d)\{,\}(?=\d{3})")  # "1{,}234" -> "1,234"
# "The answer is 1 + 1 = 2.": the number after the cue starts an expression; its result is the answer
_RESULT_RE = re.compile(r"(?:\s*[-+*/\u00d7\u00f7x]\s*\(?\$?\d[\d,]*(?:\.\d+)?\)?)+\s*=\s*"
                        + _NUM.replace("?P<num>", "?P<result>"), re.ASCII)

# An answer cue ("the answer is", "answer:", "final answer is") followed on the next lines by two or more
# enumerated items ("(A) x", "b) y", "1. z"): a list of options, not an answer.
_ITEM = r"[ \t>*]*(?:\([A-Za-z0-9]\)|[A-Za-z0-9][.):])(?!\S)"
_OPTION_LIST_RE = re.compile(
    rf"\banswer(?:\s+is\b[ \t]*:?|[ \t]*:)[ \t*]*\n\s*^{_ITEM}[^\n]*\n\s*^{_ITEM}", re.I | re.M)

# A letter: uppercase, in parentheses "(B)" or bare; a bare letter ends a word, and a bare "A" followed by
# a lowercase word is the article ("The answer is A man who...") and never read as choice A. Right after an
# answer cue a lowercase letter in parentheses is a choice too ("the answer is (d)" -> D); a bare lowercase
# word never is ("The answer is a man").
_LETTER = r"(?-i:\(?(?P<letter>[A-Z])(?:\)|(?![\w'])(?!(?<=A)\s+[a-z]))|\((?P<lower>[a-z])\))"

_STRICT_LETTER_RE = re.compile(rf"\bthe\s+answer\s+is{_BOLD}{_LETTER}", re.I)
_ANSWER_LETTER_RE = re.compile(rf"\banswer\b(?:\s+is\b)?{_BOLD}{_LETTER}", re.I)
_PAREN_LETTER_RE = re.compile(r"\((?P<letter>[A-Z])\)")
_LETTER_LINE_RE = re.compile(r"^[ \t>*]*\(?(?P<letter>[A-Z])[.):](?!\S)", re.M)
_BARE_LETTER_RE = re.compile(r"\A[\s*]*(?P<letter>[A-Z])[\s*.]*\Z")  # the whole response is one letter: "A"
_LETTER_RULES = (  # flexible mode tries them in order; strict mode uses the first only
    ("answer_is", _STRICT_LETTER_RE),
    ("answer_colon", _ANSWER_LETTER_RE),
    ("paren_letter", _PAREN_LETTER_RE),
    ("letter_line", _LETTER_LINE_RE),
    ("bare_letter", _BARE_LETTER_RE),
)
# "Q: ...\nA: ...": a question/answer dialogue, whose "A:" is a speaker, not choice A
_DIALOGUE_RE = re.compile(r"^[ \t>*]*Q:", re.M)
# an answer cue whose line lists options in order: "The answer is (A) bank (B) library (C) park"
_CUE_LINE_RE = re.compile(r"\banswer(?:\s+is\b|[ \t]*:)(?P<line>[^\n]*)", re.I)
_LINE_ITEM_RE = re.compile(r"\((?P<letter>[A-Za-z])\)")
# a choice text right after a negation ("does not tell story", "isn't the bank") is not chosen
_NEGATED_BEFORE_RE = re.compile(r"(?:\b(?:not|never|no)|n't)\s+(?:\w+\s+)?$", re.I)
# Rules that also match a copied-out choice list ("(A) bank (B) park ..."): they count only when every
# match names the same letter.
_UNANIMOUS_RULES = ("paren_letter", "letter_line")


@dataclass(frozen=True)
class Parsed:
    """An extracted answer: `value` is the normalised answer or None (invalid); `method` names the rule."""

    value: str | None
    method: str


INVALID = Parsed(None, "none")
CONFLICTING = Parsed(None, "conflicting_answers")
OPTION_LIST = Parsed(None, "option_list")
INVALID_METHODS = (INVALID.method, CONFLICTING.method, OPTION_LIST.method)


def normalize_number(text: str) -> str | None:
    """Canonical string of a number ("1,234.50" -> "1234.5", "18.0" -> "18", "-3" -> "-3"); None if not a number."""
    cleaned = _NUMBER_CLEAN_RE.sub("", text.strip().replace("\u2212", "-")).rstrip(".")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _letter(match: re.Match) -> str:
    lower = match.groupdict().get("lower")
    return lower.upper() if lower else match["letter"]


def _one_answer(matches: list[tuple[str, str]]) -> Parsed | None:
    """(value, method) matches of one rule -> the last, CONFLICTING if they name different values, None if none."""
    if not matches:
        return None
    if len({value for value, _ in matches}) > 1:
        return CONFLICTING
    return Parsed(*matches[-1])


def _number_rule(regex: re.Pattern, method: str, text: str) -> Parsed | None:
    found = []
    for match in regex.finditer(text):
        named = "hashes" if match.groupdict().get("hashes") else method
        found.append((normalize_number(_expression_result(text, match)), named))
    return _one_answer(found)


def _expression_result(text: str, match: re.Match) -> str:
    """The number a cue names, or the result of the expression it starts ("1 + 1 = 2" -> "2")."""
    value, end = match["num"], match.end()
    while (result := _RESULT_RE.match(text, end)) is not None:
        value, end = result["result"], result.end()
    return value


def _extract_number(text: str, flexible: bool) -> Parsed:
    text = _LATEX_THOUSANDS_RE.sub(",", text)
    if _OPTION_LIST_RE.search(text):
        return OPTION_LIST
    rules = (("answer_is", _STRICT_NUMBER_RE), *_FALLBACK_NUMBER_RULES) if flexible else (
        ("answer_is", _STRICT_NUMBER_RE),)
    for method, regex in rules:
        if method == "last_number":
            match = None
            for match in regex.finditer(text):
                pass
            return Parsed(normalize_number(match["num"]), method) if match else INVALID
        parsed = _number_rule(regex, method, text)
        if parsed is not None:
            return parsed
    return INVALID


def _match_choice_text(text: str, labels: Sequence[str], choices: Sequence[str]) -> Parsed:
    """The label of the one choice whose text appears in `text` (whole words, any case); else INVALID."""
    found = [label for label, choice in zip(labels, choices) if choice.strip() and _chosen(text, choice.strip())]
    return Parsed(found[0], "choice_text") if len(found) == 1 else INVALID


def _chosen(text: str, choice: str) -> bool:
    """`choice` appears in `text` as whole words, at least once not right after a negation."""
    return any(not _NEGATED_BEFORE_RE.search(text[max(0, m.start() - 40): m.start()])
               for m in re.finditer(rf"(?<!\w){re.escape(choice)}(?!\w)", text, re.I))


def _one_line_option_list(text: str) -> bool:
    """An answer cue followed, on its line, by three or more options in label order ("(A) x (B) y (C) z")."""
    for cue in _CUE_LINE_RE.finditer(text):
        letters = [m["letter"].upper() for m in _LINE_ITEM_RE.finditer(cue["line"])]
        if len(letters) >= 3 and all(ord(b) == ord(a) + 1 for a, b in zip(letters, letters[1:])):
            return True
    return False


def _letter_matches(regex: re.Pattern, method: str, text: str) -> list[str]:
    """The letters a rule finds, less a dialogue's "A:" speaker marker for the letter-line rule."""
    dialogue = method == "letter_line" and _DIALOGUE_RE.search(text) is not None
    return [_letter(m) for m in regex.finditer(text)
            if not (dialogue and m["letter"] == "A" and m.group(0).endswith(":"))]


def _extract_letter(text: str, flexible: bool, labels: Sequence[str], choices: Sequence[str]) -> Parsed:
    if _OPTION_LIST_RE.search(text) or _one_line_option_list(text):
        return OPTION_LIST
    rules = _LETTER_RULES if flexible else _LETTER_RULES[:1]
    for method, regex in rules:
        letters = _letter_matches(regex, method, text)
        letters = [letter for letter in letters if letter in labels]
        if method in _UNANIMOUS_RULES:
            if len(set(letters)) == 1:
                return Parsed(letters[0], method)
            continue
        parsed = _one_answer([(letter, method) for letter in letters])
        if parsed is not None:
            return parsed
    return _match_choice_text(text, labels, choices) if flexible else INVALID


def extract_answer(task: str, text: str, mode: str = "flexible", *, choices: Sequence[str] = ()) -> Parsed:
    """The answer in a model output for `task`, or INVALID. `choices` (texts in label order) enable the
    flexible choice-text rule for multiple-choice tasks."""
    spec = get_task(task)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    flexible = mode == "flexible"
    if spec.answer_type == "number":
        return _extract_number(text, flexible)
    return _extract_letter(text, flexible, spec.labels, choices)


# The end of a finished sentence: ".", "!" or "?", closing quotes, brackets or bold after it allowed.
_FINISHED_RE = re.compile(r"[.!?][\"')\]*]*$")
_SENTENCE_BREAK_RE = re.compile(r"(?<=[.!?])\s+|\n+")


def answer_reached(task: str, text: str, parsed: Parsed) -> bool:
    """Did a response state the answer `parsed` read from it? A turn cut off mid-reasoning did not: for number
    tasks, a value found only by the last-number rule counts when the response's last sentence is finished and
    holds that number ("... so 18 in total."), not when it is a number from unfinished reasoning ("... 8 * 2 =
    16 barrels.\n\nTo find out how many"). Any other valid parse is a stated answer."""
    if parsed.value is None:
        return False
    if parsed.method != "last_number" or get_task(task).answer_type != "number":
        return True
    text = text.rstrip()
    if not _FINISHED_RE.search(text):
        return False
    last = _SENTENCE_BREAK_RE.split(text)[-1]
    return any(normalize_number(m["num"]) == parsed.value for m in _NUMBER_RE.finditer(last))


def stated_answer(task: str, text: str, *, choices: Sequence[str] = ()) -> str | None:
    """The answer a response states (flexible parse), or None when it has none or was cut off before it."""
    parsed = extract_answer(task, text, choices=choices)
    return parsed.value if answer_reached(task, text, parsed) else None


def grade(task: str, text: str, gold: str, *, mode: str = "flexible",
          choices: Sequence[str] = ()) -> tuple[Parsed, bool]:
    """(parsed answer, correct) against a gold that is already normalised (as loaders give it); an unparseable
    answer is never correct. The one place model output is scored."""
    parsed = extract_answer(task, text, mode, choices=choices)
    return parsed, parsed.value is not None and parsed.value == gold
