"""What the trainer needs from a task, and the deterministic batch plan of each epoch.

``TaskData`` holds tokenised splits (anything indexable giving dicts with input_ids,
attention_mask and label; a causal-LM task's rows also hold token ``labels``, -100 off the
completion) plus how to score predictions.  ``prepare_tasks`` builds them from
task names through ``ranklab.data``; tests build them from synthetic lists.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_KEYS = ("label", "labels")


@dataclass
class TaskData:
    name: str
    num_labels: int  # 1 = regression
    main_metric: str
    train: Sequence[dict[str, Any]]
    validation: Sequence[dict[str, Any]]
    test: Sequence[dict[str, Any]] | None = None
    spec: Any = None  # ranklab.data TaskSpec when built from a name
    metrics_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
    objective: str = "classification"  # or "causal-lm": rows are prompt + completion token sequences

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1 and not self.is_causal_lm

    @property
    def is_causal_lm(self) -> bool:
        return self.objective == "causal-lm"

    def target_counts(self) -> np.ndarray:
        """Scored completion tokens per training row (a causal-LM step's loss weights); computed once."""
        if getattr(self, "_target_counts", None) is None:
            from .causal_lm import target_count

            self._target_counts = np.array([target_count(labels) for labels in self._train_column("labels")])
        return self._target_counts

    def train_lengths(self) -> np.ndarray:
        """Tokens per training row (for length-grouped batches); computed once."""
        if getattr(self, "_train_lengths", None) is None:
            self._train_lengths = np.array([len(ids) for ids in self._train_column("input_ids")])
        return self._train_lengths

    def _train_column(self, key: str) -> Sequence[Any]:
        """One column of the training rows (a datasets column at once, else row by row)."""
        return self.train[key] if hasattr(self.train, "column_names") else [row[key] for row in self.train]

    def compute_metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.metrics_fn is not None:
            return self.metrics_fn(predictions, labels)
        if self.is_causal_lm:  # predictions are ranklab.train.causal_lm.row_scores
            from .causal_lm import completion_metrics

            return completion_metrics(predictions)
        from ..data import compute_metrics

        return compute_metrics(self.spec if self.spec is not None else self.name, predictions, labels)


# Validation and test subsets do not depend on the run's seed: every seed and method of a
# comparison is scored on the same examples, so differences can be paired.
EVAL_SUBSET_SEED = 0
_TOKENIZED: dict[tuple, tuple[Any, Any]] = {}  # tokenised tasks reused by later runs of this process
_TOKENIZED_KEEP = 16


def _cap(splits: Any, names: Sequence[str], limit: int | None, seed: int) -> dict[str, Any]:
    """Seeded subsample (original order kept) of the named splits present, at most ``limit`` rows."""
    from datasets import DatasetDict

    from ..data import subsample

    present = DatasetDict({n: splits[n] for n in names if n in splits})
    return dict(subsample(present, limit, seed) if limit is not None else present)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bar()


def check_objective(config: Any) -> None:
    """Every task of ``config`` is of its objective (a causal-LM run takes text-completion tasks)."""
    from ..data import available_tasks, get_task

    objective = getattr(config, "objective", "classification")
    for name in config.tasks:
        spec = get_task(name)
        if spec.objective != objective:
            raise ValueError(f"task {spec.name!r} is a {spec.objective} task and this run's objective is {objective}; "
                             f"{objective} tasks: {', '.join(available_tasks(objective=objective))}")


def prepare_tasks(config: Any, tokenizer: Any) -> tuple[list[TaskData], Callable]:
    """Load, cap and tokenise every task of ``config`` with ranklab.data; returns (tasks, collator)."""
    from datasets import DatasetDict

    from ..data import get_task, load_task, make_collator, tokenize_task

    check_objective(config)
    tasks = []
    objective = getattr(config, "objective", "classification")
    for name in config.tasks:
        spec = get_task(name)
        key = (spec.name, getattr(tokenizer, "name_or_path", None), len(tokenizer), config.max_length,
               config.max_train, config.seed if config.max_train else None, config.max_eval, config.max_test,
               config.cache_dir, config.data_dir)
        if key[1] is None or key not in _TOKENIZED:
            with _quiet_datasets():  # causal-LM tasks map their rows to prompts: no progress bar either
                splits = load_task(name, cache_dir=config.cache_dir, seed=config.seed, data_dir=config.data_dir)
            capped = {**_cap(splits, ["train"], config.max_train, config.seed),
                      **_cap(splits, ["validation"], config.max_eval, EVAL_SUBSET_SEED),
                      **_cap(splits, ["test"], config.max_test, EVAL_SUBSET_SEED)}
            if len(_TOKENIZED) >= _TOKENIZED_KEEP:
                _TOKENIZED.pop(next(iter(_TOKENIZED)))
            with _quiet_datasets():  # a second of work: no progress bar of its own
                _TOKENIZED[key] = tokenize_task(DatasetDict(capped), tokenizer, spec, max_length=config.max_length)
        tokenized = _TOKENIZED[key]
        tasks.append(TaskData(
            name=spec.name, num_labels=spec.num_labels, main_metric=spec.main_metric,
            train=tokenized["train"], validation=tokenized["validation"],
            test=tokenized["test"] if "test" in tokenized else None, spec=spec, objective=spec.objective,
        ))
    return tasks, make_collator(tokenizer, objective=objective)


def collate(rows: list[dict[str, Any]], collator: Callable | None, regression: bool) -> tuple[dict, torch.Tensor]:
    """(model inputs, labels) for one batch; keeps only what the model and the loss need."""
    rows = [{k: v for k, v in row.items() if k in MODEL_KEYS or k in LABEL_KEYS} for row in rows]
    batch = collator(rows) if collator is not None else {
        k: torch.as_tensor([row[k] for row in rows]) for k in rows[0]
    }
    labels = batch["labels"] if "labels" in batch else batch["label"]
    labels = torch.as_tensor(labels)
    labels = labels.float() if regression else labels.long()
    return {k: v for k, v in batch.items() if k in MODEL_KEYS}, labels


def epoch_plan(sizes: Sequence[int], config: Any, epoch: int,
               lengths: Sequence[np.ndarray] | None = None) -> list[tuple[int, list[int]]]:
    """Batches of one epoch as (task id, example indices); fixed by (seed, epoch) alone.

    ``lengths`` (rows' token counts per task) with ``config.group_by_length`` gives length-grouped
    batches (``ranklab.data.multitask.length_grouped_batches``)."""
    from ..data.multitask import MultiTaskSampler, length_grouped_batches

    seed = config.seed * 10_007 + epoch  # distinct, reproducible stream per epoch
    grouped = getattr(config, "group_by_length", False)
    if grouped and lengths is None:
        raise ValueError("group_by_length needs the rows' lengths")
    if len(sizes) == 1:
        order = torch.randperm(sizes[0], generator=torch.Generator().manual_seed(seed)).tolist()
        if grouped:
            batches = length_grouped_batches(order, lengths[0], config.batch_size, np.random.default_rng(seed))
            return [(0, batch) for batch in batches]
        return [(0, order[i:i + config.batch_size]) for i in range(0, sizes[0], config.batch_size)]
    sampler = MultiTaskSampler(list(sizes), config.batch_size, strategy=config.sampling,
                               temperature=config.temperature, seed=config.seed,
                               lengths=lengths if grouped else None)
    sampler.set_epoch(epoch)  # its own numpy generator: training RNG is untouched
    return [(int(t), [int(i) for i in idx]) for t, idx in sampler]
