"""Holm–Bonferroni, the minimum detectable difference, the Wilcoxon signed-rank test and per-example ROUGE,
checked against values derived here from first principles (hand arithmetic, exact enumeration)."""

import math
from itertools import product
from statistics import NormalDist

import pytest

from saie_lib.stats import (
    ASSUMED_DISCORDANCE,
    holm,
    mcnemar_exact,
    min_detectable_difference,
    reasoning_rouge,
    rouge_per_example,
    wilcoxon_signed_rank,
)


def test_holm_matches_the_step_down_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_holm_refuses_a_p_value_outside_0_1():
    with pytest.raises(ValueError, match="p-values"):
        holm([0.2, 1.5])


def _binom(k, n, p):
    return math.comb(n, k) * p ** k * (1 - p) ** (n - k)


def _exact_mcnemar_power(n, psi, delta, alpha=0.05):
    """P(exact McNemar p < alpha) when each example is discordant with probability psi, and a discordant one
    favours a with probability (psi + delta) / (2 psi): full enumeration of the multinomial."""
    favour_a = (psi + delta) / (2 * psi)
    return sum(_binom(d, n, psi) * sum(_binom(k, d, favour_a) for k in range(d + 1) if mcnemar_exact(k, d - k) < alpha)
               for d in range(n + 1))


def test_mde_solves_connors_power_equation():
    # n = 100, psi = 0.5: delta * sqrt(n) - z_a * sqrt(psi) = z_b * sqrt(psi - delta^2) at the MDE
    z_a, z_b = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.8)
    delta = min_detectable_difference(100, 0.5)
    assert delta * 10 - z_a * math.sqrt(0.5) == pytest.approx(z_b * math.sqrt(0.5 - delta ** 2))
    assert delta == pytest.approx(0.1958, abs=5e-4)  # 0.7071 * (19.600 + 0.8416 * 9.842) / 100.708


@pytest.mark.parametrize("n", [30, 100])
def test_mde_gives_about_80_percent_power_to_the_exact_test(n):
    delta = min_detectable_difference(n, ASSUMED_DISCORDANCE)
    # the normal approximation is slightly optimistic for the (conservative) exact test at these n
    assert 0.72 < _exact_mcnemar_power(n, ASSUMED_DISCORDANCE, delta) < 0.82
    assert _exact_mcnemar_power(n, ASSUMED_DISCORDANCE, 0.6 * delta) < 0.5


def test_mde_shrinks_with_n_and_with_agreement_and_is_none_when_nothing_is_detectable():
    assert min_detectable_difference(400) < min_detectable_difference(100) < min_detectable_difference(30)
    assert min_detectable_difference(100, 0.2) < min_detectable_difference(100, 0.5)
    assert min_detectable_difference(4) is None  # more than the 0.5 discordance allows
    with pytest.raises(ValueError, match="discordance"):
        min_detectable_difference(100, 0.0)
    with pytest.raises(ValueError, match="n must"):
        min_detectable_difference(0)


def _enumerated_wilcoxon_p(ranks, w_plus):
    """Two-sided p by listing every sign assignment of the ranks."""
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in product((0, 1), repeat=len(ranks))]
    lower = sum(s <= w_plus for s in sums) / len(sums)
    upper = sum(s >= w_plus for s in sums) / len(sums)
    return min(1.0, 2 * min(lower, upper))


def test_wilcoxon_exact_small_cases_by_hand():
    all_up = wilcoxon_signed_rank([1, 2, 3, 4, 5], [0] * 5)
    assert (all_up["n"], all_up["a_higher"], all_up["w_plus"], all_up["p_value"]) == (5, 5, 15, 2 / 32)
    # d = 1, -2, 3, 4, 5, 6: W- = 2; sign sets with rank sum <= 2 are {}, {1}, {2}: p = 2 * 3/64
    one_down = wilcoxon_signed_rank([1, -2, 3, 4, 5, 6], [0] * 6)
    assert one_down["p_value"] == pytest.approx(6 / 64)
    assert wilcoxon_signed_rank([0.1, 0.2], [0.1, 0.2]) == {"n": 0, "a_higher": 0, "b_higher": 0, "w_plus": 0.0,
                                                           "p_value": 1.0}


def test_wilcoxon_with_ties_and_zeros_matches_enumeration():
    a = [0.3, 0.1, 0.5, 0.2, 0.2, 0.9, 0.4]
    b = [0.1, 0.3, 0.5, 0.0, 0.4, 0.4, 0.1]  # |d| = .2 .2 0 .2 .2 .5 .3: a zero and four tied
    result = wilcoxon_signed_rank(a, b)
    ranks = [2.5, 2.5, 2.5, 2.5, 6, 5]  # non-zero |d| .2 .2 .2 .2 .5 .3 -> mean ranks
    w_plus = 2.5 + 2.5 + 6 + 5  # d > 0 at .2, .2, .5, .3
    assert (result["n"], result["a_higher"], result["b_higher"], result["w_plus"]) == (6, 4, 2, w_plus)
    assert result["p_value"] == pytest.approx(_enumerated_wilcoxon_p(ranks, w_plus))


def test_wilcoxon_normal_approximation_for_large_n():
    n = 100
    a = [float(i % 7) + (0.5 if i < 70 else -0.5) for i in range(n)]  # 70 up, 30 down, |d| all tied at 0.5
    b = [float(i % 7) for i in range(n)]
    result = wilcoxon_signed_rank(a, b)
    # all ranks tied at (n+1)/2 = 50.5: W+ = 70 * 50.5, mean n * 50.5 / 2, variance n * 50.5^2 / 4
    z = (abs(70 * 50.5 - 50 * 50.5) - 0.5) / math.sqrt(n * 50.5 ** 2 / 4)
    assert result["p_value"] == pytest.approx(2 * (1 - NormalDist().cdf(z)))
    assert result["p_value"] < 0.001


def test_wilcoxon_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        wilcoxon_signed_rank([1.0], [1.0, 2.0])


def test_per_example_rouge_keyed_by_id_and_matching_the_mean():
    outputs = ["the cat sat on the mat. The answer is A.", "dogs bark loudly", "no reference here"]
    references = ["the cat sat on a mat", "cats purr", None]
    result = reasoning_rouge(outputs, references, ids=["x", "y", "z"])
    per = result["per_example"]
    assert set(per) == {"x", "y"}  # no reference, no score
    assert per["y"]["rougeL"] == 0.0 and 0.5 < per["x"]["rougeL"] < 1.0
    assert result["rougeL"] == pytest.approx((per["x"]["rougeL"] + per["y"]["rougeL"]) / 2)
    assert "per_example" not in reasoning_rouge(outputs, references)


def test_per_example_rouge_refuses_repeated_ids():
    with pytest.raises(ValueError, match="repeat"):
        rouge_per_example(["a", "b"], ["a", "b"], ["1", "1"])
