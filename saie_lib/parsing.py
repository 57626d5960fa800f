"""Answer extraction: compiled module-level regexes, a named invalid sentinel, strict and flexible modes.

Strict accepts only the format our prompts ask for (the last "The answer is N." / "The answer is X.")
plus GSM8K's gold "#### N" line; flexible falls back to looser rules, tried in a fixed order, and records
which rule matched in `Parsed.method`. The task registry decides numbers vs letters and the valid labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from saie_lib.tasks import get_task

MODES = ("strict", "flexible")

_NUMBER_CLEAN_RE = re.compile(r"[,\s$€£%]")

# A number: optional sign and "$" in either order (no sign right after a word or ")", so "3-2" ends in 2,
# not -2); thousands groups only as exact groups of three ("1,234" is one number, "3, 4" and "3,4" are two);
# decimals, where a sentence-ending period is not a decimal point ("5." is 5) and ".5" is 0.5; optional "%".
_SIGN = r"(?:(?<![\w)])[-\u2212]\$?|\$[-\u2212]?)?"
_DIGITS = r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<!\d)\.\d+)"
_NUM = rf"(?P<num>{_SIGN}{_DIGITS}%?)"
_BOLD = r"\s*:?\s*\**\s*"  # optional ":" and markdown bold between the phrase and the answer

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

# A letter: uppercase, in parentheses "(B)" or bare; a bare letter ends a word, and a bare "A" followed by
# a lowercase word is the article ("The answer is A man who...") and never read as choice A.
_LETTER = r"(?-i:\(?(?P<letter>[A-Z])(?:\)|(?![\w'])(?!(?<=A)\s+[a-z])))"

_STRICT_LETTER_RE = re.compile(rf"\bthe\s+answer\s+is{_BOLD}{_LETTER}", re.I)
_ANSWER_LETTER_RE = re.compile(rf"\banswer\b(?:\s+is\b)?{_BOLD}{_LETTER}", re.I)
_PAREN_LETTER_RE = re.compile(r"\((?P<letter>[A-Z])\)")
_LETTER_LINE_RE = re.compile(r"^[ \t>*]*\(?(?P<letter>[A-Z])[.):](?!\S)", re.M)
_LETTER_RULES = (  # flexible mode tries them in order; strict mode uses the first only
    ("answer_is", _STRICT_LETTER_RE),
    ("answer_colon", _ANSWER_LETTER_RE),
    ("paren_letter", _PAREN_LETTER_RE),
    ("letter_line", _LETTER_LINE_RE),
)
# Rules that also match a copied-out choice list ("(A) bank (B) park ..."): they count only when every
# match names the same letter.
_UNANIMOUS_RULES = ("paren_letter", "letter_line")


@dataclass(frozen=True)
class Parsed:
    """An extracted answer: `value` is the normalised answer or None (invalid); `method` names the rule."""

    value: str | None
    method: str


INVALID = Parsed(None, "none")


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


def _last_match(regex: re.Pattern, text: str, labels: Sequence[str] = ()) -> re.Match | None:
    """The last match of `regex`; with `labels`, the last whose `letter` group is one of them."""
    last = None
    for match in regex.finditer(text):
        if not labels or match["letter"] in labels:
            last = match
    return last


def _extract_number(text: str, flexible: bool) -> Parsed:
    text = _LATEX_THOUSANDS_RE.sub(",", text)
    match = _last_match(_STRICT_NUMBER_RE, text)
    if match:
        return Parsed(normalize_number(match["num"]), "hashes" if match["hashes"] else "answer_is")
    if not flexible:
        return INVALID
    for method, regex in _FALLBACK_NUMBER_RULES:
        match = _last_match(regex, text)
        if match:
            return Parsed(normalize_number(match["num"]), method)
    return INVALID


def _match_choice_text(text: str, labels: Sequence[str], choices: Sequence[str]) -> Parsed:
    """The label of the one choice whose text appears in `text` (whole words, any case); else INVALID."""
    found = [
        label
        for label, choice in zip(labels, choices)
        if choice.strip() and re.search(rf"(?<!\w){re.escape(choice.strip())}(?!\w)", text, re.I)
    ]
    return Parsed(found[0], "choice_text") if len(found) == 1 else INVALID


def _extract_letter(text: str, flexible: bool, labels: Sequence[str], choices: Sequence[str]) -> Parsed:
    rules = _LETTER_RULES if flexible else _LETTER_RULES[:1]
    for method, regex in rules:
        if method in _UNANIMOUS_RULES:
            letters = {m["letter"] for m in regex.finditer(text) if m["letter"] in labels}
            if len(letters) == 1:
                return Parsed(letters.pop(), method)
            continue
        match = _last_match(regex, text, labels)
        if match:
            return Parsed(match["letter"], method)
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


def grade(task: str, text: str, gold: str, *, mode: str = "flexible",
          choices: Sequence[str] = ()) -> tuple[Parsed, bool]:
    """(parsed answer, correct) against a gold that is already normalised (as loaders give it); an unparseable
    answer is never correct. The one place model output is scored."""
    parsed = extract_answer(task, text, mode, choices=choices)
    return parsed, parsed.value is not None and parsed.value == gold
