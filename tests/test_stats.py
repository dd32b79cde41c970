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


@pytest.mark.parametrize("name", ["accuracy", "mcc", "macro_f1", "f1"])
def test_vectorised_metrics_equal_the_task_metrics(name):
    from ranklab.data.metrics import compute_metrics
    from ranklab.experiments.stats import metric_rows

    rng = np.random.default_rng(3)
    task = {"accuracy": "trec", "mcc": "sms_spam", "macro_f1": "trec", "f1": "movie"}[name]
    classes = 6 if task == "trec" else 2
    p, y = rng.integers(0, classes, (4, 150)), rng.integers(0, classes, (4, 150))
    p[1] = y[1]  # a perfect row
    p[2] = 0  # a constant row (MCC 0)
    expected = [compute_metrics(task, pi, yi)[name] for pi, yi in zip(p, y)]
    np.testing.assert_allclose(metric_rows(name, p, y), expected, rtol=1e-12, atol=1e-12)


def test_several_tasks_pair_seeds_and_average_task_metrics():
    from ranklab.experiments.stats import TaskOutputs, bootstrap_score, paired_bootstrap_tasks

    rng = np.random.default_rng(7)
    a, b = {}, {}
    for task, (p_a, p_b) in {"one": (0.70, 0.80), "two": (0.90, 0.90)}.items():
        y = rng.integers(0, 2, 600)
        flip = lambda p: [np.where(rng.random(600) < p, y, 1 - y) for _ in range(3)]  # noqa: E731
        a[task], b[task] = TaskOutputs(flip(p_a), y, "mcc"), TaskOutputs(flip(p_b), y, "mcc")
    result = paired_bootstrap_tasks(a, b, n_boot=400)
    # the truth: MCC is 2p - 1 for balanced labels; (0.2 on task one + 0 on task two) / 2 = 0.1
    assert result.verdict == "reproduced" and result.low < 0.1 < result.high
    assert result.n_seeds == 3 and result.n_examples == 1200
    mean, low, high = bootstrap_score(a, n_boot=400)
    assert low < mean < high and abs(mean - (0.4 + 0.8) / 2) < 0.05
    with pytest.raises(ValueError, match="same tasks"):
        paired_bootstrap_tasks(a, {"one": b["one"]})
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        paired_bootstrap_tasks({"one": TaskOutputs(a["one"].predictions, a["one"].labels, "auc")},
                               {"one": TaskOutputs(b["one"].predictions, b["one"].labels, "auc")})
