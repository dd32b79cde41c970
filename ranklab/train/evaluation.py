"""Metrics of a (multi-task) model on a split: shared by the trainer and the experiment analysis."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..context import use_task
from ..distributed import padded_share
from .tasks import TaskData, collate


@torch.no_grad()
def evaluate_tasks(model: nn.Module, tasks: Sequence[TaskData], collator: Callable | None = None,
                   split: str = "validation", batch_size: int = 64,
                   device: torch.device | None = None, accelerator: Any = None) -> dict[str, dict[str, float]]:
    """Metrics per task on ``split`` (tasks without that split are left out); restores train mode.

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
        predictions, labels = [], []
        for start in range(0, len(rows), batch_size):
            batch, y = collate([data[i] for i in rows[start:start + batch_size]], collator, task.is_regression)
            with use_task(task_id):
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            predictions.append(logits.float())
            labels.append(y)
        p = torch.cat(predictions)
        if world > 1:  # every process's share, in row order, padding dropped
            p = accelerator.gather(p)[: len(data)]
            labels = [collate([data[i] for i in range(len(data))], collator, task.is_regression)[1]]
        p = p.cpu().numpy()
        p = p[:, 0] if task.is_regression else p
        metrics: dict[str, Any] = task.compute_metrics(p, torch.cat(labels).numpy())
        results[task.name] = {k: float(v) for k, v in metrics.items()}
    model.train(was_training)
    return results
