"""Paired statistics for comparing two methods on the same examples and seeds.

A claim such as "EMD beats LoRA" is judged from per-example predictions of both methods, seed by
seed on the same test examples:

- ``paired_bootstrap``: the metric difference B - A, with a 95% interval from a two-level
  bootstrap (resample seeds, then examples; the same indices for both methods, so pairs stay
  pairs).  Works for any metric computed from (predictions, labels): accuracy, MCC, Pearson ...
- ``mcnemar``: the exact McNemar test on the discordant pairs of one seed's correctness vectors.
- ``minimal_detectable_effect``: the smallest true difference the design finds with the given
  power, from the bootstrap standard error (normal approximation).
- ``verdict``: "reproduced" when the interval excludes 0 on the claimed side, "contradicted" when
  it excludes 0 on the other side, else "inconclusive".  Never an ordering the interval does not
  support.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]
VERDICTS = ("reproduced", "contradicted", "inconclusive")


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


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


def _check(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
    if not (len(a) == len(b) == len(labels)) or len(a) == 0:
        raise ValueError(f"need one prediction array per seed for both methods and labels, got "
                         f"{len(a)}, {len(b)}, {len(labels)}")
    for i, (x, y, z) in enumerate(zip(a, b, labels)):
        if not (len(x) == len(y) == len(z)) or len(z) == 0:
            raise ValueError(f"seed {i}: predictions and labels must cover the same examples "
                             f"(lengths {len(x)}, {len(y)}, {len(z)})")


def paired_differences(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                       metric: Metric = accuracy, n_boot: int = 2000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Observed mean over seeds of metric(B) - metric(A), and ``n_boot`` bootstrap replicates of it."""
    _check(a, b, labels)
    a, b, labels = [np.asarray(x) for x in a], [np.asarray(x) for x in b], [np.asarray(x) for x in labels]
    observed = float(np.mean([metric(y, z) - metric(x, z) for x, y, z in zip(a, b, labels)]))
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, len(labels), len(labels))
        diffs = []
        for s in seeds:
            idx = rng.integers(0, len(labels[s]), len(labels[s]))
            diffs.append(metric(b[s][idx], labels[s][idx]) - metric(a[s][idx], labels[s][idx]))
        replicates[r] = np.mean(diffs)
    return observed, replicates


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
                     metric: Metric = accuracy, claimed_sign: int = 1, n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> Comparison:
    """Compare method B with method A on the same examples and seeds (see the module docstring)."""
    observed, replicates = paired_differences(a, b, labels, metric, n_boot, seed)
    low, high = np.quantile(replicates, [(1 - level) / 2, 1 - (1 - level) / 2])
    se = float(np.std(replicates, ddof=1))
    return Comparison(observed, float(low), float(high), se, minimal_detectable_effect(se, 1 - level),
                      len(labels), int(np.mean([len(z) for z in labels])), verdict(float(low), float(high), claimed_sign))


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
