"""MultiTaskSampler: task-homogeneous batches, proportions per strategy, determinism."""
from collections import Counter

import numpy as np
import pytest

from ranklab.data import MultiTaskSampler


def test_proportional_covers_every_example_once():
    sampler = MultiTaskSampler({"a": 100, "b": 30, "c": 7}, batch_size=8, seed=0)
    seen = {"a": [], "b": [], "c": []}
    for task, indices in sampler:
        assert len(indices) <= 8
        seen[task].extend(indices)
    assert {t: sorted(v) for t, v in seen.items()} == {"a": list(range(100)), "b": list(range(30)), "c": list(range(7))}
    assert len(sampler) == 13 + 4 + 1
    assert sampler.probabilities["a"] == pytest.approx(13 / 18)


def test_order_is_seeded_and_changes_with_epoch():
    a = list(MultiTaskSampler([50, 20], batch_size=4, seed=3))
    b = list(MultiTaskSampler([50, 20], batch_size=4, seed=3))
    assert a == b and {t for t, _ in a} == {0, 1}
    sampler = MultiTaskSampler([50, 20], batch_size=4, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) != a


@pytest.mark.parametrize("strategy,temperature", [("uniform", 2.0), ("temperature", 2.0), ("temperature", 1.0)])
def test_sampled_strategies_match_their_probabilities(strategy, temperature):
    sizes = {"big": 9000, "small": 1000}
    sampler = MultiTaskSampler(sizes, batch_size=2, strategy=strategy, temperature=temperature,
                               seed=0, num_batches=4000)
    weights = {"uniform": [1, 1], "temperature": [9000 ** (1 / temperature), 1000 ** (1 / temperature)]}[strategy]
    expected = weights[0] / sum(weights)  # T=2: 3/4 ; T=1: 9/10 (proportional) ; uniform: 1/2
    assert sampler.probabilities["big"] == pytest.approx(expected)
    counts = Counter(task for task, _ in sampler)
    assert len(sampler) == 4000 and sum(counts.values()) == 4000
    assert counts["big"] / 4000 == pytest.approx(expected, abs=0.03)


def test_small_task_cycles_through_all_examples_when_upsampled():
    sampler = MultiTaskSampler([10, 1000], batch_size=5, strategy="uniform", seed=1, num_batches=200)
    small = [i for task, idx in sampler if task == 0 for i in idx]
    counts = np.bincount(small, minlength=10)
    assert counts.max() - counts.min() <= 1  # whole passes over the small task, each reshuffled
    assert set(small) == set(range(10))


def test_drop_last_and_bad_arguments():
    sampler = MultiTaskSampler([10, 3], batch_size=4, drop_last=True)
    assert all(len(idx) == 4 for _, idx in sampler) and len(sampler) == 2
    with pytest.raises(ValueError, match="proportional, uniform, temperature"):
        MultiTaskSampler([10], batch_size=4, strategy="round_robin")
    with pytest.raises(ValueError, match="size"):
        MultiTaskSampler({"a": 0}, batch_size=4)
    with pytest.raises(ValueError, match="no full batch"):
        MultiTaskSampler([3], batch_size=4, drop_last=True)
