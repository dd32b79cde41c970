"""Paired statistics on synthetic predictions whose answer is known."""
import numpy as np
import pytest

from ranklab.experiments.results.stats import holm, mcnemar, minimal_detectable_effect, paired_comparison_one_task, verdict


def synthetic(p_a: float, p_b: float, n_seeds: int = 5, n: int = 800, seed: int = 0):
    """Predictions of two methods that are right with probabilities p_a and p_b, independently."""
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, 2, n) for _ in range(n_seeds)]
    flip = lambda y, p: np.where(rng.random(n) < p, y, 1 - y)  # noqa: E731
    return [flip(y, p_a) for y in labels], [flip(y, p_b) for y in labels], labels


def test_a_planted_difference_is_detected():
    a, b, labels = synthetic(0.75, 0.82)
    result = paired_comparison_one_task(a, b, labels, n_boot=300)
    assert result.verdict == "reproduced" and 0.04 < result.difference < 0.10
    assert result.low < result.difference < result.high and result.low > 0
    assert len(result.per_seed) == 5 and np.mean(result.per_seed) == pytest.approx(result.difference)
    assert paired_comparison_one_task(b, a, labels, n_boot=0).verdict == "contradicted"  # the claim B > A, reversed


def test_no_difference_is_inconclusive():
    a, b, labels = synthetic(0.80, 0.80, seed=1)
    result = paired_comparison_one_task(a, b, labels, n_boot=300)
    assert result.verdict == "inconclusive" and result.low < 0 < result.high
    assert result.minimal_detectable_effect > abs(result.difference)
    # a paper effect far above the interval's upper end is ruled out; one inside it is not
    assert paired_comparison_one_task(a, b, labels, n_boot=0, paper_difference=0.5).verdict == "paper's effect ruled out"
    assert paired_comparison_one_task(a, b, labels, n_boot=0, paper_difference=result.high / 2).verdict == "inconclusive"


def test_the_interval_is_the_student_t_interval_of_the_per_seed_differences():
    from scipy import stats as scipy_stats

    a, b, labels = synthetic(0.70, 0.74, n_seeds=4, n=300, seed=5)
    result = paired_comparison_one_task(a, b, labels, n_boot=200)
    d = np.array([np.mean(bi == y) - np.mean(ai == y) for ai, bi, y in zip(a, b, labels)])
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (result.low, result.high) == pytest.approx((low, high), rel=1e-9)
    assert result.seed_sd == pytest.approx(d.std(ddof=1))
    assert result.p_value == pytest.approx(scipy_stats.ttest_1samp(d, 0).pvalue, rel=1e-9)
    # the test-set noise: the SE of the mean difference over example resamples, about sqrt(discordant) / n / sqrt(seeds)
    discordant = np.mean([np.mean((ai == y) != (bi == y)) for ai, bi, y in zip(a, b, labels)])
    assert result.test_noise == pytest.approx(np.sqrt(discordant / 300) / np.sqrt(4), rel=0.25)
    single = paired_comparison_one_task(a[:1], b[:1], labels[:1], n_boot=0)  # one seed: no interval, no claim
    assert single.verdict == "inconclusive" and np.isinf(single.low) and np.isinf(single.minimal_detectable_effect)


@pytest.mark.parametrize("n_seeds", [3, 5, 10])
def test_the_interval_covers_the_seed_level_difference_in_95_percent_of_designs(n_seeds):
    """2,000 simulated designs: each seed draws both methods' skills (seed-to-seed variation that
    the two methods share in part, as runs on the same data order do), then their predictions on a
    fixed test set; the truth is the expected difference over seeds.  The interval must cover it in
    95% +- 2% of designs."""
    rng = np.random.default_rng(n_seeds)
    n_designs, n_examples, true_difference = 2000, 200, 0.03
    labels = rng.integers(0, 2, n_examples)
    covered = 0
    for _ in range(n_designs):
        shared = rng.normal(0, 0.04, n_seeds)
        skill_a = np.clip(0.75 + shared + rng.normal(0, 0.02, n_seeds), 0, 1)
        skill_b = np.clip(0.75 + true_difference + shared + rng.normal(0, 0.02, n_seeds), 0, 1)
        right_a = rng.random((n_seeds, n_examples)) < skill_a[:, None]
        right_b = rng.random((n_seeds, n_examples)) < skill_b[:, None]
        a = [np.where(r, labels, 1 - labels) for r in right_a]
        b = [np.where(r, labels, 1 - labels) for r in right_b]
        result = paired_comparison_one_task(a, b, [labels] * n_seeds, n_boot=0)
        covered += result.low <= true_difference <= result.high
    assert abs(covered / n_designs - 0.95) <= 0.02


def test_minimal_detectable_effect_is_the_noncentral_t_power_point():
    from scipy import stats as scipy_stats

    for n_seeds in (3, 5, 10):
        mde = minimal_detectable_effect(1.0, n_seeds)
        df, critical = n_seeds - 1, scipy_stats.t.ppf(0.975, n_seeds - 1)
        power = scipy_stats.nct.sf(critical, df, mde * np.sqrt(n_seeds))
        assert power == pytest.approx(0.8, abs=1e-3)
    # more seeds, smaller; about the normal approximation's 2.80 SE for many seeds
    assert minimal_detectable_effect(1, 3) > minimal_detectable_effect(1, 5) > minimal_detectable_effect(1, 10)
    assert minimal_detectable_effect(1.0, 400) == pytest.approx((1.959964 + 0.841621) / 20, rel=0.01)
    assert minimal_detectable_effect(1.0, 1) == float("inf") and minimal_detectable_effect(0.0, 5) == 0.0


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])


def test_verdicts():
    assert verdict(0.1, 0.2) == "reproduced" and verdict(-0.2, -0.1) == "contradicted"
    assert verdict(-0.1, 0.2) == "inconclusive"
    assert verdict(-0.1, 0.2, paper_difference=0.5) == "paper's effect ruled out"
    assert verdict(-0.1, 0.6, paper_difference=0.5) == "inconclusive"
    assert verdict(-0.2, 0.1, claimed_sign=-1, paper_difference=-0.5) == "paper's effect ruled out"


def test_any_metric_works():
    a, b, labels = synthetic(0.7, 0.9, n_seeds=3)
    mcc = lambda p, y: float(np.corrcoef(p, y)[0, 1])  # noqa: E731
    assert paired_comparison_one_task(a, b, labels, metric=mcc, n_boot=20).verdict == "reproduced"


def test_mcnemar_counts_discordant_pairs():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (3, 1) and p == pytest.approx(0.625)  # binomial(1; 4, 0.5), two-sided
    assert mcnemar(a, a)[2] == 1.0


def test_bad_input_is_clear():
    with pytest.raises(ValueError, match="same examples"):
        paired_comparison_one_task([np.zeros(3)], [np.zeros(4)], [np.zeros(3)])
    with pytest.raises(ValueError, match="one prediction array per seed"):
        paired_comparison_one_task([], [], [])
    with pytest.raises(ValueError, match="claimed_sign"):
        verdict(0.1, 0.2, claimed_sign=0)


@pytest.mark.parametrize("name", ["accuracy", "mcc", "macro_f1", "f1"])
def test_vectorised_metrics_equal_the_task_metrics(name):
    from ranklab.data.metrics import compute_metrics
    from ranklab.experiments.results.stats import metric_rows

    rng = np.random.default_rng(3)
    task = {"accuracy": "trec", "mcc": "sms_spam", "macro_f1": "trec", "f1": "movie"}[name]
    classes = 6 if task == "trec" else 2
    p, y = rng.integers(0, classes, (4, 150)), rng.integers(0, classes, (4, 150))
    p[1] = y[1]  # a perfect row
    p[2] = 0  # a constant row (MCC 0)
    expected = [compute_metrics(task, pi, yi)[name] for pi, yi in zip(p, y)]
    np.testing.assert_allclose(metric_rows(name, p, y), expected, rtol=1e-12, atol=1e-12)


def test_several_tasks_pair_seeds_and_average_task_metrics():
    from ranklab.experiments.results.stats import TaskOutputs, paired_comparison, score_interval

    rng = np.random.default_rng(7)
    a, b = {}, {}
    for task, (p_a, p_b) in {"one": (0.70, 0.80), "two": (0.90, 0.90)}.items():
        y = rng.integers(0, 2, 600)
        flip = lambda p: [np.where(rng.random(600) < p, y, 1 - y) for _ in range(6)]  # noqa: E731
        a[task], b[task] = TaskOutputs(flip(p_a), y, "mcc"), TaskOutputs(flip(p_b), y, "mcc")
    result = paired_comparison(a, b, n_boot=200)
    # the truth: MCC is 2p - 1 for balanced labels; (0.2 on task one + 0 on task two) / 2 = 0.1
    assert result.verdict == "reproduced" and result.low < 0.1 < result.high
    assert result.n_seeds == 6 and result.n_examples == 1200
    mean, low, high = score_interval(a)
    assert low < mean < high and abs(mean - (0.4 + 0.8) / 2) < 0.05
    with pytest.raises(ValueError, match="same tasks"):
        paired_comparison(a, {"one": b["one"]})
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        paired_comparison({"one": TaskOutputs(a["one"].predictions, a["one"].labels, "auc")},
                          {"one": TaskOutputs(b["one"].predictions, b["one"].labels, "auc")})
