"""Metrics of a (multi-task) model on a split: shared by the trainer and the experiment analysis."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..context import use_task
from .tasks import TaskData, collate


@torch.no_grad()
def evaluate_tasks(model: nn.Module, tasks: Sequence[TaskData], collator: Callable | None = None,
                   split: str = "validation", batch_size: int = 64,
                   device: torch.device | None = None) -> dict[str, dict[str, float]]:
    """Metrics per task on ``split`` (tasks without that split are left out); restores train mode."""
    was_training = model.training
    device = device or next(model.parameters()).device
    model.eval()
    results = {}
    for task_id, task in enumerate(tasks):
        data = getattr(task, split)
        if data is None or len(data) == 0:
            continue
        predictions, labels = [], []
        for start in range(0, len(data), batch_size):
            rows = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            inputs, y = collate(rows, collator, task.is_regression)
            with use_task(task_id):
                logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits
            predictions.append(logits.float().cpu())
            labels.append(y)
        p = torch.cat(predictions).numpy()
        p = p[:, 0] if task.is_regression else p
        metrics: dict[str, Any] = task.compute_metrics(p, torch.cat(labels).numpy())
        results[task.name] = {k: float(v) for k, v in metrics.items()}
    model.train(was_training)
    return results
