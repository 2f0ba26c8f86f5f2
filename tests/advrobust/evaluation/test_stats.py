"""advrobust.evaluation.stats: Wilson intervals, and the paired comparison of two models (Newcombe's
interval and the exact McNemar test) against published values, an independent implementation and
simulated coverage."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from advrobust.evaluation.stats import compare_paired, mcnemar_exact_p, paired_difference_interval, wilson_interval


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662),   # Wilson (1927) worked example, as tabulated by Newcombe (1998)
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
])
def test_wilson_interval_known_values(k, n, low, high):
    got_low, got_high = wilson_interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-4) and got_high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges():
    low, high = wilson_interval([0], [0])
    assert low[0] == 0.0 and high[0] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@pytest.mark.parametrize("table, low, high", [
    # Newcombe (1998), Table II: (e, f, g, h) and his method 10 interval for (f - g) / n.
    ((36, 12, 2, 0), 0.0569, 0.3404),
    ((18, 12, 2, 18), 0.0562, 0.3290),
    ((53, 0, 0, 1), -0.0729, 0.0729),
])
def test_paired_interval_matches_newcombes_published_values(table, low, high):
    # Ours is second minus first: the published first-minus-second interval, negated.
    got_low, got_high = paired_difference_interval(*table)
    assert -got_high == pytest.approx(low, abs=1e-4) and -got_low == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("only_first, only_second", [(0, 6), (1, 9), (5, 5), (3, 0), (40, 61), (0, 0), (700, 650)])
def test_mcnemar_exact_p_is_the_two_sided_binomial_test_of_the_discordant_pairs(only_first, only_second):
    n = only_first + only_second
    expected = 1.0 if n == 0 else scipy_stats.binomtest(only_first, n, 0.5).pvalue
    assert mcnemar_exact_p(only_first, only_second) == pytest.approx(expected, rel=1e-9)


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # Two correlated models (as two defenses of one architecture are): per example, both
    # right with 0.70, only the first 0.06, only the second 0.10, neither 0.14. True
    # difference +0.04; 400 examples per table, 4000 tables.
    rng = np.random.default_rng(0)
    probabilities = [0.70, 0.06, 0.10, 0.14]
    tables = rng.multinomial(400, probabilities, size=4000)
    covered = np.mean([low <= 0.04 <= high for low, high in (paired_difference_interval(*t) for t in tables)])
    assert 0.93 <= covered <= 0.97, covered


def test_pairing_makes_the_difference_far_more_precise_than_two_separate_intervals():
    # 2000 images, 1500 right for both; 60 only for the first, 100 only for the second.
    first = np.zeros(2000, bool)
    second = np.zeros(2000, bool)
    first[:1560] = True
    second[:1500] = True
    second[1560:1660] = True
    result = compare_paired(first, second)
    assert (result.first, result.second) == (0.78, 0.80)
    assert result.difference == pytest.approx(0.02) and (result.only_first, result.only_second) == (60, 100)
    assert result.ci95_low > 0, "a 2-point gain on these discordant counts is established"
    assert result.p_value == pytest.approx(scipy_stats.binomtest(60, 160, 0.5).pvalue)
    assert result.p_value < 0.01
    # The separate 95% Wilson intervals (about +-1.8 points each) overlap.
    assert result.ci95_high - result.ci95_low < 0.5 * 2 * 2 * 0.018


def test_identical_models_differ_by_nothing_and_the_interval_is_centred():
    correct = np.arange(100) % 3 > 0
    result = compare_paired(correct, correct)
    assert result.difference == 0 and result.p_value == 1.0
    assert result.ci95_low < 0 < result.ci95_high and result.ci95_low == pytest.approx(-result.ci95_high)


@pytest.mark.parametrize("first, second, match", [
    (np.ones(3, bool), np.ones(4, bool), "need two 1-D bool arrays of one length"),
    (np.ones(3), np.ones(3), "need two 1-D bool arrays"),
    (np.ones((2, 2), bool), np.ones((2, 2), bool), "need two 1-D bool arrays"),
])
def test_compare_paired_refuses_what_is_not_two_outcome_vectors(first, second, match):
    with pytest.raises(ValueError, match=match):
        compare_paired(first, second)


@pytest.mark.parametrize("counts", [(-1, 0, 0, 0), (1.5, 0, 0, 0), (True, 0, 0, 0)])
def test_paired_interval_refuses_bad_counts(counts):
    with pytest.raises(ValueError, match="the four counts must be integers >= 0"):
        paired_difference_interval(*counts)
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        mcnemar_exact_p(counts[0], 3)
