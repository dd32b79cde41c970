"""Task-homogeneous batches for multi-task training (one task per batch, so one task id per batch)."""
from __future__ import annotations

from typing import Hashable, Iterator, Mapping, Sequence

import numpy as np

STRATEGIES = ("proportional", "uniform", "temperature", "softmax")
GROUP_BATCHES = 50  # length grouping sorts runs of this many batches (as transformers' group_by_length)


def length_grouped_batches(order: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_size: int,
                           rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar lengths from a shuffled ``order``: each run of ``GROUP_BATCHES`` batches
    is sorted by length and cut into batches, then the batches are shuffled.

    Padding per batch shrinks (a batch is padded to its longest row) while every row still comes
    once per pass and the batch order stays random.
    """
    lengths = np.asarray(lengths)
    span = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), span):
        run = np.asarray(order[start:start + span])
        run = run[np.argsort(-lengths[run], kind="stable")]
        batches += [run[i:i + batch_size].tolist() for i in range(0, len(run), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class MultiTaskSampler:
    """Yields ``(task_id, indices)``: indices into that task's dataset, all from one task.

    ``sizes`` is ``{task_name: n}`` (task_id = the name) or ``[n0, n1, ...]`` (task_id = the position).
    - proportional: every example exactly once per epoch; the order of the task batches is shuffled,
      so tasks appear in proportion to their number of batches.
    - uniform: each batch picks a task with equal probability.
    - temperature: probability proportional to n ** (1 / temperature) (T=1 proportional, T->inf uniform).
    - softmax: probability softmax(n_i / N), N = sum of the sizes (MoRE's rule, near-uniform: the
      largest task is at most e times as likely as the smallest).
    uniform / temperature / softmax cycle through reshuffled copies of small tasks; an epoch has as
    many batches as proportional would (override with ``num_batches``).  ``lengths`` (one sequence
    of row lengths per task) makes each task's batches length-grouped (``length_grouped_batches``).
    Call ``set_epoch`` between epochs.
    """

    def __init__(self, sizes: Mapping[str, int] | Sequence[int], batch_size: int, strategy: str = "proportional",
                 temperature: float = 2.0, seed: int = 0, drop_last: bool = False,
                 num_batches: int | None = None, lengths: Sequence[Sequence[int]] | None = None) -> None:
        items = list(sizes.items()) if isinstance(sizes, Mapping) else list(enumerate(sizes))
        if not items or any(int(n) < 1 for _, n in items):
            raise ValueError(f"sizes must be non-empty with every task size >= 1, got {sizes}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
        if batch_size < 1 or temperature <= 0:
            raise ValueError(f"batch_size must be >= 1 and temperature > 0, got {batch_size}, {temperature}")
        self.task_ids: list[Hashable] = [key for key, _ in items]
        self.sizes = np.array([int(n) for _, n in items])
        self.batch_size, self.strategy, self.temperature = batch_size, strategy, temperature
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        per_task = self.sizes // batch_size if drop_last else -(-self.sizes // batch_size)
        if per_task.sum() == 0:
            raise ValueError(f"no full batch of {batch_size} in any task with drop_last=True")
        self._batches_per_task = per_task
        if lengths is not None and [len(x) for x in lengths] != self.sizes.tolist():
            raise ValueError(f"lengths must give one length per row of every task (sizes {self.sizes.tolist()})")
        self.lengths = None if lengths is None else [np.asarray(x) for x in lengths]
        self.num_batches = int(num_batches if num_batches is not None else per_task.sum())

    @property
    def probabilities(self) -> dict[Hashable, float]:
        """The chance that a batch comes from each task."""
        if self.strategy == "proportional":
            weights = self._batches_per_task.astype(float)
        elif self.strategy == "uniform":
            weights = np.ones(len(self.sizes))
        elif self.strategy == "softmax":
            weights = np.exp(self.sizes / self.sizes.sum())
        else:
            weights = self.sizes.astype(float) ** (1.0 / self.temperature)
        return dict(zip(self.task_ids, (weights / weights.sum()).tolist()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches if self.strategy != "proportional" else int(self._batches_per_task.sum())

    def _chunks(self, task: int, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.sizes[task]).tolist()
        if self.lengths is not None:
            chunks = length_grouped_batches(order, self.lengths[task], self.batch_size, rng)
        else:
            chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [c for c in chunks if len(c) == self.batch_size] if self.drop_last else chunks

    def __iter__(self) -> Iterator[tuple[Hashable, list[int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.strategy == "proportional":
            batches = [(t, chunk) for t in range(len(self.sizes)) for chunk in self._chunks(t, rng)]
            for position in rng.permutation(len(batches)):
                task, chunk = batches[position]
                yield self.task_ids[task], chunk
            return
        probs = np.array(list(self.probabilities.values()))
        queues: list[list[list[int]]] = [[] for _ in self.sizes]
        for task in rng.choice(len(self.sizes), size=self.num_batches, p=probs):
            if not queues[task]:  # this task's pass is used up: reshuffle it
                queues[task] = self._chunks(int(task), rng)[::-1]
            yield self.task_ids[task], queues[task].pop()
