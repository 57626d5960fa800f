"""Statistics the study reports, in one place: binomial intervals, the paired exact McNemar test, Holm–Bonferroni
correction over an experiment's claims, the minimum detectable difference of a paired comparison, Cohen's kappa
of two raters, ROUGE of the
reasoning (mean and per example) and the Wilcoxon signed-rank test that pairs it. Pure functions of counts and
strings; nothing here reads run dirs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from statistics import NormalDist, fmean
from typing import Any

ALPHA = 0.05  # significance level of every test the results page states
POWER = 0.80  # the power at which the minimum detectable difference is stated
# Assumed share of examples on which two conditions disagree in correctness (the discordance rate) when a
# profile has no records to measure it: what two conditions at accuracy 0.5 with independent errors would give
# (2 * 0.5 * 0.5), the largest discordance independent errors allow, so the stated MDE errs on the large side.
ASSUMED_DISCORDANCE = 0.5
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


def _scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:
        raise ImportError("ROUGE needs the rouge_score package: pip install rouge-score==0.1.2") from error
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


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
    scorer = _scorer()
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references) if ref is not None]
    means = {t: fmean(s[t].fmeasure for s in scores) if scores else None for t in ROUGE_TYPES}
    return {**means, "n": len(scores), "skipped": len(references) - len(scores)}


def rouge_per_example(predictions: Sequence[str], references: Sequence[str | None],
                      ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """id -> ROUGE-1/2/L F1 of that example's prediction against its reference, for the examples that have one:
    what a paired test of ROUGE between two conditions needs. Ids must be unique."""
    if not len(predictions) == len(references) == len(ids):
        raise ValueError(f"{len(predictions)} predictions, {len(references)} references and {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise ValueError("per-example ROUGE is keyed by example id; the ids given repeat")
    scorer = _scorer()
    return {i: {t: s[t].fmeasure for t in ROUGE_TYPES} for i, s in
            ((i, scorer.score(ref, pred)) for pred, ref, i in zip(predictions, references, ids) if ref is not None)}


def reasoning_rouge(outputs: Sequence[str], references: Sequence[str | None],
                    ids: Sequence[str] | None = None) -> dict[str, Any]:
    """ROUGE of each output's reasoning (answer line removed) against its reference rationale; with `ids`, also
    `per_example` (id -> scores, see `rouge_per_example`) so a later summary can test ROUGE paired."""
    reasoning = [reasoning_only(o) for o in outputs]
    means = rouge_scores(reasoning, references)
    return means if ids is None else {**means, "per_example": rouge_per_example(reasoning, references, ids)}


# ---------------------------------------------------------------- several claims, power

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest p is multiplied by (m - i + 1),
    then made non-decreasing in that order and capped at 1. A claim holds at family-wise level alpha when its
    adjusted p < alpha (Holm 1979), which controls the chance of any false 'holds' among an experiment's claims."""
    m = len(p_values)
    if any(not 0.0 <= p <= 1.0 for p in p_values):
        raise ValueError(f"p-values must lie in [0, 1], got {list(p_values)}")
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items: (observed - chance agreement) / (1 - chance), chance
    from each rater's own label shares. 1 is perfect agreement, 0 what chance gives; None with no items, or when
    both raters gave every item one and the same label (chance agreement 1: kappa is undefined)."""
    if len(a) != len(b):
        raise ValueError(f"kappa needs two labels per item; got {len(a)} and {len(b)} labels")
    n = len(a)
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    chance = sum(list(a).count(k) * list(b).count(k) for k in set(a) | set(b)) / (n * n)
    return None if chance == 1 else (observed - chance) / (1 - chance)


def min_detectable_difference(n: int, discordance: float = ASSUMED_DISCORDANCE, *, alpha: float = ALPHA,
                              power: float = POWER) -> float | None:
    """The smallest accuracy difference between two conditions evaluated on the same n examples that a two-sided
    McNemar test at `alpha` detects with probability `power`, given the share `discordance` of examples on which
    the two disagree in correctness (psi); None when no difference is detectable (it would exceed psi).

    Normal approximation of McNemar's test (Connor 1987): with delta = p10 - p01 and psi = p10 + p01,
    power = Phi((delta * sqrt(n) - z_a * sqrt(psi)) / sqrt(psi - delta^2)), z_a = z_{1-alpha/2}, z_b = z_power.
    Setting power and solving the quadratic for delta gives
        delta = sqrt(psi) * (z_a * sqrt(n) + z_b * sqrt(n + z_b^2 - z_a^2)) / (n + z_b^2).
    At small n the exact test (which the page reports) is more conservative than this approximation.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 < discordance <= 1.0:
        raise ValueError(f"discordance must lie in (0, 1], got {discordance}")
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    if n + z_b * z_b - z_a * z_a <= 0:
        return None
    delta = math.sqrt(discordance) * (z_a * math.sqrt(n) + z_b * math.sqrt(n + z_b * z_b - z_a * z_a)) / (n + z_b * z_b)
    return delta if delta <= discordance else None


# ---------------------------------------------------------------- paired test of a continuous score

EXACT_WILCOXON_MAX_N = 60  # above this many non-zero differences the normal approximation is used


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired scores a[i] vs b[i] (e.g. per-example ROUGE-L of two
    conditions). Zero differences are dropped (Wilcoxon's convention), tied |differences| share their mean rank.
    Up to EXACT_WILCOXON_MAX_N non-zero differences the p-value is exact (the null distribution of the positive
    rank sum, each sign +/- with probability 1/2, counted over half-ranks); above, the normal approximation with
    the tie correction and a continuity correction of 1/2. Returns n (non-zero), a_higher, b_higher,
    w_plus and p_value (1.0 with no non-zero difference)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    diffs = [round(x - y, 12) for x, y in zip(a, b)]
    diffs = [d for d in diffs if d != 0]
    n = len(diffs)
    result = {"n": n, "a_higher": sum(d > 0 for d in diffs), "b_higher": sum(d < 0 for d in diffs)}
    if n == 0:
        return {**result, "w_plus": 0.0, "p_value": 1.0}
    doubled = _doubled_ranks([abs(d) for d in diffs])  # 2 * rank: integers even with half-ranks
    w2 = sum(r for r, d in zip(doubled, diffs) if d > 0)
    p = _exact_signed_rank_p(doubled, w2) if n <= EXACT_WILCOXON_MAX_N else _normal_signed_rank_p(doubled, w2)
    return {**result, "w_plus": w2 / 2, "p_value": min(1.0, p)}


def _doubled_ranks(values: Sequence[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = start + end + 2  # 2 * mean of ranks start+1 .. end+1
        start = end + 1
    return ranks


def _exact_signed_rank_p(doubled: Sequence[int], w2: int) -> float:
    total = sum(doubled)
    counts = [1] + [0] * total  # counts[s]: sign assignments whose positive doubled-rank sum is s
    for rank in doubled:
        for s in range(total, rank - 1, -1):
            counts[s] += counts[s - rank]
    all_signs = 2 ** len(doubled)
    lower = sum(counts[: w2 + 1]) / all_signs
    upper = sum(counts[w2:]) / all_signs
    return 2 * min(lower, upper)


def _normal_signed_rank_p(doubled: Sequence[int], w2: int) -> float:
    ranks = [r / 2 for r in doubled]
    mean = sum(ranks) / 2
    variance = sum(r * r for r in ranks) / 4  # equals n(n+1)(2n+1)/24 less the tie correction
    z = max(0.0, abs(w2 / 2 - mean) - 0.5) / math.sqrt(variance)
    return 2 * (1 - NormalDist().cdf(z))
