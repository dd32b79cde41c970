"""Metrics of a (multi-task) model on a split: shared by the trainer and the experiment analysis.

Rows are batched in order of length (a batch is padded to its longest row, so sorted batches pad
little) and the predictions are put back in row order.  ``predict_tasks`` returns them, so that
runs can be compared example by example (paired statistics).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..context import use_task
from ..distributed import padded_share
from .causal_lm import row_labels, row_scores
from .tasks import TaskData, collate


def _lengths(data: Any, rows: Sequence[int]) -> np.ndarray:
    if hasattr(data, "column_names") and "input_ids" in data.column_names:
        column = data.select(rows)["input_ids"] if len(rows) != len(data) else data["input_ids"]
        return np.array([len(ids) for ids in column])
    return np.array([len(data[i]["input_ids"]) if "input_ids" in data[i] else 0 for i in rows])


@torch.no_grad()
def _task_logits(model: nn.Module, task: TaskData, data: Any, rows: list[int], task_id: int,
                 collator: Callable | None, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits of ``rows`` in their given order, computed in length-sorted batches."""
    order = np.argsort(-_lengths(data, rows), kind="stable")
    logits = [None] * len(rows)
    for start in range(0, len(rows), batch_size):
        picked = order[start:start + batch_size]
        batch, labels = collate([data[rows[i]] for i in picked], collator, task.is_regression)
        with use_task(task_id):
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
        if task.is_causal_lm:  # per row: loss, tokens, tokens right, exact match of the completion
            out = row_scores(out, labels.to(device))
        for position, row_logits in zip(picked, out):
            logits[position] = row_logits
    return torch.stack(logits)


def predict_tasks(model: nn.Module, tasks: Sequence[TaskData], collator: Callable | None = None,
                  split: str = "validation", batch_size: int = 64, device: torch.device | None = None,
                  accelerator: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per task ``(outputs, labels)`` on ``split`` in row order: logits (n, classes), the
    predicted values (n,) of a regression task, or a causal-LM task's row scores (n, 4) with the
    rows' class ids (``ranklab.train.causal_lm.row_scores``).  Tasks without that split are left out; train
    mode is restored.

    With an ``accelerator`` of several processes each process predicts its share of the rows and
    the predictions are gathered (ranklab.distributed: no row counts twice)."""
    was_training = model.training
    device = device or next(model.parameters()).device
    world, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    model.eval()
    results = {}
    for task_id, task in enumerate(tasks):
        data = getattr(task, split)
        if data is None or len(data) == 0:
            continue
        rows = padded_share(len(data), rank, world) if world > 1 else list(range(len(data)))
        p = _task_logits(model, task, data, rows, task_id, collator, batch_size, device)
        if world > 1:  # every process's share, in row order, padding dropped
            p = accelerator.gather(p)[: len(data)]
        if task.is_causal_lm:
            labels = torch.from_numpy(row_labels(data))
        else:
            labels = collate([data[i] for i in range(len(data))], collator, task.is_regression)[1]
        p = p.cpu().numpy()
        results[task.name] = (p[:, 0] if task.is_regression else p, labels.numpy())
    model.train(was_training)
    return results


def task_metrics(tasks: Sequence[TaskData], predictions: dict[str, tuple[np.ndarray, np.ndarray]]
                 ) -> dict[str, dict[str, float]]:
    """Metrics per task from ``predict_tasks``'s outputs."""
    by_name = {t.name: t for t in tasks}
    return {name: {k: float(v) for k, v in by_name[name].compute_metrics(p, y).items()}
            for name, (p, y) in predictions.items()}


def evaluate_tasks(model: nn.Module, tasks: Sequence[TaskData], collator: Callable | None = None,
                   split: str = "validation", batch_size: int = 64,
                   device: torch.device | None = None, accelerator: Any = None) -> dict[str, dict[str, float]]:
    """Metrics per task on ``split`` (tasks without that split are left out); restores train mode."""
    return task_metrics(tasks, predict_tasks(model, tasks, collator, split, batch_size, device, accelerator))


def predicted_labels(outputs: np.ndarray, regression: bool) -> np.ndarray:
    """Class ids from logits (argmax), or the values of a regression task."""
    return np.asarray(outputs, dtype=float) if regression else np.asarray(outputs).argmax(axis=-1)
