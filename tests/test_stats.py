"""Paired statistics on synthetic predictions whose answer is known."""
import numpy as np
import pytest

from ranklab.experiments.stats import mcnemar, minimal_detectable_effect, paired_bootstrap, verdict


def synthetic(p_a: float, p_b: float, n_seeds: int = 5, n: int = 800, seed: int = 0):
    """Predictions of two methods that are right with probabilities p_a and p_b, independently."""
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, 2, n) for _ in range(n_seeds)]
    flip = lambda y, p: np.where(rng.random(n) < p, y, 1 - y)  # noqa: E731
    return [flip(y, p_a) for y in labels], [flip(y, p_b) for y in labels], labels


def test_a_planted_difference_is_detected():
    a, b, labels = synthetic(0.75, 0.82)
    result = paired_bootstrap(a, b, labels, n_boot=500)
    assert result.verdict == "reproduced" and 0.04 < result.difference < 0.10
    assert result.low < result.difference < result.high and result.low > 0
    assert paired_bootstrap(b, a, labels, n_boot=500).verdict == "contradicted"  # the claim B > A, reversed


def test_no_difference_is_inconclusive():
    a, b, labels = synthetic(0.80, 0.80, seed=1)
    result = paired_bootstrap(a, b, labels, n_boot=500)
    assert result.verdict == "inconclusive" and result.low < 0 < result.high
    assert result.minimal_detectable_effect > abs(result.difference)


def test_interval_covers_the_truth_in_most_repeats():
    covered = 0
    for repeat in range(20):
        a, b, labels = synthetic(0.70, 0.75, n_seeds=3, n=400, seed=100 + repeat)
        result = paired_bootstrap(a, b, labels, n_boot=300, seed=repeat)
        covered += result.low <= 0.05 <= result.high
    assert covered >= 16  # a 95% interval: about 19 of 20


def test_minimal_detectable_effect_shrinks_with_more_data():
    small = paired_bootstrap(*synthetic(0.8, 0.8, n=200, seed=2), n_boot=400)
    large = paired_bootstrap(*synthetic(0.8, 0.8, n=3200, seed=2), n_boot=400)
    assert large.minimal_detectable_effect < small.minimal_detectable_effect / 2.5  # ~ 1/sqrt(16) = 1/4
    assert minimal_detectable_effect(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)


def test_any_metric_works():
    a, b, labels = synthetic(0.7, 0.9, n_seeds=2)
    mcc = lambda p, y: float(np.corrcoef(p, y)[0, 1])  # noqa: E731
    assert paired_bootstrap(a, b, labels, metric=mcc, n_boot=200).verdict == "reproduced"


def test_mcnemar_counts_discordant_pairs():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (3, 1) and p == pytest.approx(0.625)  # binomial(1; 4, 0.5), two-sided
    assert mcnemar(a, a)[2] == 1.0


def test_bad_input_is_clear():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([np.zeros(3)], [np.zeros(4)], [np.zeros(3)])
    with pytest.raises(ValueError, match="one prediction array per seed"):
        paired_bootstrap([], [], [])
    with pytest.raises(ValueError, match="claimed_sign"):
        verdict(0.1, 0.2, claimed_sign=0)
