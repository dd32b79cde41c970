"""Paired statistics for comparing two methods on the same test examples and seeds.

A claim such as "EMD beats LoRA" is about methods, i.e. about what a new training seed gives, so
its interval is at the level of seeds:

- ``paired_comparison``: per seed, the metric difference B - A (mean over the tasks of each
  task's metric, both methods on the same examples); the mean of these per-seed differences with
  a Student-t 95% interval (df = seeds - 1).  Seed-to-seed variation is what the interval is
  about; with 3 seeds it is wide, as it should be.  (DECISION: a t-interval, not a bootstrap over
  3-10 seeds, whose percentile interval is about [smallest, largest] per-seed difference and covers
  the seed-level difference only 76% of the time at 3 seeds and 83% at 5.)  ``test_noise`` is kept
  apart and reported: the standard error of the mean difference from resampling test examples with
  the seeds held fixed, i.e. how much a different test set of the same size would move it.
- ``score_interval``: one method's mean over seeds with its t-interval, for bars.
- ``minimal_detectable_effect``: the smallest true difference the design (this many seeds, this
  seed-to-seed SD) detects with 80% power in a two-sided t-test at 5%, from the noncentral t.
- ``verdict``: reproduced (the interval is above 0 on the claimed side), contradicted (on the
  other side), "paper's effect ruled out" (the interval contains 0 but excludes the paper's
  difference), inconclusive otherwise; "confounded by collapse" overrides all of them when a seed of
  either side is at chance (decided by the caller).  Never an ordering the interval does not
  support.
- ``holm``: Holm's step-down adjustment of the claims' p-values.
- ``mcnemar``: the exact McNemar test on the discordant pairs of one seed's correctness vectors.

Named metrics ("accuracy", "mcc", "macro_f1", "f1", "pearson") are computed for all resamples at
once (vectorised); any other callable ``metric(predictions, labels)`` also works, one at a time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

Metric = Union[str, Callable[[np.ndarray, np.ndarray], float]]


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


# --- metrics over many resamples at once: rows of (predictions, labels) -----------------------
def _class_counts(p: np.ndarray, y: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row and class: true positives, predicted count, true count (each (rows, classes))."""
    pk = np.stack([(p == k).sum(1) for k in classes], 1).astype(float)
    tk = np.stack([(y == k).sum(1) for k in classes], 1).astype(float)
    tp = np.stack([((p == k) & (y == k)).sum(1) for k in classes], 1).astype(float)
    return tp, pk, tk


def _mcc_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Matthews correlation (multi-class form, as sklearn's) of every row."""
    classes = np.union1d(np.unique(p), np.unique(y))
    tp, pk, tk = _class_counts(p, y, classes)
    s, c = float(p.shape[1]), tp.sum(1)
    cov = c * s - (pk * tk).sum(1)
    denom = np.sqrt((s * s - (pk * pk).sum(1)) * (s * s - (tk * tk).sum(1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)


def _f1_rows(p: np.ndarray, y: np.ndarray, macro: bool) -> np.ndarray:
    classes = np.union1d(np.unique(p), np.unique(y)) if macro else np.array([1])
    tp, pk, tk = _class_counts(p, y, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(pk + tk > 0, 2 * tp / np.where(pk + tk > 0, pk + tk, 1.0), 0.0)
    if not macro:
        return f1[:, 0]
    present = (pk + tk) > 0  # sklearn averages over labels present in gold or predictions
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def _pearson_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = p - p.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    denom = np.sqrt((p * p).sum(1) * (y * y).sum(1))
    return np.where(denom > 0, (p * y).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)


ROW_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda p, y: (p == y).mean(1),
    # a causal LM's completion task: predictions hold the gold class where the completion was exact
    "exact_match": lambda p, y: (p == y).mean(1),
    "mcc": _mcc_rows,
    "macro_f1": lambda p, y: _f1_rows(p, y, macro=True),
    "f1": lambda p, y: _f1_rows(p, y, macro=False),
    "pearson": _pearson_rows,
}


def metric_rows(metric: Metric, p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``metric`` of every row of 2-d arrays of predictions and labels."""
    if isinstance(metric, str):
        if metric not in ROW_METRICS:
            raise ValueError(f"unknown metric {metric!r}; named metrics: {', '.join(ROW_METRICS)} (or a callable)")
        return ROW_METRICS[metric](p, y)
    return np.array([metric(pi, yi) for pi, yi in zip(p, y)], dtype=float)


def metric_value(metric: Metric, p: np.ndarray, y: np.ndarray) -> float:
    return float(metric_rows(metric, np.asarray(p)[None], np.asarray(y)[None])[0])


# --- seed-level statistics ------------------------------------------------------------------
REPRODUCED, CONTRADICTED, RULED_OUT, INCONCLUSIVE, CONFOUNDED = (
    "reproduced", "contradicted", "paper's effect ruled out", "inconclusive", "confounded by collapse")
VERDICTS = (REPRODUCED, CONTRADICTED, RULED_OUT, INCONCLUSIVE, CONFOUNDED)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, standard error) of the mean of ``values`` with a Student-t interval
    (df = n - 1).  One value has no interval: (-inf, inf)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("need at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, -np.inf, np.inf, np.inf
    se = float(x.std(ddof=1) / np.sqrt(x.size))
    half = float(student_t.ppf(0.5 + level / 2, x.size - 1)) * se
    return mean, mean - half, mean + half, se


def t_test_p_value(values: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test that the mean of ``values`` is 0 (1.0 for one value)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return 1.0
    sd = float(x.std(ddof=1))
    if sd == 0:
        return 0.0 if x.mean() != 0 else 1.0
    statistic = float(x.mean()) / (sd / np.sqrt(x.size))
    return float(2 * student_t.sf(abs(statistic), x.size - 1))


def minimal_detectable_effect(seed_sd: float, n_seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true mean difference that a two-sided one-sample t-test at ``alpha`` over ``n_seeds``
    per-seed differences with standard deviation ``seed_sd`` detects with ``power`` (noncentral t:
    the test statistic has noncentrality delta * sqrt(n) / sd).  inf below 2 seeds."""
    from scipy.optimize import brentq
    from scipy.stats import nct
    from scipy.stats import t as student_t

    if n_seeds < 2 or not np.isfinite(seed_sd):
        return float("inf")
    if seed_sd == 0:
        return 0.0
    df = n_seeds - 1
    critical = float(student_t.ppf(1 - alpha / 2, df))

    def shortfall(ncp: float) -> float:
        lower = float(nct.cdf(-critical, df, ncp))  # the wrong-side rejections: tiny (scipy may give nan)
        return float(nct.sf(critical, df, ncp)) + (lower if np.isfinite(lower) else 0.0) - power

    high = 1.0
    while shortfall(high) < 0:  # power rises with the noncentrality: bracket the root
        high *= 2
    ncp = brentq(shortfall, 0.0, high)
    return float(ncp * seed_sd / np.sqrt(n_seeds))


def verdict(low: float, high: float, claimed_sign: int = 1, paper_difference: float | None = None) -> str:
    """What the interval of B - A says about a claim that B - A has ``claimed_sign`` (+1 or -1).

    ``paper_difference`` (the paper's B - A, on the claimed side): when the interval contains 0
    but not the paper's difference, the data exclude an effect as large as the paper's."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"claimed_sign must be +1 (B > A) or -1 (B < A), got {claimed_sign}")
    if low > 0 or high < 0:
        return REPRODUCED if (low > 0) == (claimed_sign > 0) else CONTRADICTED
    if paper_difference is not None and claimed_sign * paper_difference > 0:
        if (claimed_sign > 0 and high < paper_difference) or (claimed_sign < 0 and low > paper_difference):
            return RULED_OUT
    return INCONCLUSIVE


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the k-th smallest of m is
    multiplied by m - k + 1, then made monotone and capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class Comparison:
    """B - A on one metric: mean of the per-seed differences, its seed-level t-interval, the test
    set's sampling noise (apart), the design's minimal detectable effect and what it says."""

    difference: float
    low: float
    high: float
    standard_error: float  # of the mean over seeds (seed SD / sqrt(seeds))
    seed_sd: float  # SD of the per-seed differences
    test_noise: float  # SE of the mean difference from resampling test examples, seeds fixed
    p_value: float  # two-sided one-sample t-test of the per-seed differences
    minimal_detectable_effect: float
    n_seeds: int
    n_examples: int
    verdict: str
    per_seed: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_seed"] = list(self.per_seed)
        return out


@dataclass(frozen=True)
class TaskOutputs:
    """One task's predictions of each run (one array per seed) and the labels (one per seed, or
    one array shared by all seeds), scored by ``metric``."""

    predictions: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]
    metric: Metric = "accuracy"


def _check(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
    if not (len(a) == len(b) == len(labels)) or len(a) == 0:
        raise ValueError(f"need one prediction array per seed for both methods and labels, got "
                         f"{len(a)}, {len(b)}, {len(labels)}")
    for i, (x, y, z) in enumerate(zip(a, b, labels)):
        if not (len(x) == len(y) == len(z)) or len(z) == 0:
            raise ValueError(f"seed {i}: predictions and labels must cover the same examples "
                             f"(lengths {len(x)}, {len(y)}, {len(z)})")


def _per_seed_labels(labels: Sequence[np.ndarray] | np.ndarray, n_seeds: int) -> list[np.ndarray]:
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        return [labels] * n_seeds
    return [np.asarray(z) for z in labels]


def per_seed_scores(run: Mapping[str, TaskOutputs]) -> np.ndarray:
    """Per seed: the mean over tasks of each task's metric on all its test examples."""
    values = []
    for outputs in run.values():
        labels = _per_seed_labels(outputs.labels, len(outputs.predictions))
        values.append([metric_value(outputs.metric, p, y) for p, y in zip(outputs.predictions, labels)])
    return np.mean(np.asarray(values, dtype=float), axis=0)


def _test_noise(runs: Sequence[Mapping[str, TaskOutputs]], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(runs, n_boot) replicates of each run's mean over seeds and tasks with the test examples
    resampled (the same draws for every run, so differences stay paired) and the seeds fixed."""
    tasks = list(runs[0])
    totals = np.zeros((len(runs), n_boot))
    n_seeds = len(runs[0][tasks[0]].predictions)
    for task in tasks:
        labels = _per_seed_labels(runs[0][task].labels, n_seeds)
        for seed in range(n_seeds):
            y = labels[seed]
            idx = rng.integers(0, len(y), (n_boot, len(y)))
            for r, run in enumerate(runs):
                p = np.asarray(run[task].predictions[seed])
                totals[r] += metric_rows(run[task].metric, p[idx], y[idx])
    return totals / (len(tasks) * n_seeds)


def _align(a: Mapping[str, TaskOutputs], b: Mapping[str, TaskOutputs]) -> int:
    if set(a) != set(b) or not a:
        raise ValueError(f"both methods need the same tasks, got {sorted(a)} and {sorted(b)}")
    n_seeds = {len(o.predictions) for o in (*a.values(), *b.values())}
    if len(n_seeds) != 1:
        raise ValueError(f"every task needs one prediction array per seed for both methods, got {sorted(n_seeds)}")
    for task in a:
        n = len(a[task].predictions)
        _check(a[task].predictions, b[task].predictions, _per_seed_labels(a[task].labels, n))
    return n_seeds.pop()


def paired_comparison(a: Mapping[str, TaskOutputs], b: Mapping[str, TaskOutputs], claimed_sign: int = 1,
                      paper_difference: float | None = None, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> Comparison:
    """B - A on the mean over tasks of each task's metric: per-seed paired differences, their
    t-interval, the test-set noise from ``n_boot`` resamples of the examples (0: not computed,
    reported as nan) and the verdict (see the module docstring)."""
    n_seeds = _align(a, b)
    differences = per_seed_scores(b) - per_seed_scores(a)
    mean, low, high, se = t_interval(differences, level)
    seed_sd = float(np.std(differences, ddof=1)) if n_seeds > 1 else float("inf")
    if n_boot > 0:
        score_a, score_b = _test_noise([a, b], n_boot, np.random.default_rng(seed))
        test_noise = float(np.std(score_b - score_a, ddof=1))
    else:
        test_noise = float("nan")
    n_examples = int(sum(np.mean([len(z) for z in _per_seed_labels(o.labels, n_seeds)]) for o in a.values()))
    return Comparison(mean, low, high, se, seed_sd, test_noise, t_test_p_value(differences),
                      minimal_detectable_effect(seed_sd, n_seeds, 1 - level), n_seeds, n_examples,
                      verdict(low, high, claimed_sign, paper_difference), tuple(float(d) for d in differences))


def paired_comparison_one_task(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                               metric: Metric = "accuracy", claimed_sign: int = 1, **kwargs: Any) -> Comparison:
    """``paired_comparison`` on one task's examples and seeds."""
    _check(a, b, labels)
    task = lambda x: {"task": TaskOutputs(list(x), [np.asarray(z) for z in labels], metric)}  # noqa: E731
    return paired_comparison(task(a), task(b), claimed_sign, **kwargs)


def score_interval(run: Mapping[str, TaskOutputs], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a method's mean over seeds (of its mean over tasks) with the t-interval."""
    mean, low, high, _ = t_interval(per_seed_scores(run), level)
    return mean, low, high


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test: (A right & B wrong, A wrong & B right, two-sided p-value)."""
    a_correct, b_correct = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a_correct.shape != b_correct.shape:
        raise ValueError(f"correctness vectors differ in shape: {a_correct.shape} vs {b_correct.shape}")
    only_a, only_b = int(np.sum(a_correct & ~b_correct)), int(np.sum(~a_correct & b_correct))
    n = only_a + only_b
    if n == 0:
        return only_a, only_b, 1.0
    from scipy.stats import binomtest

    return only_a, only_b, float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
