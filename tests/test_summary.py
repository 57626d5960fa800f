"""Paired comparisons and verdicts of the summary step."""

import pytest

from saie_lib.stats import mcnemar_exact
from saie_lib.summary import paired, verdict


@pytest.mark.parametrize("a_only, b_only, expected", [
    (0, 0, 1.0), (0, 5, 0.0625), (6, 0, 0.03125), (3, 3, 1.0), (1, 9, 0.021484375),
])
def test_mcnemar_exact_matches_the_binomial_test(a_only, b_only, expected):
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected)


def test_paired_counts_discordant_examples_and_gives_a_verdict():
    a = {str(i): i < 8 for i in range(10)}  # 8 right
    b = {str(i): i < 1 for i in range(10)}  # 1 right, a subset of a's
    result = paired(a, b)
    assert (result["a_only"], result["b_only"], result["accuracy_a"], result["accuracy_b"]) == (7, 0, 0.8, 0.1)
    assert verdict(result) == "holds"
    assert verdict(paired(b, a)) == "reversed"
    assert verdict(paired(a, a)) == "not resolved at this n"


def test_paired_refuses_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired({"1": True}, {"2": True})


def test_min_discordant_is_the_first_count_that_reaches_significance():
    from saie_lib.stats import ALPHA, min_discordant

    k = min_discordant()
    assert mcnemar_exact(k, 0) < ALPHA <= mcnemar_exact(k - 1, 0)
