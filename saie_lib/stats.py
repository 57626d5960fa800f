"""Statistics the study reports, in one place: binomial intervals, the paired exact McNemar test, and ROUGE of
the reasoning. Pure functions of counts and strings; nothing here reads run dirs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from statistics import fmean
from typing import Any

ALPHA = 0.05  # significance level of every test the results page states
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# The final answer sentence ("The answer is 18." / GSM8K's "#### 18"), only when it is on the last line.
_ANSWER_TAIL_RE = re.compile(r"\**[ \t]*(?:####|\bthe\s+answer\s+is\b)[^\n]*\s*\Z", re.I)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible at 0, 1 and small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def min_discordant(alpha: float = ALPHA) -> int:
    """The fewest discordant examples, all one way, that reach p < alpha."""
    return next(k for k in range(1, 100) if mcnemar_exact(k, 0) < alpha)


def reasoning_only(text: str) -> str:
    """`text` without its final answer sentence ("The answer is 18." or "#### 18") when that sentence is on
    the last line, so ROUGE compares the reasoning and not the shared answer template."""
    return _ANSWER_TAIL_RE.sub("", text).rstrip()


def rouge_scores(predictions: Sequence[str], references: Sequence[str | None]) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F1 (stemmed, `rouge_score` package) of predictions against references.

    Pairs whose reference is None (no rationale for that example) are skipped and counted in `skipped`;
    with nothing left to score the means are None. Apply `reasoning_only` first to compare reasoning.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:
        raise ImportError("ROUGE needs the rouge_score package: pip install rouge-score==0.1.2") from error
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references) if ref is not None]
    means = {t: fmean(s[t].fmeasure for s in scores) if scores else None for t in ROUGE_TYPES}
    return {**means, "n": len(scores), "skipped": len(references) - len(scores)}


def reasoning_rouge(outputs: Sequence[str], references: Sequence[str | None]) -> dict[str, Any]:
    """ROUGE of each output's reasoning (answer line removed) against its reference rationale."""
    return rouge_scores([reasoning_only(o) for o in outputs], references)
