"""Paired statistics for comparing two methods on the same examples and seeds.

A claim such as "EMD beats LoRA" is judged from per-example predictions of both methods, seed by
seed on the same test examples:

- ``paired_bootstrap``: the metric difference B - A, with a 95% interval from a two-level
  bootstrap (resample seeds, then examples; the same indices for both methods, so pairs stay
  pairs).  Works for any metric computed from (predictions, labels): accuracy, MCC, Pearson ...
- ``paired_bootstrap_tasks``: the same for the *average over tasks* of each task's main metric
  (a multi-task or several-task claim): the same resampled seeds for every task, examples
  resampled within each task.
- ``bootstrap_score``: one method's score (average over tasks) with its interval, for bars.
- ``mcnemar``: the exact McNemar test on the discordant pairs of one seed's correctness vectors.
- ``minimal_detectable_effect``: the smallest true difference the design finds with the given
  power, from the bootstrap standard error (normal approximation).
- ``verdict``: "reproduced" when the interval excludes 0 on the claimed side, "contradicted" when
  it excludes 0 on the other side, else "inconclusive".  Never an ordering the interval does not
  support.

Named metrics ("accuracy", "mcc", "macro_f1", "f1", "pearson") are computed for all bootstrap
replicates at once (vectorised); any other callable ``metric(predictions, labels)`` also works,
one replicate at a time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Mapping, Sequence, Union

import numpy as np

Metric = Union[str, Callable[[np.ndarray, np.ndarray], float]]
VERDICTS = ("reproduced", "contradicted", "inconclusive")


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


# --- the bootstrap ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """B - A on one metric: observed mean over seeds, its bootstrap interval and what it says."""

    difference: float
    low: float
    high: float
    standard_error: float
    minimal_detectable_effect: float
    n_seeds: int
    n_examples: int
    verdict: str

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


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


def _resampled_scores(runs: Sequence[Mapping[str, TaskOutputs]], seed_draws: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """For each run r: (n_boot,) replicates of the mean over drawn seeds of the mean over tasks.

    ``runs`` are aligned (same tasks, seeds, examples); the same seed draws and example draws are
    used for every run, so differences between runs are paired."""
    n_boot, n_draw = seed_draws.shape
    totals = np.zeros((len(runs), n_boot))
    tasks = list(runs[0])
    for task in tasks:
        labels = _per_seed_labels(runs[0][task].labels, len(runs[0][task].predictions))
        for column in range(n_draw):
            for seed in np.unique(seed_draws[:, column]):
                rows = np.nonzero(seed_draws[:, column] == seed)[0]
                y = labels[seed]
                idx = rng.integers(0, len(y), (len(rows), len(y)))
                for r, run in enumerate(runs):
                    p = np.asarray(run[task].predictions[seed])
                    totals[r, rows] += metric_rows(run[task].metric, p[idx], y[idx])
    return totals / (len(tasks) * n_draw)


def _observed(run: Mapping[str, TaskOutputs]) -> float:
    """Mean over seeds and tasks of the metric on all examples."""
    values = []
    for outputs in run.values():
        labels = _per_seed_labels(outputs.labels, len(outputs.predictions))
        values.append(np.mean([metric_value(outputs.metric, p, y) for p, y in zip(outputs.predictions, labels)]))
    return float(np.mean(values))


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


def paired_bootstrap_tasks(a: Mapping[str, TaskOutputs], b: Mapping[str, TaskOutputs], claimed_sign: int = 1,
                           n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Comparison:
    """B - A on the mean over tasks of each task's metric (mean over seeds), with a two-level
    paired bootstrap interval (see the module docstring)."""
    n_seeds = _align(a, b)
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, (n_boot, n_seeds))
    score_a, score_b = _resampled_scores([a, b], seed_draws, rng)
    replicates = score_b - score_a
    low, high = np.quantile(replicates, [(1 - level) / 2, 1 - (1 - level) / 2])
    se = float(np.std(replicates, ddof=1))
    n_examples = int(sum(np.mean([len(z) for z in _per_seed_labels(o.labels, n_seeds)]) for o in a.values()))
    return Comparison(_observed(b) - _observed(a), float(low), float(high), se,
                      minimal_detectable_effect(se, 1 - level), n_seeds, n_examples,
                      verdict(float(low), float(high), claimed_sign))


def bootstrap_score(run: Mapping[str, TaskOutputs], n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): a method's mean over tasks and seeds with its two-level bootstrap interval."""
    n_seeds = len(next(iter(run.values())).predictions)
    rng = np.random.default_rng(seed)
    replicates = _resampled_scores([run], rng.integers(0, n_seeds, (n_boot, n_seeds)), rng)[0]
    low, high = np.quantile(replicates, [(1 - level) / 2, 1 - (1 - level) / 2])
    return _observed(run), float(low), float(high)


def paired_differences(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                       metric: Metric = "accuracy", n_boot: int = 2000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Observed mean over seeds of metric(B) - metric(A) on one task, and ``n_boot`` bootstrap replicates."""
    _check(a, b, labels)
    runs = [{"task": TaskOutputs(list(x), [np.asarray(z) for z in labels], metric)} for x in (a, b)]
    rng = np.random.default_rng(seed)
    score_a, score_b = _resampled_scores(runs, rng.integers(0, len(labels), (n_boot, len(labels))), rng)
    return _observed(runs[1]) - _observed(runs[0]), score_b - score_a


def verdict(low: float, high: float, claimed_sign: int = 1) -> str:
    """What the interval of B - A says about a claim that B - A has ``claimed_sign`` (+1 or -1)."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"claimed_sign must be +1 (B > A) or -1 (B < A), got {claimed_sign}")
    if low > 0 or high < 0:
        return "reproduced" if (low > 0) == (claimed_sign > 0) else "contradicted"
    return "inconclusive"


def minimal_detectable_effect(standard_error: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true difference a two-sided test at ``alpha`` detects with ``power`` (normal approximation)."""
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * standard_error)


def paired_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     metric: Metric = "accuracy", claimed_sign: int = 1, n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> Comparison:
    """Compare method B with method A on one task's examples and seeds (see the module docstring)."""
    _check(a, b, labels)
    task = lambda x: {"task": TaskOutputs(list(x), [np.asarray(z) for z in labels], metric)}  # noqa: E731
    return paired_bootstrap_tasks(task(a), task(b), claimed_sign, n_boot, level, seed)


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
